import CZlib

/// zlib's CRC-32 (the ISO-HDLC polynomial, as in gzip and PNG).
public enum CRC32 {
    /// The CRC of `bytes`, continuing from `crc` (0 to start).
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return UInt32(
            truncatingIfNeeded: crc32_z(UInt(crc), base.assumingMemoryBound(to: UInt8.self), bytes.count))
    }

    /// The CRC of a byte array, continuing from `crc`.
    public static func checksum<C: ContiguousBytes>(_ bytes: C, continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }
}

/// Bytes that can be viewed as one contiguous raw buffer.
public protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
