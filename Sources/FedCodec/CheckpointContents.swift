/// One state section of a checkpoint (`Protocol/SPEC.md`, section 8): a tag
/// and its bytes. A tag with bit 15 set is optional (a reader that does not
/// know it skips it); any other tag is required (a reader that does not know
/// it refuses the file).
public struct CheckpointSection: Hashable, Sendable {
    public var tag: UInt16
    public var bytes: [UInt8]

    public init(tag: UInt16, bytes: [UInt8]) {
        self.tag = tag
        self.bytes = bytes
    }

    /// Whether a reader that does not know `tag` may skip the section.
    public var isOptional: Bool { tag & 0x8000 != 0 }
}

/// A checkpoint at the level of its framing: the model (version, datasets,
/// tensors) and its state sections as tagged bytes, in file order.
///
/// This is what a `CheckpointStore` keeps: it needs no knowledge of what a
/// section means, so a new piece of server state is one more section and no
/// store changes. `Checkpoint` gives the sections this build knows their
/// meaning. `encode` and `decode` are the checkpoint file's bytes
/// (`Protocol/SPEC.md`, section 8): format 1 when there is no section, else
/// format 2.
public struct CheckpointContents: Hashable, Sendable {
    public var version: UInt64
    public var datasets: UInt64
    public var tensors: [Tensor]
    /// State sections in the order they are written and were read.
    public var sections: [CheckpointSection]

    public init(version: UInt64, datasets: UInt64, tensors: [Tensor], sections: [CheckpointSection] = []) {
        self.version = version
        self.datasets = datasets
        self.tensors = tensors
        self.sections = sections
    }

    /// The first section tagged `tag`, if any.
    public func section(_ tag: UInt16) -> CheckpointSection? { sections.first { $0.tag == tag } }

    /// The checkpoint file's bytes (the blob in `compression` at `level`).
    public func encode(compression: Compression = .shuffleZlib, level: Int32 = 1) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + tensors.reduce(0) { $0 + 4 * $1.count + 16 })
        w.append(Checkpoint.magic)
        w.u16(sections.isEmpty ? 1 : 2)
        w.u16(0)
        w.u64(version)
        w.u64(datasets)
        w.u32(0)
        TensorBlob.encode(tensors, compression: compression, level: level, into: &w)
        w.patchU32(UInt32(w.bytes.count - 28), at: 24)
        if !sections.isEmpty {
            w.u16(UInt16(sections.count))
            for section in sections {
                w.u16(section.tag)
                w.u32(UInt32(section.bytes.count))
                w.append(section.bytes)
            }
        }
        let crc = CRC32.checksum(w.bytes)
        w.u32(crc)
        return w.bytes
    }

    /// Reads a checkpoint file's bytes, up to its sections' framing (what
    /// each section means is `Checkpoint`'s). Throws `.badMagic` for a file
    /// that is not a checkpoint, `.unsupportedVersion`, `.truncated`,
    /// `.checksumMismatch`, `.trailingBytes`, or any blob error, in the order
    /// section 8 gives.
    public static func decode(_ bytes: [UInt8], limits: Limits = .default) throws(CodecError) -> CheckpointContents {
        try withBytes(bytes) { (raw) throws(CodecError) -> CheckpointContents in
            var r = ByteReader(raw, shortCode: .truncated)
            let magic = try r.take(4, "checkpoint magic")
            guard magic.elementsEqual(Checkpoint.magic) else {
                throw CodecError(.badMagic, "not a swift-federated checkpoint (magic is not FEDK)")
            }
            let format = try r.u16("format version")
            guard Checkpoint.formats.contains(format) else {
                throw CodecError(.unsupportedVersion, "checkpoint format \(format); this build reads formats 1 and 2")
            }
            let reserved = try r.u16("reserved")
            guard reserved == 0 else {
                // A future format may give these bits a meaning this build cannot honour.
                throw CodecError(.unsupportedVersion, "checkpoint reserved field is \(reserved), not 0")
            }
            let version = try r.u64("model version")
            let datasets = try r.u64("datasets")
            let blobLength = Int(try r.u32("blob length"))
            if blobLength > r.remaining {
                throw CodecError(.truncated, "blob of \(blobLength) bytes, \(r.remaining) left in the file")
            }
            if r.remaining < blobLength + 4 {
                throw CodecError(.truncated, "file ends before its CRC")
            }
            if format == 1 && r.remaining > blobLength + 4 {
                throw CodecError(.trailingBytes, "\(r.remaining - blobLength - 4) bytes after the CRC")
            }
            // Format 2: the CRC is the file's last four bytes; sections are checked after it.
            let crcOffset = format == 1 ? 28 + blobLength : raw.count - 4
            let expected = CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<crcOffset]))
            let stored = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: crcOffset, as: UInt32.self))
            guard expected == stored else {
                throw CodecError(.checksumMismatch, "checkpoint CRC does not match its contents")
            }
            var blob = ByteReader(try r.take(blobLength, "blob"))
            let tensors = try TensorBlob.decode(&blob, limits: limits)
            var sections: [CheckpointSection] = []
            if format == 2 {
                var framing = ByteReader(try r.take(r.remaining - 4, "sections"), shortCode: .truncated)
                let count = Int(try framing.u16("section count"))
                for _ in 0..<count {
                    let tag = try framing.u16("section tag")
                    let length = Int(try framing.u32("section length"))
                    sections.append(
                        CheckpointSection(tag: tag, bytes: Array(try framing.take(length, "section \(tag)"))))
                }
                try framing.expectEnd("the checkpoint's sections")
            }
            return CheckpointContents(version: version, datasets: datasets, tensors: tensors, sections: sections)
        }
    }
}
