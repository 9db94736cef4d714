import CZlib
import Foundation

/// Reader of IDX files (the MNIST format), raw or gzip-compressed.
///
/// ```
/// 0  2  zero
/// 2  1  type: 0x08 = unsigned byte (the only one read here)
/// 3  1  number of dimensions d
/// 4  4d dimensions, u32 big-endian
/// .. data, row-major, product of dimensions bytes
/// ```
/// A file whose first two bytes are the gzip magic (1f 8b) is inflated first.
public enum IDX {
    /// The largest file accepted after decompression: 256 MiB.
    public static let maxBytes = 256 << 20

    /// A decoded IDX file: its dimensions and its bytes.
    public struct File: Sendable {
        public var dims: [Int]
        public var data: [UInt8]
    }

    /// Reads and checks the file at `path`; `expectedRank` is 3 for images, 1 for labels.
    public static func read(path: String, expectedRank: Int) throws(IDXError) -> File {
        let raw: [UInt8]
        do {
            raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw IDXError(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        return try parse(raw, path: path, expectedRank: expectedRank)
    }

    /// Parses the bytes of an IDX file (gzip or not).
    public static func parse(_ input: [UInt8], path: String, expectedRank: Int) throws(IDXError) -> File {
        let bytes = input.count >= 2 && input[0] == 0x1F && input[1] == 0x8B ? try gunzip(input, path: path) : input
        guard bytes.count >= 4 else { throw IDXError(path: path, reason: "truncated: \(bytes.count) bytes, no header") }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw IDXError(
                path: path, reason: "not an IDX file (magic \(hex(bytes[0..<4])), expected 00 00 08 0\(expectedRank))")
        }
        guard bytes[2] == 0x08 else {
            throw IDXError(
                path: path, reason: "element type 0x\(String(bytes[2], radix: 16)) is not unsigned byte (0x08)")
        }
        let rank = Int(bytes[3])
        guard rank == expectedRank else {
            throw IDXError(path: path, reason: "has \(rank) dimensions, expected \(expectedRank)")
        }
        guard bytes.count >= 4 + 4 * rank else { throw IDXError(path: path, reason: "truncated inside its dimensions") }
        var dims: [Int] = []
        var total = 1
        for i in 0..<rank {
            let o = 4 + 4 * i
            let d = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
            dims.append(d)
            total = min(total * d, maxBytes + 1)
        }
        let header = 4 + 4 * rank
        guard total <= maxBytes else {
            throw IDXError(path: path, reason: "dimensions \(dims) exceed \(maxBytes) bytes")
        }
        guard bytes.count - header >= total else {
            throw IDXError(
                path: path, reason: "truncated: dimensions \(dims) need \(total) bytes, \(bytes.count - header) present"
            )
        }
        guard bytes.count - header == total else {
            throw IDXError(path: path, reason: "\(bytes.count - header - total) bytes after the data")
        }
        return File(dims: dims, data: Array(bytes[header...]))
    }

    /// Loads an images file and a labels file as a data set, checking they
    /// agree (same count, 10 classes). Pixels are scaled to [0, 1] when
    /// `scale` is true, else kept as 0...255 (what the original demo fed).
    public static func dataset(images: String, labels: String, scale: Bool = true) throws(IDXError) -> Dataset {
        let img = try read(path: images, expectedRank: 3)
        let lab = try read(path: labels, expectedRank: 1)
        guard img.dims[0] == lab.dims[0] else {
            throw IDXError(path: labels, reason: "\(lab.dims[0]) labels for \(img.dims[0]) images in \(images)")
        }
        if let bad = lab.data.first(where: { $0 > 9 }) {
            throw IDXError(path: labels, reason: "label \(bad) is not a class 0-9")
        }
        let features = img.dims[1] * img.dims[2]
        let k: Float = scale ? 1 / 255 : 1
        let pixels = img.data.map { Float($0) * k }
        return Dataset(images: pixels, labels: lab.data, features: features)
    }

    static func hex(_ b: ArraySlice<UInt8>) -> String {
        b.map { String(format: "%02x", $0) }.joined(separator: " ")
    }

    /// Inflates a gzip file, refusing output past `maxBytes`.
    public static func gunzip(_ input: [UInt8], path: String) throws(IDXError) -> [UInt8] {
        var stream = z_stream()
        guard fed_inflateInit2(&stream, 15 + 16) == Z_OK else {
            throw IDXError(path: path, reason: "inflateInit failed")
        }
        defer { inflateEnd(&stream) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var result: Int32 = Z_OK
        input.withUnsafeBufferPointer { inBuf in
            stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress!)
            stream.avail_in = UInt32(inBuf.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { c in
                    stream.next_out = c.baseAddress!
                    stream.avail_out = UInt32(c.count)
                    result = inflate(&stream, Z_NO_FLUSH)
                    out.append(contentsOf: c[0..<(c.count - Int(stream.avail_out))])
                }
            } while result == Z_OK && out.count <= maxBytes && !(stream.avail_in == 0 && stream.avail_out != 0)
        }
        if out.count > maxBytes { throw IDXError(path: path, reason: "inflates past \(maxBytes) bytes") }
        guard result == Z_STREAM_END else {
            throw IDXError(path: path, reason: "corrupt or truncated gzip data (zlib code \(result))")
        }
        return out
    }
}

/// Why an IDX file could not be read, naming the file.
public struct IDXError: Error, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}
