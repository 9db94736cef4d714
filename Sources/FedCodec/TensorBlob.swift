/// The tensor blob: a list of Float32 tensors as it travels inside `MODEL`
/// and `PUSH` messages and checkpoint files (`Protocol/SPEC.md`, "Tensor blob").
///
/// ```
/// u8  compression        0 none, 1 zlib, 2 shuffle-zlib
/// u16 tensor count       <= Limits.maxTensors
/// per tensor:
///   u8  dtype            1 = float32; version 3 also 2-5 (`ValueEncoding`)
///   u8  rank             <= Limits.maxRank
///   u32 dims[rank]
/// u32 raw size           == sum of the tensors' encoded sizes (4 per float32 value);
///                           4 * total elements <= Limits.maxDecompressedBytes
/// u32 stored size        == bytes that follow, to the end of the blob
/// stored bytes           raw: each tensor's values encoded, row-major, tensors in order
/// ```
/// All integers big-endian. Decoding checks every declared size against the
/// limits before allocating or inflating anything.
public enum TensorBlob {
    public static let float32DType: UInt8 = 1

    /// Appends the blob for `tensors` to `writer`. `level` is zlib's (1-9) for
    /// compressed modes. Every tensor's values are stored as `encoding`
    /// (float32 unless a version-3 peer agreed to another, section 6.3);
    /// shuffle-zlib of a block encoding is written as plain zlib (mode 1).
    public static func encode(
        _ tensors: [Tensor], compression: Compression, level: Int32 = 6, encoding: ValueEncoding = .float32,
        rounding: ValueEncoding.Rounding = .nearest, into writer: inout ByteWriter
    ) {
        let mode: Compression = compression == .shuffleZlib && encoding.width == nil ? .zlib : compression
        writer.u8(mode.rawValue)
        writer.u16(UInt16(tensors.count))
        var rawSize = 0
        for t in tensors {
            writer.u8(encoding.rawValue)
            writer.u8(UInt8(t.shape.count))
            for d in t.shape { writer.u32(UInt32(d)) }
            rawSize += encoding.encodedSize(count: t.count)
        }
        writer.u32(UInt32(rawSize))
        var raw = ByteWriter(capacity: rawSize)
        for (i, t) in tensors.enumerated() {
            encoding.encode(t.values, rounding: rounding.forTensor(i), into: &raw)
        }
        switch mode {
        case .none:
            writer.u32(UInt32(rawSize))
            writer.append(raw.bytes)
        case .zlib, .shuffleZlib:
            let packed: [UInt8]
            if mode == .shuffleZlib {
                let width = encoding.width!
                let shuffled = [UInt8](unsafeUninitializedCapacity: rawSize) { buf, n in
                    raw.bytes.withUnsafeBytes {
                        Zlib.shuffle($0, into: UnsafeMutableRawBufferPointer(buf), width: width)
                    }
                    n = rawSize
                }
                // The low planes (mantissa bytes) are near-random: Huffman only; the top plane
                // (sign and exponent) run-length.
                packed = shuffled.withUnsafeBytes {
                    Zlib.deflate($0, level: level, entropyPrefix: rawSize / width * (width - 1))
                }
            } else {
                packed = raw.bytes.withUnsafeBytes { Zlib.deflate($0, level: level) }
            }
            writer.u32(UInt32(packed.count))
            writer.append(packed)
        }
    }

    /// A blob's header, checked (`Protocol/SPEC.md` section 6, checks 1-6)
    /// without touching its data.
    public struct Header: Hashable, Sendable {
        public var compression: Compression
        public var shapes: [[Int]]
        /// Each tensor's value encoding (float32 outside version 3).
        public var encodings: [ValueEncoding]
        public var rawSize: Int
        public var storedSize: Int
    }

