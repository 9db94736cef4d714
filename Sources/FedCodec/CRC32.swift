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
    public static func checksum<C: CRC32Input>(_ bytes: C, continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The CRC of `A` followed by `B`, from the CRC of each and `B`'s length
    /// (zlib's `crc32_combine`): a frame's CRC from its header's and a cached
    /// payload's, without a pass over the payload.
    public static func combine(_ first: UInt32, _ second: UInt32, secondLength: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: crc32_combine(UInt(first), UInt(second), off_t(secondLength)))
    }
}

/// Bytes the CRC can read as one contiguous raw buffer (named so as not to
/// clash with Foundation's `ContiguousBytes`).
public protocol CRC32Input {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: CRC32Input where Element == UInt8 {}
extension ArraySlice: CRC32Input where Element == UInt8 {}
