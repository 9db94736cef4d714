/// Reads protocol fields from untrusted bytes, never past their end.
///
/// Every read checks the remaining length first and throws
/// `CodecError(.malformedPayload)` naming the field that did not fit; nothing
/// traps, whatever the input.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset: Int = 0
    /// Error code thrown when a field runs past the end.
    let shortCode: ErrorCode

    public init(_ bytes: UnsafeRawBufferPointer, shortCode: ErrorCode = .malformedPayload) {
        self.bytes = bytes
        self.shortCode = shortCode
    }

    public var remaining: Int { bytes.count - offset }

    @inline(__always)
    mutating func need(_ n: Int, _ field: String) throws(CodecError) {
        if n > remaining {
            throw CodecError(shortCode, "\(field) needs \(n) bytes at offset \(offset), \(remaining) left")
        }
    }

    public mutating func u8(_ field: String) throws(CodecError) -> UInt8 {
        try need(1, field)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16(_ field: String) throws(CodecError) -> UInt16 {
        try need(2, field)
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    public mutating func u32(_ field: String) throws(CodecError) -> UInt32 {
        try need(4, field)
        defer { offset += 4 }
        return UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    public mutating func u64(_ field: String) throws(CodecError) -> UInt64 {
        try need(8, field)
        defer { offset += 8 }
        return UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// A `u16`-length UTF-8 string of at most `maxBytes` bytes.
    /// Throws `.invalidString` if it is too long or not valid UTF-8.
    public mutating func string(_ field: String, maxBytes: Int) throws(CodecError) -> String {
        let n = Int(try u16("\(field) length"))
        if n > maxBytes {
            throw CodecError(.invalidString, "\(field) is \(n) bytes, at most \(maxBytes) allowed")
        }
        let raw = try take(n, field)
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw CodecError(.invalidString, "\(field) is not valid UTF-8")
        }
        return s
    }

    /// The next `n` bytes, as a view into the same memory.
    public mutating func take(_ n: Int, _ field: String) throws(CodecError) -> UnsafeRawBufferPointer {
        try need(n, field)
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
    }

    /// Throws `.trailingBytes` unless every byte has been read.
    public func expectEnd(_ what: String) throws(CodecError) {
        if remaining != 0 {
            throw CodecError(.trailingBytes, "\(remaining) bytes after the end of \(what)")
        }
    }
}

/// `withUnsafeBytes` for typed-throwing bodies (the standard library's rethrows untyped).
@inline(__always)
func withBytes<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(CodecError) -> R) throws(CodecError) -> R {
    let result: Result<R, CodecError> = bytes.withUnsafeBytes { raw in
        Result { () throws(CodecError) -> R in try body(raw) }
    }
    return try result.get()
}

/// A byte array of exactly `count` bytes filled by a typed-throwing body.
@inline(__always)
func makeBytes(count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(CodecError) -> Void) throws(CodecError)
    -> [UInt8]
{
    var failure: CodecError?
    let out = [UInt8](unsafeUninitializedCapacity: count) { buf, n in
        do throws(CodecError) {
            try body(UnsafeMutableRawBufferPointer(buf))
            n = count
        } catch {
            failure = error
            n = 0
        }
    }
    if let failure { throw failure }
    return out
}