    /// Reads and checks the header of a blob that runs to the end of
    /// `reader`'s bytes, leaving the reader at the stored data. Nothing is
    /// allocated beyond the shapes, nothing is inflated.
    public static func header(_ reader: inout ByteReader, limits: Limits) throws(CodecError) -> Header {
        let modeByte = try reader.u8("blob compression")
        guard let compression = Compression(rawValue: modeByte) else {
            throw CodecError(
                .unsupportedCompression, "compression \(modeByte) is not defined; known: 0 none, 1 zlib, 2 shuffle-zlib"
            )
        }
        let count = Int(try reader.u16("tensor count"))
        if count > limits.maxTensors {
            throw CodecError(.invalidShape, "\(count) tensors, at most \(limits.maxTensors) allowed")
        }
        var shapes: [[Int]] = []
        shapes.reserveCapacity(count)
        var encodings: [ValueEncoding] = []
        var total = 0
        var encodedTotal = 0
        let maxElements = limits.maxDecompressedBytes / 4
        for index in 0..<count {
            let dtype = try reader.u8("tensor \(index) dtype")
            guard let encoding = ValueEncoding(rawValue: dtype), limits.valueEncodings & encoding.bit != 0 else {
                let accepted = ValueEncoding.allCases.filter { limits.valueEncodings & $0.bit != 0 }
                throw CodecError(
                    .unsupportedDType,
                    accepted == [.float32]
                        ? "tensor \(index) has dtype \(dtype); only 1 (float32) is accepted here"
                        : "tensor \(index) has dtype \(dtype); accepted here: "
                            + accepted.map { "\($0.rawValue) (\($0))" }.joined(separator: ", "))
            }
            encodings.append(encoding)
            let rank = Int(try reader.u8("tensor \(index) rank"))
            if rank > limits.maxRank {
                throw CodecError(.invalidShape, "tensor \(index) has rank \(rank), at most \(limits.maxRank) allowed")
            }
            var shape: [Int] = []
            shape.reserveCapacity(rank)
            var elements = 1
            for axis in 0..<rank {
                let d = Int(try reader.u32("tensor \(index) dim \(axis)"))
                shape.append(d)
                // Saturate above the limit so the product cannot overflow.
                elements = elements > maxElements ? elements : min(elements * d, maxElements + 1)
                if d == 0 { elements = 0 }
            }
            total = min(total + elements, maxElements + 1)
            if total <= maxElements { encodedTotal += encoding.encodedSize(count: elements) }
            shapes.append(shape)
        }
        if total > maxElements {
            throw CodecError(
                .decompressedTooLarge, "tensors declare more than \(limits.maxDecompressedBytes) bytes of data")
        }
        let rawSize = Int(try reader.u32("raw size"))
        guard rawSize == encodedTotal else {
            throw CodecError(.sizeMismatch, "raw size is \(rawSize) bytes, the shapes hold \(encodedTotal)")
        }
        if compression == .shuffleZlib, let first = encodings.first {
            guard first.width != nil, encodings.allSatisfy({ $0 == first }) else {
                throw CodecError(
                    .unsupportedCompression, "shuffle-zlib needs every tensor in fp32, or every tensor in fp16")
            }
        }
        let storedSize = Int(try reader.u32("stored size"))
        if storedSize > reader.remaining {
            throw CodecError(.malformedPayload, "stored size is \(storedSize) bytes, only \(reader.remaining) follow")
        }
        if storedSize < reader.remaining {
            throw CodecError(.trailingBytes, "\(reader.remaining - storedSize) bytes after the blob's data")
        }
        return Header(
            compression: compression, shapes: shapes, encodings: encodings, rawSize: rawSize, storedSize: storedSize)
    }

    /// Decodes one blob that runs to the end of `reader`'s bytes.
    public static func decode(_ reader: inout ByteReader, limits: Limits) throws(CodecError) -> [Tensor] {
        let h = try header(&reader, limits: limits)
        let (compression, rawSize, storedSize) = (h.compression, h.rawSize, h.storedSize)
        let stored = try reader.take(storedSize, "blob data")
        switch compression {
        case .none:
            guard storedSize == rawSize else {
                throw CodecError(.sizeMismatch, "uncompressed blob stores \(storedSize) bytes, raw size is \(rawSize)")
            }
            return split(stored, h)
        case .zlib:
            let raw = try makeBytes(count: rawSize) { (buf) throws(CodecError) in try Zlib.inflate(stored, into: buf) }
            return raw.withUnsafeBytes { split($0, h) }
        case .shuffleZlib:
            let shuffled = try makeBytes(count: rawSize) { (buf) throws(CodecError) in
                try Zlib.inflate(stored, into: buf)
            }
            let width = h.encodings.first?.width ?? 4
            if width == 4 { return shuffled.withUnsafeBytes { unshuffleFloats($0, h) } }
            let raw = [UInt8](unsafeUninitializedCapacity: rawSize) { buf, n in
                shuffled.withUnsafeBytes { Zlib.unshuffle($0, into: UnsafeMutableRawBufferPointer(buf), width: width) }
                n = rawSize
            }
            return raw.withUnsafeBytes { split($0, h) }
        }
    }

    /// Float32 tensors straight from byte-shuffled data (no unshuffled copy):
    /// byte `j` of value `k` is at `j * n + k`, `n` the values in the blob.
    private static func unshuffleFloats(_ shuffled: UnsafeRawBufferPointer, _ h: Header) -> [Tensor] {
        let total = shuffled.count / 4
        let planes = shuffled.bindMemory(to: UInt8.self)
        var offset = 0
        var out: [Tensor] = []
        out.reserveCapacity(h.shapes.count)
        for shape in h.shapes {
            let n = Tensor.elementCount(shape)!
            let values = [Float](unsafeUninitializedCapacity: n) { buf, count in
                for i in 0..<n {
                    let k = offset + i
                    let bits =
                        UInt32(planes[k]) | UInt32(planes[total + k]) << 8 | UInt32(planes[2 * total + k]) << 16
                        | UInt32(planes[3 * total + k]) << 24
                    buf[i] = Float(bitPattern: bits)
                }
                count = n
            }
            offset += n
            out.append(Tensor(checkedShape: shape, values: values))
        }
        return out
    }

    /// Cuts the data into tensors of the header's shapes, decoding each
    /// tensor's values (sizes already checked).
    private static func split(_ raw: UnsafeRawBufferPointer, _ h: Header) -> [Tensor] {
        var offset = 0
        var out: [Tensor] = []
        out.reserveCapacity(h.shapes.count)
        for (shape, encoding) in zip(h.shapes, h.encodings) {
            let n = Tensor.elementCount(shape)!
            let size = encoding.encodedSize(count: n)
            let values = encoding.decode(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + size]), count: n)
            offset += size
            out.append(Tensor(checkedShape: shape, values: values))
        }
        return out
    }
}
