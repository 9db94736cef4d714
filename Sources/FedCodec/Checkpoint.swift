/// A model at rest (`Protocol/SPEC.md`, "Checkpoint file").
///
/// ```
///  0  4  magic "FEDK"
///  4  2  format (1 or 2), u16 BE
///  6  2  reserved, zero
///  8  8  model version, u64 BE
/// 16  8  datasets, u64 BE
/// 24  4  blob length n, u32 BE
/// 28  n  tensor blob (as in MODEL)
///        format 2 only: u16 section count, then per section u16 tag, u32 length L, L bytes
///  ...4  CRC-32 of every byte before it, u32 BE
/// ```
/// Format 1 is exactly `32 + n` bytes. Sections (format 2) carry state that
/// must survive with the model; tag 1 is the recent pushes (idempotency
/// keys), optional tag 0x8003 when each was accepted. A tag with bit 15 set may be skipped by a reader that does not know
/// it; any other unknown tag makes the file unreadable (`unsupported_version`).
/// A checkpoint with no section is written as format 1, so older readers read it.
public struct Checkpoint: Hashable, Sendable {
    public static let magic: [UInt8] = [0x46, 0x45, 0x44, 0x4B]
    /// Formats this build reads; it writes the lowest that holds the content.
    public static let formats: ClosedRange<UInt16> = 1...2
    static let recentPushesTag: UInt16 = 1
    static let strategyStateTag: UInt16 = 2
    /// Optional (bit 15): when each recent push was accepted, in the order of tag 1.
    static let pushTimesTag: UInt16 = 0x8003

    public var version: UInt64
    public var datasets: UInt64
    public var tensors: [Tensor]
    /// The pushes whose idempotency keys the server remembers, oldest first.
    public var recentPushes: [PushRecord]
    /// The federation strategy's state (buffered updates, optimizer moments); nil: none.
    public var strategyState: StrategyRecord?

    public init(
        version: UInt64, datasets: UInt64, tensors: [Tensor], recentPushes: [PushRecord] = [],
        strategyState: StrategyRecord? = nil
    ) {
        self.version = version
        self.datasets = datasets
        self.tensors = tensors
        self.recentPushes = recentPushes
        self.strategyState = strategyState
    }

    /// The file's bytes: `contents` encoded.
    public func encode(compression: Compression = .shuffleZlib, level: Int32 = 1) -> [UInt8] {
        contents.encode(compression: compression, level: level)
    }

    /// The model and this checkpoint's state as sections, in the order they
    /// are written: recent pushes (tag 1), their times (0x8003, when any is
    /// known), the strategy state (tag 2). No section when there is no state.
    public var contents: CheckpointContents {
        var sections: [CheckpointSection] = []
        if !recentPushes.isEmpty {
            var section = ByteWriter()
            section.u32(UInt32(recentPushes.count))
            for p in recentPushes {
                section.string(p.clientID)
                section.u64(p.pushID)
                section.u64(p.version)
                section.u64(p.datasets)
            }
            sections.append(CheckpointSection(tag: Checkpoint.recentPushesTag, bytes: section.bytes))
            if recentPushes.contains(where: { $0.acceptedAt != 0 }) {
                var times = ByteWriter()
                times.u32(UInt32(recentPushes.count))
                for p in recentPushes { times.u64(p.acceptedAt) }
                sections.append(CheckpointSection(tag: Checkpoint.pushTimesTag, bytes: times.bytes))
            }
        }
        if let strategyState {
            var section = ByteWriter()
            strategyState.encode(into: &section)
            sections.append(CheckpointSection(tag: Checkpoint.strategyStateTag, bytes: section.bytes))
        }
        return CheckpointContents(version: version, datasets: datasets, tensors: tensors, sections: sections)
    }

    /// Reads a checkpoint file's bytes: `CheckpointContents.decode`, then
    /// `init(contents:limits:)`. Throws `.badMagic` for a file that is not a
    /// checkpoint, `.unsupportedVersion`, `.truncated`, `.checksumMismatch`,
    /// `.trailingBytes`, any blob error, or a section's error.
    public static func decode(_ bytes: [UInt8], limits: Limits = .default) throws(CodecError) -> Checkpoint {
        try Checkpoint(contents: try CheckpointContents.decode(bytes, limits: limits), limits: limits)
    }

    /// Gives `contents`' sections their meaning. Throws `.malformedPayload`
    /// for a malformed known section (or push times that do not match the
    /// pushes), `.unsupportedVersion` for a required section this build does
    /// not know; skips optional sections it does not know.
    public init(contents: CheckpointContents, limits: Limits = .default) throws(CodecError) {
        var pushes: [PushRecord] = []
        var strategy: StrategyRecord?
        var times: [UInt64]?
        for section in contents.sections {
            let tag = section.tag
            try withBytes(section.bytes) { (raw) throws(CodecError) in
                var body = ByteReader(raw, shortCode: .malformedPayload)
                switch tag {
                case Checkpoint.recentPushesTag:
                    let n = Int(try body.u32("recent push count"))
                    for _ in 0..<n {
                        let id = try body.string("client id", maxBytes: MessageCodec.maxClientIDBytes)
                        pushes.append(
                            PushRecord(
                                clientID: id, pushID: try body.u64("push id"), version: try body.u64("version"),
                                datasets: try body.u64("datasets")))
                    }
                    try body.expectEnd("the recent pushes section")
                case Checkpoint.pushTimesTag:
                    let n = Int(try body.u32("push time count"))
                    guard n <= body.remaining / 8 else {
                        throw CodecError(.malformedPayload, "\(n) push times in \(body.remaining) bytes")
                    }
                    times = try (0..<n).map { _ throws(CodecError) in try body.u64("push time") }
                    try body.expectEnd("the push times section")
                case Checkpoint.strategyStateTag:
                    strategy = try StrategyRecord.decode(&body, limits: limits)
                    try body.expectEnd("the strategy state section")
                case _ where section.isOptional:
                    break
                default:
                    throw CodecError(.unsupportedVersion, "checkpoint section \(tag) is not known to this build")
                }
            }
        }
        if let times {
            guard times.count == pushes.count else {
                throw CodecError(.malformedPayload, "\(times.count) push times for \(pushes.count) recent pushes")
            }
            for i in pushes.indices { pushes[i].acceptedAt = times[i] }
        }
        self.init(
            version: contents.version, datasets: contents.datasets, tensors: contents.tensors, recentPushes: pushes,
            strategyState: strategy)
    }
}

