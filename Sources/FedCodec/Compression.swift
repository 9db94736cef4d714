import CZlib

/// How a tensor blob's data is stored (`Protocol/SPEC.md`, section 6.2, "Compression modes").
public enum Compression: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// Little-endian Float32 bytes as they are.
    case none = 0
    /// The raw bytes as one zlib stream (RFC 1950).
    case zlib = 1
    /// The raw bytes byte-shuffled (byte 0 of every float, then byte 1, ...), then one zlib stream.
    case shuffleZlib = 2

    /// The capability bit of this mode in `HELLO`/`WELCOME`.
    public var bit: UInt8 { 1 << rawValue }

    public var description: String {
        switch self {
        case .none: "none"
        case .zlib: "zlib"
        case .shuffleZlib: "shuffle-zlib"
        }
    }

    public init?(name: String) {
        guard let c = Compression.allCases.first(where: { $0.description == name }) else { return nil }
        self = c
    }
}

/// zlib deflate/inflate over whole buffers, and the byte shuffle.
public enum Zlib {
    /// Compresses `input` into one zlib stream at `level` (0-9).
    ///
    /// With `entropyPrefix == 0` this is plain zlib at `level`. Otherwise the
    /// first `entropyPrefix` bytes are coded with Huffman codes only (no match
    /// search) and the rest run-length coded (`Z_RLE`): for byte-shuffled
    /// floats the prefix holds the mantissa bytes, close to random, where a
    /// match search costs time and gains nothing, and the rest holds sign and
    /// exponent bytes, whose repeats are runs. On the MLP's weights this is
    /// both smaller and several times faster than any level's full search
    /// (`fed bench codec`). The output is one ordinary zlib stream either way.
    public static func deflate(_ input: UnsafeRawBufferPointer, level: Int32 = 6, entropyPrefix: Int = 0) -> [UInt8] {
        var stream = z_stream()
        let initResult = fed_deflateInit2(&stream, level, 15)
        precondition(initResult == Z_OK, "deflateInit2 failed: \(initResult)")
        defer { deflateEnd(&stream) }
        // Room for stored blocks in the worst case, plus the switch between strategies.
        let bound = Int(deflateBound(&stream, UInt(input.count))) + 64
        var out = [UInt8](repeating: 0, count: bound)
        let prefix = min(max(entropyPrefix, 0), input.count)
        let produced = out.withUnsafeMutableBytes { outBuf -> Int in
            var empty: UInt8 = 0
            let base = input.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? withUnsafePointer(to: &empty) { $0 }
            stream.next_out = outBuf.baseAddress!.assumingMemoryBound(to: UInt8.self)
            stream.avail_out = UInt32(outBuf.count)
            if prefix > 0 && level > 0 {
                precondition(deflateParams(&stream, level, Z_HUFFMAN_ONLY) == Z_OK)
                stream.next_in = UnsafeMutablePointer(mutating: base)
                stream.avail_in = UInt32(prefix)
                precondition(CZlib.deflate(&stream, Z_NO_FLUSH) == Z_OK && stream.avail_in == 0)
                precondition(deflateParams(&stream, level, Z_RLE) == Z_OK)
            }
            let start = level > 0 ? prefix : 0
            stream.next_in = UnsafeMutablePointer(mutating: base + start)
            stream.avail_in = UInt32(input.count - start)
            let r = CZlib.deflate(&stream, Z_FINISH)
            precondition(r == Z_STREAM_END, "deflate into its own bound failed: \(r)")
            return Int(stream.total_out)
        }
        out.removeSubrange(produced...)
        return out
    }

