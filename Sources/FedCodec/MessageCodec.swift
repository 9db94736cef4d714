/// Turns messages into frames and frames into messages (`Protocol/SPEC.md`, "Messages").
///
/// Payload layouts, all integers big-endian, strings as `u16` length + UTF-8:
/// ```
/// HELLO           u8 minVersion, u8 maxVersion, u8 compressions, str clientID (1-256 B), str authToken (0-1024 B)
/// WELCOME         u8 version, u8 compressions, str serverID (0-256 B), u64 modelVersion, u64 datasets, u32 maxPayload
///                 [version >= 2: u64 maxDecompressed, u64 maxDatasets] [version >= 3: u8 encodings, u8 deltaEncoding]
/// FETCH           u64 heldVersion, u8 compression [frame version >= 3: u8 deltaEncodings]
/// MODEL           u64 version, u64 datasets, blob
/// MODEL_UNCHANGED u64 version, u64 datasets
/// PUSH            str clientID (1-256 B), u64 datasets, u64 baseVersion, [frame version >= 2: u64 pushID],
///                 [frame version >= 3: u8 flags (bit 0: delta)], blob
/// MODEL_DELTA     (version 3) u64 version, u64 datasets, u64 fromVersion, u16 steps, steps x (u32 length, blob)
/// ACK             u64 version, u64 datasets
/// ERROR           u16 code, u8 retryable (0|1), u8 minVersion, u8 maxVersion, str message (0-4096 B)
/// PING, PONG      u64 nonce
/// ```
/// Every payload must be consumed exactly: bytes left over are `.trailingBytes`.
/// A frame's version selects its layout (PUSH gains `pushID` in version 2);
/// WELCOME travels in a version-1 frame and its own `version` field selects
/// whether the version-2 fields follow.
public enum MessageCodec {
    public static let maxClientIDBytes = 256
    public static let maxAuthTokenBytes = 1024
    public static let maxErrorMessageBytes = 4096
    /// Most steps in one `MODEL_DELTA` (each decodes to a full set of weights).
    public static let maxDeltaSteps = 64
    /// Flag bits of a version-3 `PUSH`.
    public static let pushFlagDelta: UInt8 = 1

    /// Encodes `message` as one complete frame. `level` is zlib's level for compressed blobs.
    public static func encode(_ message: Message, requestID: UInt32, level: Int32 = 6, version: UInt8 = 1) -> [UInt8] {
        var capacity = 64
        switch message {
        case .model(let m): capacity += m.tensors.reduce(0) { $0 + 4 * $1.count + 16 }
        case .push(let p): capacity += p.tensors.reduce(0) { $0 + 4 * $1.count + 16 }
        case .modelDelta(let d): capacity += d.steps.reduce(0) { $0 + $1.reduce(0) { $0 + 4 * $1.count + 16 } }
        default: break
        }
        // HELLO and WELCOME always travel in version-1 frames (SPEC.md section 3).
        let frameVersion: UInt8 = message.type == .hello || message.type == .welcome ? 1 : version
        var frame = FrameWriter(type: message.type, requestID: requestID, capacity: capacity, version: frameVersion)
        writePayload(message, level: level, version: frameVersion, into: &frame.payload)
        // Payloads written here are far below 4 GiB for any tensors that fit in memory
        // as blobs (the blob's own u32 sizes bound them first).
        return (try? frame.finish()) ?? []
    }

    /// The payload bytes alone (no frame header) of `message`.
    public static func payload(_ message: Message, level: Int32 = 6, version: UInt8 = 1) -> [UInt8] {
        var w = ByteWriter()
        writePayload(message, level: level, version: version, into: &w)
        return w.bytes
    }