/// A push the server applied and acknowledged, remembered by its
/// idempotency key (client id, push id) with the `ACK` it was given.
public struct PushRecord: Hashable, Sendable {
    public var clientID: String
    public var pushID: UInt64
    public var version: UInt64
    public var datasets: UInt64
    /// When the push was accepted, in milliseconds since 1970; 0: not known
    /// (a checkpoint written before times were kept).
    public var acceptedAt: UInt64

    public init(clientID: String, pushID: UInt64, version: UInt64, datasets: UInt64, acceptedAt: UInt64 = 0) {
        self.clientID = clientID
        self.pushID = pushID
        self.version = version
        self.datasets = datasets
        self.acceptedAt = acceptedAt
    }
}

/// A federation strategy's state at rest (checkpoint section 2,
/// Protocol/SPEC.md section 8):
/// ```
/// u16 buffered count; per update: str client_id, u64 samples, u64 staleness,
///     f64 weight, f64 norm, blob (its delta)
/// u16 tensor list count; per list: str name, blob
/// u16 scalar count; per scalar: str name, f64
/// ```
/// `f64` is an IEEE binary64, big-endian like every integer.
public struct StrategyRecord: Hashable, Sendable {
    /// One update waiting in the strategy's buffer, as the checkpoint keeps it.
    public struct Buffered: Hashable, Sendable {
        public var clientID: String
        public var samples: UInt64
        public var staleness: UInt64
        public var weight: Double
        public var norm: Double
        public var delta: [Tensor]

        public init(
            clientID: String, samples: UInt64, staleness: UInt64, weight: Double, norm: Double, delta: [Tensor]
        ) {
            self.clientID = clientID
            self.samples = samples
            self.staleness = staleness
            self.weight = weight
            self.norm = norm
            self.delta = delta
        }
    }

    public var buffer: [Buffered]
    /// Named tensor lists, in name order.
    public var tensors: [String: [Tensor]]
    public var scalars: [String: Double]

    public init(buffer: [Buffered] = [], tensors: [String: [Tensor]] = [:], scalars: [String: Double] = [:]) {
        self.buffer = buffer
        self.tensors = tensors
        self.scalars = scalars
    }

    func encode(into w: inout ByteWriter) {
        w.u16(UInt16(buffer.count))
        for b in buffer {
            w.string(b.clientID)
            w.u64(b.samples)
            w.u64(b.staleness)
            w.u64(b.weight.bitPattern)
            w.u64(b.norm.bitPattern)
            var blob = ByteWriter()
            TensorBlob.encode(b.delta, compression: .shuffleZlib, level: 1, into: &blob)
            w.u32(UInt32(blob.bytes.count))
            w.append(blob.bytes)
        }
        w.u16(UInt16(tensors.count))
        for name in tensors.keys.sorted() {
            w.string(name)
            var blob = ByteWriter()
            TensorBlob.encode(tensors[name]!, compression: .shuffleZlib, level: 1, into: &blob)
            w.u32(UInt32(blob.bytes.count))
            w.append(blob.bytes)
        }
        w.u16(UInt16(scalars.count))
        for name in scalars.keys.sorted() {
            w.string(name)
            w.u64(scalars[name]!.bitPattern)
        }
    }

    static func decode(_ r: inout ByteReader, limits: Limits) throws(CodecError) -> StrategyRecord {
        func blob(_ r: inout ByteReader) throws(CodecError) -> [Tensor] {
            let n = Int(try r.u32("blob length"))
            var b = ByteReader(try r.take(n, "blob"))
            return try TensorBlob.decode(&b, limits: limits)
        }
        var record = StrategyRecord()
        for _ in 0..<Int(try r.u16("buffered count")) {
            let id = try r.string("client id", maxBytes: MessageCodec.maxClientIDBytes)
            let samples = try r.u64("samples")
            let staleness = try r.u64("staleness")
            let weight = Double(bitPattern: try r.u64("weight"))
            let norm = Double(bitPattern: try r.u64("norm"))
            record.buffer.append(
                Buffered(
                    clientID: id, samples: samples, staleness: staleness, weight: weight, norm: norm,
                    delta: try blob(&r)))
        }
        for _ in 0..<Int(try r.u16("tensor list count")) {
            let name = try r.string("name", maxBytes: 256)
            record.tensors[name] = try blob(&r)
        }
        for _ in 0..<Int(try r.u16("scalar count")) {
            let name = try r.string("name", maxBytes: 256)
            record.scalars[name] = Double(bitPattern: try r.u64("scalar"))
        }
        return record
    }
}
