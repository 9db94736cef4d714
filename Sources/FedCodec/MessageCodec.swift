/// Turns messages into frames and frames into messages (`Protocol/SPEC.md`, "Messages").
///
/// Payload layouts, all integers big-endian, strings as `u16` length + UTF-8:
/// ```
/// HELLO           u8 minVersion, u8 maxVersion, u8 compressions, str clientID (1-256 B), str authToken (0-1024 B)
/// WELCOME         u8 version, u8 compressions, str serverID (0-256 B), u64 modelVersion, u64 datasets, u32 maxPayload
/// FETCH           u64 heldVersion, u8 compression
/// MODEL           u64 version, u64 datasets, blob
/// MODEL_UNCHANGED u64 version, u64 datasets
/// PUSH            str clientID (1-256 B), u64 datasets, u64 baseVersion, blob
/// ACK             u64 version, u64 datasets
/// ERROR           u16 code, u8 retryable (0|1), u8 minVersion, u8 maxVersion, str message (0-4096 B)
/// PING, PONG      u64 nonce
/// ```
/// Every payload must be consumed exactly: bytes left over are `.trailingBytes`.
public enum MessageCodec {
    public static let maxClientIDBytes = 256
    public static let maxAuthTokenBytes = 1024
    public static let maxErrorMessageBytes = 4096

    /// Encodes `message` as one complete frame. `level` is zlib's level for compressed blobs.
    public static func encode(_ message: Message, requestID: UInt32, level: Int32 = 6) -> [UInt8] {
        var capacity = 64
        switch message {
        case .model(let m): capacity += m.tensors.reduce(0) { $0 + 4 * $1.count + 16 }
        case .push(let p): capacity += p.tensors.reduce(0) { $0 + 4 * $1.count + 16 }
        default: break
        }
        var frame = FrameWriter(type: message.type, requestID: requestID, capacity: capacity)
        writePayload(message, level: level, into: &frame.payload)
        // Payloads written here are far below 4 GiB for any tensors that fit in memory
        // as blobs (the blob's own u32 sizes bound them first).
        return (try? frame.finish()) ?? []
    }

    /// The payload bytes alone (no frame header) of `message`.
    public static func payload(_ message: Message, level: Int32 = 6) -> [UInt8] {
        var w = ByteWriter()
        writePayload(message, level: level, into: &w)
        return w.bytes
    }

    static func writePayload(_ message: Message, level: Int32, into w: inout ByteWriter) {
        switch message {
        case .hello(let h):
            w.u8(h.minVersion)
            w.u8(h.maxVersion)
            w.u8(h.compressions)
            w.string(h.clientID)
            w.string(h.authToken)
        case .welcome(let x):
            w.u8(x.version)
            w.u8(x.compressions)
            w.string(x.serverID)
            w.u64(x.modelVersion)
            w.u64(x.datasets)
            w.u32(x.maxPayloadBytes)
        case .fetch(let held, let compression):
            w.u64(held)
            w.u8(compression.rawValue)
        case .model(let m):
            w.u64(m.version)
            w.u64(m.datasets)
            TensorBlob.encode(m.tensors, compression: m.compression, level: level, into: &w)
        case .modelUnchanged(let version, let datasets), .ack(let version, let datasets):
            w.u64(version)
            w.u64(datasets)
        case .push(let p):
            w.string(p.clientID)
            w.u64(p.datasets)
            w.u64(p.baseVersion)
            TensorBlob.encode(p.tensors, compression: p.compression, level: level, into: &w)
        case .error(let e):
            w.u16(e.code.rawValue)
            w.u8(e.retryable ? 1 : 0)
            w.u8(e.minVersion)
            w.u8(e.maxVersion)
            w.string(e.message)
        case .ping(let nonce), .pong(let nonce):
            w.u64(nonce)
        }
    }