    static func writePayload(_ message: Message, level: Int32, version: UInt8, into w: inout ByteWriter) {
        switch message {
        case .hello(let h):
            w.u8(h.minVersion)
            w.u8(h.maxVersion)
            w.u8(h.compressions)
            w.string(h.clientID)
            w.string(h.authToken)
        case .welcome(let x):
            w.u8(x.version)
            w.u8(x.compressions)
            w.string(x.serverID)
            w.u64(x.modelVersion)
            w.u64(x.datasets)
            w.u32(x.maxPayloadBytes)
            if x.version >= 2 {
                w.u64(x.maxDecompressedBytes)
                w.u64(x.maxDatasets)
            }
            if x.version >= 3 {
                w.u8(x.encodings)
                w.u8(x.deltaEncoding)
            }
        case .fetch(let held, let compression, let deltaEncodings):
            w.u64(held)
            w.u8(compression.rawValue)
            if version >= 3 { w.u8(deltaEncodings) }
        case .model(let m):
            w.u64(m.version)
            w.u64(m.datasets)
            TensorBlob.encode(m.tensors, compression: m.compression, level: level, into: &w)
        case .modelUnchanged(let version, let datasets), .ack(let version, let datasets):
            w.u64(version)
            w.u64(datasets)
        case .push(let p):
            w.string(p.clientID)
            w.u64(p.datasets)
            w.u64(p.baseVersion)
            if version >= 2 { w.u64(p.pushID) }
            if version >= 3 { w.u8(p.isDelta ? pushFlagDelta : 0) }
            TensorBlob.encode(
                p.tensors, compression: p.compression, level: level, encoding: version >= 3 ? p.encoding : .float32,
                rounding: p.rounding, into: &w)
        case .modelDelta(let d):
            var blobs: [[UInt8]] = []
            for step in d.steps {
                var b = ByteWriter()
                TensorBlob.encode(step, compression: d.compression, level: level, encoding: d.encoding, into: &b)
                blobs.append(b.bytes)
            }
            writeModelDelta(version: d.version, datasets: d.datasets, from: d.fromVersion, stepBlobs: blobs, into: &w)
        case .error(let e):
            w.u16(e.code.rawValue)
            w.u8(e.retryable ? 1 : 0)
            w.u8(e.minVersion)
            w.u8(e.maxVersion)
            w.string(e.message)
        case .ping(let nonce), .pong(let nonce):
            w.u64(nonce)
        case .other(let m):
            m.base.write(into: &w, version: version)
        }
    }

    /// The `MODEL_DELTA` payload for steps already encoded as blobs.
    public static func modelDeltaPayload(version: UInt64, datasets: UInt64, from: UInt64, stepBlobs: [[UInt8]])
        -> [UInt8]
    {
        var w = ByteWriter(capacity: 32 + stepBlobs.reduce(0) { $0 + 4 + $1.count })
        writeModelDelta(version: version, datasets: datasets, from: from, stepBlobs: stepBlobs, into: &w)
        return w.bytes
    }

    static func writeModelDelta(
        version: UInt64, datasets: UInt64, from: UInt64, stepBlobs: [[UInt8]], into w: inout ByteWriter
    ) {
        w.u64(version)
        w.u64(datasets)
        w.u64(from)
        w.u16(UInt16(stepBlobs.count))
        for b in stepBlobs {
            w.u32(UInt32(b.count))
            w.append(b)
        }
    }

    /// Decodes the message a frame carries. Throws a `CodecError` for any
    /// malformed payload; the frame's request id is the one to answer with.
    /// `extensions`: the `ProtocolMessage` types frames may carry besides those of versions 1-3.
    public static func decode(
        _ frame: Frame, limits: Limits = .default, extensions: [any ProtocolMessage.Type] = MessageRegistry.extensions
    ) throws(CodecError) -> Message {
        try withBytes(frame.payload) { (raw) throws(CodecError) -> Message in
            var r = ByteReader(raw)
            var limits = limits
            if frame.header.version >= 3 {
                limits.valueEncodings = limits.version3Encodings | ValueEncoding.float32.bit
            }
            let message = try decodePayload(
                type: frame.header.type, version: frame.header.version, &r, limits: limits, extensions: extensions)
            try r.expectEnd("the \(frame.header.type) payload")
            return message
        }
    }

