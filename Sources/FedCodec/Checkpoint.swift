/// A model at rest (`Protocol/SPEC.md`, "Checkpoint file").
///
/// ```
///  0  4  magic "FEDK"
///  4  2  format version (1), u16 BE
///  6  2  reserved, zero
///  8  8  model version, u64 BE
/// 16  8  datasets, u64 BE
/// 24  4  blob length n, u32 BE
/// 28  n  tensor blob (as in MODEL)
/// 28+n 4 CRC-32 of bytes 0..<28+n, u32 BE
/// ```
/// The file is exactly `32 + n` bytes; anything else is an error.
public struct Checkpoint: Hashable, Sendable {
    public static let magic: [UInt8] = [0x46, 0x45, 0x44, 0x4B]
    public static let formatVersion: UInt16 = 1

    public var version: UInt64
    public var datasets: UInt64
    public var tensors: [Tensor]

    public init(version: UInt64, datasets: UInt64, tensors: [Tensor]) {
        self.version = version
        self.datasets = datasets
        self.tensors = tensors
    }

    /// The file's bytes.
    public func encode(compression: Compression = .shuffleZlib, level: Int32 = 1) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + tensors.reduce(0) { $0 + 4 * $1.count + 16 })
        w.append(Checkpoint.magic)
        w.u16(Checkpoint.formatVersion)
        w.u16(0)
        w.u64(version)
        w.u64(datasets)
        w.u32(0)
        TensorBlob.encode(tensors, compression: compression, level: level, into: &w)
        w.patchU32(UInt32(w.bytes.count - 28), at: 24)
        let crc = CRC32.checksum(w.bytes)
        w.u32(crc)
        return w.bytes
    }

    /// Reads a checkpoint file's bytes. Throws `.badMagic` for a file that is
    /// not a checkpoint, `.unsupportedVersion`, `.truncated`, `.checksumMismatch`,
    /// `.trailingBytes`, or any blob error.
    public static func decode(_ bytes: [UInt8], limits: Limits = .default) throws(CodecError) -> Checkpoint {
        try withBytes(bytes) { (raw) throws(CodecError) -> Checkpoint in
            var r = ByteReader(raw, shortCode: .truncated)
            let magic = try r.take(4, "checkpoint magic")
            guard magic.elementsEqual(Checkpoint.magic) else {
                throw CodecError(.badMagic, "not a swift-federated checkpoint (magic is not FEDK)")
            }
            let format = try r.u16("format version")
            guard format == formatVersion else {
                throw CodecError(.unsupportedVersion, "checkpoint format \(format); this build reads format 1")
            }
            _ = try r.u16("reserved")
            let version = try r.u64("model version")
            let datasets = try r.u64("datasets")
            let blobLength = Int(try r.u32("blob length"))
            if blobLength > r.remaining {
                throw CodecError(.truncated, "blob of \(blobLength) bytes, \(r.remaining) left in the file")
            }
            if r.remaining < blobLength + 4 {
                throw CodecError(.truncated, "file ends before its CRC")
            }
            if r.remaining > blobLength + 4 {
                throw CodecError(.trailingBytes, "\(r.remaining - blobLength - 4) bytes after the CRC")
            }
            let crcOffset = 28 + blobLength
            let expected = CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<crcOffset]))
            let stored = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: crcOffset, as: UInt32.self))
            guard expected == stored else {
                throw CodecError(.checksumMismatch, "checkpoint CRC does not match its contents")
            }
            var blob = ByteReader(try r.take(blobLength, "blob"))
            let tensors = try TensorBlob.decode(&blob, limits: limits)
            return Checkpoint(version: version, datasets: datasets, tensors: tensors)
        }
    }
}
