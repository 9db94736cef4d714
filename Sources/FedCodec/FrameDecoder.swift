/// Splits a byte stream into frames, incrementally.
///
/// Feed bytes in chunks of any size with `append(_:)` (one byte at a time
/// works) and call `next()` until it returns nil ("need more data"; nothing
/// is consumed). At end of stream call `finish()`, which throws `.truncated`
/// if a partial frame is left.
///
/// ```
///  waitingForHeader --(20 bytes, header valid)--> waitingForPayload(header)
///         ^                                              |
///         +------(length bytes, CRC valid: yield Frame)--+
/// ```
/// Checks happen as early as the bytes allow and always before allocation:
/// the magic is compared against every prefix that has arrived (so garbage is
/// rejected on its first byte), the header's version, type, flags and length
/// (against `Limits.maxPayloadBytes`) as soon as 20 bytes are in, and the CRC
/// once the payload is complete. Any error is fatal to the stream: after a
/// throw the decoder stays failed and rethrows the same error.
public struct FrameDecoder: Sendable {
    private enum State: Sendable {
        case waitingForHeader
        case waitingForPayload(FrameHeader)
        case failed(CodecError)
    }

    public let limits: Limits
    private var buffer: [UInt8] = []
    /// The largest buffer kept between frames (64 KiB).
    public static let retainedCapacity = 64 << 10
    /// Bytes of storage the decoder holds (tests of what an idle connection keeps).
    var storageCapacity: Int { buffer.capacity }
    private var readerIndex = 0
    private var state: State = .waitingForHeader

    public init(limits: Limits = .default) {
        self.limits = limits
    }

    /// Bytes received but not yet returned as part of a frame.
    public var bufferedByteCount: Int { buffer.count - readerIndex }

    /// Bytes the decoder holds or will hold for what has started to arrive:
    /// the buffered bytes and, once a header has been accepted, its whole
    /// frame. A receiver counts this against its memory, then calls
    /// `reserveForPendingFrame()`.
    public var committedByteCount: Int {
        if case .waitingForPayload(let header) = state {
            return max(bufferedByteCount, FrameHeader.size + Int(header.payloadLength))
        }
        return bufferedByteCount
    }

    /// Grows the buffer to hold exactly the frame whose header was accepted
    /// (so appending its payload does not double the buffer).
    public mutating func reserveForPendingFrame() {
        if case .waitingForPayload(let header) = state {
            buffer.reserveCapacity(readerIndex + FrameHeader.size + Int(header.payloadLength))
        }
    }

    /// Adds received bytes.
    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if readerIndex > 0 && readerIndex >= buffer.count / 2 {
            buffer.removeSubrange(0..<readerIndex)
            readerIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, or nil if more bytes are needed.
    public mutating func next() throws(CodecError) -> Frame? {
        switch state {
        case .failed(let error):
            throw error
        case .waitingForHeader:
            do {
                guard let header = try parseHeader() else { return nil }
                state = .waitingForPayload(header)
                return try next()
            } catch {
                state = .failed(error)
                throw error
            }
        case .waitingForPayload(let header):
            let length = Int(header.payloadLength)
            guard bufferedByteCount >= FrameHeader.size + length else { return nil }
            let start = readerIndex
            let crc = buffer.withUnsafeBytes { all in
                let head = CRC32.checksum(UnsafeRawBufferPointer(rebasing: all[start..<start + 16]))
                return CRC32.checksum(
                    UnsafeRawBufferPointer(rebasing: all[start + FrameHeader.size..<start + FrameHeader.size + length]),
                    continuing: head)
            }
            guard crc == header.crc else {
                let error = CodecError(
                    .checksumMismatch,
                    "frame CRC is 0x\(String(header.crc, radix: 16)), its bytes give 0x\(String(crc, radix: 16))")
                state = .failed(error)
                throw error
            }
            let end = start + FrameHeader.size + length
            if start == 0 && end == buffer.count && buffer.capacity > Self.retainedCapacity {
                // A large frame alone in the buffer: hand the buffer over as the payload
                // (one memmove) instead of copying it into a second large allocation.
                var payload: [UInt8] = []
                swap(&payload, &buffer)
                payload.removeSubrange(0..<FrameHeader.size)
                readerIndex = 0
                state = .waitingForHeader
                return Frame(header: header, payload: payload)
            }
            let payload = Array(buffer[start + FrameHeader.size..<end])
            readerIndex += FrameHeader.size + length
            state = .waitingForHeader
            if readerIndex == buffer.count {
                // Keep small buffers for the next frame; give a large one (a push of
                // weights) back, so an idle connection holds kilobytes, not a model.
                buffer.removeAll(keepingCapacity: buffer.capacity <= Self.retainedCapacity)
                readerIndex = 0
            }
            return Frame(header: header, payload: payload)
        }
    }

    /// Declares the end of the stream. Throws `.truncated` if part of a frame
    /// was received, or the error the stream already failed with.
    public func finish() throws(CodecError) {
        if case .failed(let error) = state { throw error }
        let left = bufferedByteCount
        if left == 0 { return }
        switch state {
        case .waitingForPayload(let header):
            throw CodecError(
                .truncated,
                "stream ended \(FrameHeader.size + Int(header.payloadLength) - left) bytes short of a \(header.payloadLength)-byte frame"
            )
        default:
            throw CodecError(.truncated, "stream ended inside a frame header (\(left) of 20 bytes)")
        }
    }

    private func parseHeader() throws(CodecError) -> FrameHeader? {
        let available = bufferedByteCount
        let start = readerIndex
        let prefix = min(available, 4)
        for i in 0..<prefix where buffer[start + i] != FrameHeader.magic[i] {
            throw CodecError(.badMagic, "frame does not start with FEDW")
        }
        guard available >= FrameHeader.size else { return nil }
        return try withBytes(buffer) { (all) throws(CodecError) -> FrameHeader in
            try FrameHeader.parse(
                UnsafeRawBufferPointer(rebasing: all[start..<start + FrameHeader.size]), limits: limits)
        }
    }
}