    static func decodePayload(
        type: MessageType, version frameVersion: UInt8, _ r: inout ByteReader, limits: Limits,
        extensions: [any ProtocolMessage.Type] = MessageRegistry.extensions
    ) throws(CodecError) -> Message {
        switch type {
        case .hello:
            let minV = try r.u8("min version")
            let maxV = try r.u8("max version")
            guard minV >= 1, minV <= maxV else {
                throw CodecError(.malformedPayload, "version range \(minV)...\(maxV) is empty or starts at 0")
            }
            let compressions = try r.u8("compressions")
            let id = try clientID(&r)
            let token = try r.string("auth token", maxBytes: maxAuthTokenBytes)
            return .hello(
                Hello(minVersion: minV, maxVersion: maxV, compressions: compressions, clientID: id, authToken: token))
        case .welcome:
            let version = try r.u8("version")
            let compressions = try r.u8("compressions")
            let serverID = try r.string("server id", maxBytes: maxClientIDBytes)
            let modelVersion = try r.u64("model version")
            let datasets = try r.u64("datasets")
            let maxPayload = try r.u32("max payload")
            var maxDecompressed: UInt64 = 0
            var maxDatasets: UInt64 = 0
            var encodings: UInt8 = 0
            var deltaEncoding: UInt8 = 0
            if version >= 2 {
                maxDecompressed = try r.u64("max decompressed")
                maxDatasets = try r.u64("max datasets")
            }
            if version >= 3 {
                encodings = try r.u8("encodings")
                deltaEncoding = try r.u8("delta encoding")
                // One dtype for every step, or none (SPEC.md section 3.2).
                guard deltaEncoding.nonzeroBitCount <= 1 else {
                    throw CodecError(
                        .malformedPayload,
                        "delta encoding 0x\(String(deltaEncoding, radix: 16)) names more than one dtype")
                }
            }
            return .welcome(
                Welcome(
                    version: version, compressions: compressions, serverID: serverID, modelVersion: modelVersion,
                    datasets: datasets, maxPayloadBytes: maxPayload, maxDecompressedBytes: maxDecompressed,
                    maxDatasets: maxDatasets, encodings: encodings, deltaEncoding: deltaEncoding))
        case .fetch:
            let held = try r.u64("held version")
            let byte = try r.u8("compression")
            guard let compression = Compression(rawValue: byte) else {
                throw CodecError(.unsupportedCompression, "compression \(byte) is not defined")
            }
            let deltaEncodings = frameVersion >= 3 ? try r.u8("delta encodings") : 0
            return .fetch(heldVersion: held, compression: compression, deltaEncodings: deltaEncodings)
        case .model:
            let version = try r.u64("version")
            let datasets = try r.u64("datasets")
            let mode = r.remaining > 0 ? Compression(rawValue: r.bytes[r.offset]) : nil
            let tensors = try TensorBlob.decode(&r, limits: limits)
            return .model(Model(version: version, datasets: datasets, tensors: tensors, compression: mode ?? .none))
        case .modelUnchanged:
            return .modelUnchanged(version: try r.u64("version"), datasets: try r.u64("datasets"))
        case .push:
            let id = try clientID(&r)
            let datasets = try r.u64("datasets")
            let base = try r.u64("base version")
            var pushID: UInt64 = 0
            if frameVersion >= 2 { pushID = try r.u64("push id") }
            var flags: UInt8 = 0
            if frameVersion >= 3 {
                flags = try r.u8("push flags")
                guard flags & ~pushFlagDelta == 0 else {
                    throw CodecError(.malformedPayload, "push flags 0x\(String(flags, radix: 16)) are not defined")
                }
            }
            let mode = r.remaining > 0 ? Compression(rawValue: r.bytes[r.offset]) : nil
            let start = r.offset
            let tensors = try TensorBlob.decode(&r, limits: limits)
            let encoding = firstEncoding(r.bytes, blobAt: start)
            return .push(
                Push(
                    clientID: id, datasets: datasets, baseVersion: base, tensors: tensors, compression: mode ?? .none,
                    pushID: pushID, encoding: encoding, isDelta: flags & pushFlagDelta != 0))
        case .modelDelta:
            guard frameVersion >= 3 else {
                throw CodecError(.unknownMessageType, "MODEL_DELTA is not defined in version \(frameVersion)")
            }
            let version = try r.u64("version")
            let datasets = try r.u64("datasets")
            let from = try r.u64("from version")
            let count = Int(try r.u16("step count"))
            guard count <= maxDeltaSteps else {
                throw CodecError(.malformedPayload, "\(count) steps, at most \(maxDeltaSteps) allowed")
            }
            var steps: [[Tensor]] = []
            var encoding = ValueEncoding.float32
            var compression = Compression.none
            for i in 0..<count {
                let length = Int(try r.u32("step \(i) length"))
                let blob = try r.take(length, "step \(i) blob")
                var sub = ByteReader(blob)
                if length > 0 { compression = Compression(rawValue: blob[0]) ?? .none }
                steps.append(try TensorBlob.decode(&sub, limits: limits))
                encoding = firstEncoding(blob, blobAt: 0)
            }
            return .modelDelta(
                ModelDelta(
                    version: version, datasets: datasets, fromVersion: from, steps: steps, encoding: encoding,
                    compression: compression))
        case .ack:
            return .ack(version: try r.u64("version"), datasets: try r.u64("datasets"))
        case .error:
            let code = ErrorCode(rawValue: try r.u16("error code"))
            let retryable = try r.u8("retryable")
            guard retryable <= 1 else { throw CodecError(.malformedPayload, "retryable is \(retryable), not 0 or 1") }
            let minV = try r.u8("min version")
            let maxV = try r.u8("max version")
            let text = try r.string("error message", maxBytes: maxErrorMessageBytes)
            return .error(
                ErrorMessage(code: code, retryable: retryable == 1, message: text, minVersion: minV, maxVersion: maxV))
        case .ping:
            return .ping(nonce: try r.u64("nonce"))
        case .pong:
            return .pong(nonce: try r.u64("nonce"))
        default:
            guard let defined = MessageRegistry.extensionType(type, in: extensions),
                defined.descriptor.isDefined(inVersion: frameVersion)
            else {
                throw CodecError(
                    .unknownMessageType, "message type \(type.rawValue) is not defined in version \(frameVersion)")
            }
            return .other(AnyProtocolMessage(try defined.read(from: &r, version: frameVersion, limits: limits)))
        }
    }

