/// The tensor blob: a list of Float32 tensors as it travels inside `MODEL`
/// and `PUSH` messages and checkpoint files (`Protocol/SPEC.md`, "Tensor blob").
///
/// ```
/// u8  compression        0 none, 1 zlib, 2 shuffle-zlib
/// u16 tensor count       <= Limits.maxTensors
/// per tensor:
///   u8  dtype            1 = float32
///   u8  rank             <= Limits.maxRank
///   u32 dims[rank]
/// u32 raw size           == 4 * total elements, <= Limits.maxDecompressedBytes
/// u32 stored size        == bytes that follow, to the end of the blob
/// stored bytes           raw: little-endian Float32, row-major, tensors in order
/// ```
/// All integers big-endian. Decoding checks every declared size against the
/// limits before allocating or inflating anything.
public enum TensorBlob {
    public static let float32DType: UInt8 = 1

    /// Appends the blob for `tensors` to `writer`. `level` is zlib's (1-9) for compressed modes.
    public static func encode(
        _ tensors: [Tensor], compression: Compression, level: Int32 = 6, into writer: inout ByteWriter
    ) {
        writer.u8(compression.rawValue)
        writer.u16(UInt16(tensors.count))
        var total = 0
        for t in tensors {
            writer.u8(float32DType)
            writer.u8(UInt8(t.shape.count))
            for d in t.shape { writer.u32(UInt32(d)) }
            total += t.count
        }
        let rawSize = total * 4
        writer.u32(UInt32(rawSize))
        switch compression {
        case .none:
            writer.u32(UInt32(rawSize))
            for t in tensors { appendLittleEndian(t.values, to: &writer) }
        case .zlib, .shuffleZlib:
            var raw = ByteWriter(capacity: rawSize)
            for t in tensors { appendLittleEndian(t.values, to: &raw) }
            let packed: [UInt8]
            if compression == .shuffleZlib {
                let shuffled = [UInt8](unsafeUninitializedCapacity: rawSize) { buf, n in
                    raw.bytes.withUnsafeBytes { Zlib.shuffle($0, into: UnsafeMutableRawBufferPointer(buf)) }
                    n = rawSize
                }
                // Planes 0-2 (mantissa bytes) are near-random: Huffman only; plane 3 (sign and exponent) run-length.
                packed = shuffled.withUnsafeBytes { Zlib.deflate($0, level: level, entropyPrefix: rawSize / 4 * 3) }
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
        var total = 0
        let maxElements = limits.maxDecompressedBytes / 4
        for index in 0..<count {
            let dtype = try reader.u8("tensor \(index) dtype")
            guard dtype == float32DType else {
                throw CodecError(.unsupportedDType, "tensor \(index) has dtype \(dtype); only 1 (float32) is defined")
            }
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
            shapes.append(shape)
        }
        if total > maxElements {
            throw CodecError(
                .decompressedTooLarge, "tensors declare more than \(limits.maxDecompressedBytes) bytes of data")
        }
        let rawSize = Int(try reader.u32("raw size"))
        guard rawSize == total * 4 else {
            throw CodecError(.sizeMismatch, "raw size is \(rawSize) bytes, the shapes hold \(total * 4)")
        }
        let storedSize = Int(try reader.u32("stored size"))
        if storedSize > reader.remaining {
            throw CodecError(.malformedPayload, "stored size is \(storedSize) bytes, only \(reader.remaining) follow")
        }
        if storedSize < reader.remaining {
            throw CodecError(.trailingBytes, "\(reader.remaining - storedSize) bytes after the blob's data")
        }
        return Header(compression: compression, shapes: shapes, rawSize: rawSize, storedSize: storedSize)
    }

    /// Decodes one blob that runs to the end of `reader`'s bytes.
    public static func decode(_ reader: inout ByteReader, limits: Limits) throws(CodecError) -> [Tensor] {
        let h = try header(&reader, limits: limits)
        let (compression, shapes, rawSize, storedSize) = (h.compression, h.shapes, h.rawSize, h.storedSize)
        let stored = try reader.take(storedSize, "blob data")
        switch compression {
        case .none:
            guard storedSize == rawSize else {
                throw CodecError(.sizeMismatch, "uncompressed blob stores \(storedSize) bytes, raw size is \(rawSize)")
            }
            return split(stored, shapes: shapes)
        case .zlib:
            let raw = try makeBytes(count: rawSize) { (buf) throws(CodecError) in try Zlib.inflate(stored, into: buf) }
            return raw.withUnsafeBytes { split($0, shapes: shapes) }
        case .shuffleZlib:
            let shuffled = try makeBytes(count: rawSize) { (buf) throws(CodecError) in
                try Zlib.inflate(stored, into: buf)
            }
            let raw = [UInt8](unsafeUninitializedCapacity: rawSize) { buf, n in
                shuffled.withUnsafeBytes { Zlib.unshuffle($0, into: UnsafeMutableRawBufferPointer(buf)) }
                n = rawSize
            }
            return raw.withUnsafeBytes { split($0, shapes: shapes) }
        }
    }

    /// Cuts little-endian Float32 bytes into tensors of `shapes` (sizes already checked).
    private static func split(_ raw: UnsafeRawBufferPointer, shapes: [[Int]]) -> [Tensor] {
        var offset = 0
        var out: [Tensor] = []
        out.reserveCapacity(shapes.count)
        for shape in shapes {
            let n = Tensor.elementCount(shape)!
            let values = [Float](unsafeUninitializedCapacity: n) { buf, count in
                let dst = UnsafeMutableRawBufferPointer(buf)
                if n > 0 { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[offset..<offset + 4 * n])) }
                #if _endian(big)
                    for i in 0..<n { buf[i] = Float(bitPattern: UInt32(littleEndian: buf[i].bitPattern)) }
                #endif
                count = n
            }
            offset += 4 * n
            out.append(Tensor(checkedShape: shape, values: values))
        }
        return out
    }

    private static func appendLittleEndian(_ values: [Float], to writer: inout ByteWriter) {
        #if _endian(little)
            values.withUnsafeBytes { writer.append($0) }
        #else
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { writer.append($0) } }
        #endif
    }
}
