/// The fixed 20-byte header that starts every frame.
///
/// ```
///  0      4      5      6        8            12               16        20
///  +------+------+------+--------+------------+----------------+---------+---------------+
///  | FEDW | ver  | type | flags  | request id | payload length | crc32   | payload ...   |
///  | 4 B  | u8   | u8   | u16 BE | u32 BE     | u32 BE         | u32 BE  | length bytes  |
///  +------+------+------+--------+------------+----------------+---------+---------------+
/// ```
/// The CRC-32 (zlib's) covers header bytes 0..<16 followed by the payload.
public struct FrameHeader: Hashable, Sendable {
    /// `"FEDW"`.
    public static let magic: [UInt8] = [0x46, 0x45, 0x44, 0x57]
    public static let size = 20
    /// The protocol versions this implementation speaks (SPEC.md section 3.1).
    public static let supportedVersions: ClosedRange<UInt8> = 1...4
    /// Flag bits defined by versions 1-3: none. Every bit must be zero.
    public static let knownFlags: UInt16 = 0

    public var version: UInt8
    public var type: MessageType
    public var flags: UInt16
    public var requestID: UInt32
    public var payloadLength: UInt32
    public var crc: UInt32

    public init(
        version: UInt8 = 1, type: MessageType, flags: UInt16 = 0, requestID: UInt32, payloadLength: UInt32,
        crc: UInt32 = 0
    ) {
        self.version = version
        self.type = type
        self.flags = flags
        self.requestID = requestID
        self.payloadLength = payloadLength
        self.crc = crc
    }

    /// Parses and checks a header, in the spec's order: magic, version, type,
    /// flags, payload length against `limits`. The CRC is checked by the caller
    /// once the payload has arrived.
    /// - Precondition: `bytes.count >= FrameHeader.size`.
    public static func parse(_ bytes: UnsafeRawBufferPointer, limits: Limits) throws(CodecError) -> FrameHeader {
        for i in 0..<4 where bytes[i] != magic[i] {
            throw CodecError(.badMagic, "frame does not start with FEDW")
        }
        let version = bytes[4]
        guard supportedVersions.contains(version) else {
            throw CodecError(
                .unsupportedVersion,
                "protocol version \(version) is not supported; this peer speaks \(supportedVersions.lowerBound)...\(supportedVersions.upperBound)"
            )
        }
        guard let defined = MessageRegistry.descriptor(bytes[5]), defined.isDefined(inVersion: version) else {
            throw CodecError(
                .unknownMessageType,
                "message type 0x\(String(bytes[5], radix: 16)) is not defined in version \(version)")
        }
        let flags = UInt16(bytes[6]) << 8 | UInt16(bytes[7])
        if flags & ~knownFlags != 0 {
            throw CodecError(
                .unsupportedFlags, "flags 0x\(String(flags, radix: 16)) are not defined in version \(version)")
        }
        let requestID = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let length = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        if UInt64(length) > UInt64(limits.maxPayloadBytes) {
            throw CodecError(
                .frameTooLarge, "payload of \(length) bytes exceeds the limit of \(limits.maxPayloadBytes)")
        }
        let crc = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        return FrameHeader(
            version: version, type: defined.type, flags: flags, requestID: requestID, payloadLength: length, crc: crc)
    }

}

/// One frame: its header and its payload, CRC already verified.
public struct Frame: Hashable, Sendable {
    public var header: FrameHeader
    public var payload: [UInt8]

    public init(header: FrameHeader, payload: [UInt8]) {
        self.header = header
        self.payload = payload
    }

    /// Encodes a frame with the given fields around `payload`, computing the
    /// length and CRC. Throws `.frameTooLarge` if the payload exceeds 4 GiB - 1.
    public static func encode(
        type: MessageType, requestID: UInt32, payload: [UInt8], version: UInt8 = 1, flags: UInt16 = 0
    ) throws(CodecError) -> [UInt8] {
        var w = FrameWriter(type: type, requestID: requestID, capacity: payload.count, version: version, flags: flags)
        w.payload.append(payload)
        return try w.finish()
    }
}

/// Builds one frame in a single buffer: the header is reserved first, the
/// payload is written after it through `payload`, and `finish()` fills in the
/// length and CRC. No copy of the payload is made.
public struct FrameWriter: Sendable {
    public var payload: ByteWriter

    public init(type: MessageType, requestID: UInt32, capacity: Int = 64, version: UInt8 = 1, flags: UInt16 = 0) {
        payload = ByteWriter(capacity: FrameHeader.size + capacity)
        payload.append(FrameHeader.magic)
        payload.u8(version)
        payload.u8(type.rawValue)
        payload.u16(flags)
        payload.u32(requestID)
        payload.u32(0)  // length, patched by finish()
        payload.u32(0)  // crc, patched by finish()
    }

    /// The 20 header bytes of a frame whose payload (`payloadLength` bytes
    /// with CRC `payloadCRC`) is kept elsewhere, such as a cached encoding
    /// shared by many answers: the frame CRC is combined, not recomputed.
    public static func header(
        type: MessageType, requestID: UInt32, payloadLength: Int, payloadCRC: UInt32, version: UInt8 = 1,
        flags: UInt16 = 0
    ) -> [UInt8] {
        var w = FrameWriter(type: type, requestID: requestID, capacity: 0, version: version, flags: flags)
        w.payload.patchU32(UInt32(truncatingIfNeeded: payloadLength), at: 12)
        let head = w.payload.bytes.withUnsafeBytes { CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<16])) }
        w.payload.patchU32(CRC32.combine(head, payloadCRC, secondLength: payloadLength), at: 16)
        return w.payload.bytes
    }

    /// The finished frame. Throws `.frameTooLarge` if the payload exceeds 4 GiB - 1.
    public consuming func finish() throws(CodecError) -> [UInt8] {
        let length = payload.bytes.count - FrameHeader.size
        guard length <= Int(UInt32.max) else {
            throw CodecError(.frameTooLarge, "payload of \(length) bytes does not fit a frame")
        }
        payload.patchU32(UInt32(length), at: 12)
        let crc = payload.bytes.withUnsafeBytes { all in
            let head = CRC32.checksum(UnsafeRawBufferPointer(rebasing: all[0..<16]))
            return CRC32.checksum(UnsafeRawBufferPointer(rebasing: all[FrameHeader.size...]), continuing: head)
        }
        payload.patchU32(crc, at: 16)
        return payload.bytes
    }
}