    /// The tensor shapes a `PUSH` frame's blob declares, read from the
    /// payload's fields and the blob header alone, with every check of the
    /// blob header done (nothing inflated or copied), so a receiver can refuse
    /// a push of the wrong shapes before decoding its data. Nil when the
    /// frame is not a PUSH or fails before its blob data (full decoding then
    /// reports why).
    public static func declaredPushShapes(_ frame: Frame, limits: Limits) -> [[Int]]? {
        guard frame.header.type == .push else { return nil }
        return frame.payload.withUnsafeBytes { raw -> [[Int]]? in
            var r = ByteReader(raw)
            do throws(CodecError) {
                _ = try clientID(&r)
                _ = try r.u64("datasets")
                _ = try r.u64("base version")
                if frame.header.version >= 2 { _ = try r.u64("push id") }
                if frame.header.version >= 3 { _ = try r.u8("push flags") }
                var limits = limits
                if frame.header.version >= 3 {
                    limits.valueEncodings = limits.version3Encodings | ValueEncoding.float32.bit
                }
                return try TensorBlob.header(&r, limits: limits).shapes
            } catch {
                return nil
            }
        }
    }

    /// The dtype of a decoded blob's first tensor (float32 when it has none).
    private static func firstEncoding(_ bytes: some Collection<UInt8>, blobAt start: Int) -> ValueEncoding {
        let b = Array(bytes.dropFirst(start).prefix(4))
        guard b.count == 4, b[1] != 0 || b[2] != 0 else { return .float32 }
        return ValueEncoding(rawValue: b[3]) ?? .float32
    }

    private static func clientID(_ r: inout ByteReader) throws(CodecError) -> String {
        let id = try r.string("client id", maxBytes: maxClientIDBytes)
        if id.isEmpty { throw CodecError(.invalidString, "client id is empty") }
        return id
    }
}