    /// Decodes the message a frame carries. Throws a `CodecError` for any
    /// malformed payload; the frame's request id is the one to answer with.
    public static func decode(_ frame: Frame, limits: Limits = .default) throws(CodecError) -> Message {
        try withBytes(frame.payload) { (raw) throws(CodecError) -> Message in
            var r = ByteReader(raw)
            let message = try decodePayload(type: frame.header.type, &r, limits: limits)
            try r.expectEnd("the \(frame.header.type) payload")
            return message
        }
    }

    static func decodePayload(type: MessageType, _ r: inout ByteReader, limits: Limits) throws(CodecError)
        -> Message
    {
        switch type {
        case .hello:
            let minV = try r.u8("min version")
            let maxV = try r.u8("max version")
            guard minV >= 1, minV <= maxV else {
                throw CodecError(.malformedPayload, "version range \(minV)...\(maxV) is empty or starts at 0")
            }
            let compressions = try r.u8("compressions")
            let id = try clientID(&r)
            let token = try r.string("auth token", maxBytes: maxAuthTokenBytes)
            return .hello(
                Hello(minVersion: minV, maxVersion: maxV, compressions: compressions, clientID: id, authToken: token))
        case .welcome:
            let version = try r.u8("version")
            let compressions = try r.u8("compressions")
            let serverID = try r.string("server id", maxBytes: maxClientIDBytes)
            let modelVersion = try r.u64("model version")
            let datasets = try r.u64("datasets")
            let maxPayload = try r.u32("max payload")
            return .welcome(
                Welcome(
                    version: version, compressions: compressions, serverID: serverID, modelVersion: modelVersion,
                    datasets: datasets, maxPayloadBytes: maxPayload))
        case .fetch:
            let held = try r.u64("held version")
            let byte = try r.u8("compression")
            guard let compression = Compression(rawValue: byte) else {
                throw CodecError(.unsupportedCompression, "compression \(byte) is not defined")
            }
            return .fetch(heldVersion: held, compression: compression)
        case .model:
            let version = try r.u64("version")
            let datasets = try r.u64("datasets")
            let mode = r.remaining > 0 ? Compression(rawValue: r.bytes[r.offset]) : nil
            let tensors = try TensorBlob.decode(&r, limits: limits)
            return .model(Model(version: version, datasets: datasets, tensors: tensors, compression: mode ?? .none))
        case .modelUnchanged:
            return .modelUnchanged(version: try r.u64("version"), datasets: try r.u64("datasets"))
        case .push:
            let id = try clientID(&r)
            let datasets = try r.u64("datasets")
            let base = try r.u64("base version")
            let mode = r.remaining > 0 ? Compression(rawValue: r.bytes[r.offset]) : nil
            let tensors = try TensorBlob.decode(&r, limits: limits)
            return .push(
                Push(clientID: id, datasets: datasets, baseVersion: base, tensors: tensors, compression: mode ?? .none))
        case .ack:
            return .ack(version: try r.u64("version"), datasets: try r.u64("datasets"))
        case .error:
            let code = ErrorCode(rawValue: try r.u16("error code"))
            let retryable = try r.u8("retryable")
            guard retryable <= 1 else { throw CodecError(.malformedPayload, "retryable is \(retryable), not 0 or 1") }
            let minV = try r.u8("min version")
            let maxV = try r.u8("max version")
            let text = try r.string("error message", maxBytes: maxErrorMessageBytes)
            return .error(
                ErrorMessage(code: code, retryable: retryable == 1, message: text, minVersion: minV, maxVersion: maxV))
        case .ping:
            return .ping(nonce: try r.u64("nonce"))
        case .pong:
            return .pong(nonce: try r.u64("nonce"))
        }
    }

    private static func clientID(_ r: inout ByteReader) throws(CodecError) -> String {
        let id = try r.string("client id", maxBytes: maxClientIDBytes)
        if id.isEmpty { throw CodecError(.invalidString, "client id is empty") }
        return id
    }
}