    /// Inflates one zlib stream that must produce exactly `expectedSize` bytes,
    /// writing into `output` (of that size). Never writes or allocates past it.
    ///
    /// Throws `.sizeMismatch` if the stream ends early or holds more data,
    /// `.corruptCompressedData` if it is not valid zlib, `.trailingBytes` if
    /// bytes follow the end of the stream.
    public static func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(CodecError)
    {
        var stream = z_stream()
        let initResult = fed_inflateInit2(&stream, 15)
        guard initResult == Z_OK else { throw CodecError(.internalError, "inflateInit2 failed: \(initResult)") }
        defer { inflateEnd(&stream) }
        var spare: UInt8 = 0
        return try withUnsafeMutablePointer(to: &spare) { (sparePointer) throws(CodecError) in
            stream.next_in = UnsafeMutablePointer(
                mutating: input.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(sparePointer))
            stream.avail_in = UInt32(input.count)
            stream.next_out = output.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? sparePointer
            stream.avail_out = UInt32(output.count)
            var r = CZlib.inflate(&stream, Z_FINISH)
            if (r == Z_OK || r == Z_BUF_ERROR) && stream.avail_out == 0 {
                // The output is full and the stream has not ended: it may still
                // end without more data, or it holds more than was declared.
                stream.next_out = sparePointer
                stream.avail_out = 1
                r = CZlib.inflate(&stream, Z_FINISH)
                if stream.avail_out == 0 {
                    throw CodecError(.sizeMismatch, "compressed data inflates past the declared \(output.count) bytes")
                }
            }
            switch r {
            case Z_STREAM_END:
                if stream.total_out != output.count {
                    throw CodecError(
                        .sizeMismatch, "compressed data inflates to \(stream.total_out) bytes, \(output.count) declared"
                    )
                }
                if stream.avail_in != 0 {
                    throw CodecError(.trailingBytes, "\(stream.avail_in) bytes follow the end of the zlib stream")
                }
            case Z_OK, Z_BUF_ERROR:
                throw CodecError(
                    .corruptCompressedData, "zlib stream is cut off after \(stream.total_out) inflated bytes")
            default:
                let why = stream.msg.map { String(cString: $0) } ?? "code \(r)"
                throw CodecError(.corruptCompressedData, "zlib: \(why)")
            }
        }
    }

    /// Byte shuffle: for `n = src.count / 4` floats, `dst[j*n + i] = src[4*i + j]`
    /// (`width` 2: the same for 2-byte values).
    public static func shuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, width: Int) {
        if width == 2 {
            let n = src.count / 2
            let s = src.bindMemory(to: UInt8.self)
            let d = dst.bindMemory(to: UInt8.self)
            for i in 0..<n {
                d[i] = s[2 * i]
                d[n + i] = s[2 * i + 1]
            }
            return
        }
        shuffle(src, into: dst)
    }

    /// Inverse of `shuffle(_:into:width:)`.
    public static func unshuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, width: Int) {
        if width == 2 {
            let n = src.count / 2
            let s = src.bindMemory(to: UInt8.self)
            let d = dst.bindMemory(to: UInt8.self)
            for i in 0..<n {
                d[2 * i] = s[i]
                d[2 * i + 1] = s[n + i]
            }
            return
        }
        unshuffle(src, into: dst)
    }

    /// Byte shuffle: for `n = src.count / 4` floats, `dst[j*n + i] = src[4*i + j]`.
    public static func shuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) {
        let n = src.count / 4
        precondition(dst.count >= n * 4)
        let s = src.bindMemory(to: UInt8.self)
        let d = dst.bindMemory(to: UInt8.self)
        for i in 0..<n {
            let b = 4 * i
            d[i] = s[b]
            d[n + i] = s[b + 1]
            d[2 * n + i] = s[b + 2]
            d[3 * n + i] = s[b + 3]
        }
    }

    /// Inverse of `shuffle`: `dst[4*i + j] = src[j*n + i]`.
    public static func unshuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) {
        let n = src.count / 4
        precondition(dst.count >= n * 4)
        let s = src.bindMemory(to: UInt8.self)
        let d = dst.bindMemory(to: UInt8.self)
        for i in 0..<n {
            let b = 4 * i
            d[b] = s[i]
            d[b + 1] = s[n + i]
            d[b + 2] = s[2 * n + i]
            d[b + 3] = s[3 * n + i]
        }
    }
}
