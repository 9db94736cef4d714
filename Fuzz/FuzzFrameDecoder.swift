// libFuzzer entry point for FedCodec's decoders. Built by Fuzz/run.sh, not by
// SwiftPM: it compiles FedCodec's sources with -sanitize=fuzzer,address.
//
// With the input's first byte 2 mod 4, the rest is parsed as the original
// demo's JSON weights and as a fetch answer. With the first byte odd, the rest after a type byte is decoded as a
// payload directly (mutations are not stopped by the frame CRC). With it even,
// the first byte chooses how the rest is fed to a FrameDecoder (in chunks of
// 1 to 128 bytes), so the fuzzer explores split points too. Every
// frame that comes out is decoded as a message and, when it decodes,
// re-encoded and decoded again, which must give the same message. The rest of
// the input is also read as a checkpoint file. Any trap is a finding.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let limits = Limits(maxPayloadBytes: 1 << 20, maxDecompressedBytes: 4 << 20)
    if data[0] & 3 == 2 {
        // The original's JSON weights and fetch answers (the HTTP layer's input).
        let text = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
        _ = try? WeightsJSONParser.parse(text)
        _ = try? LegacyJSON.parseModelAnswer(text)
        return 0
    }
    if data[0] & 1 == 1 {
        guard size > 1 else { return 0 }
        let type = MessageType.allCases[Int(data[1]) % MessageType.allCases.count]
        let payload = Array(UnsafeBufferPointer(start: data + 2, count: size - 2))
        // Bits 1-2 of the first byte pick the frame version 1-4 (PUSH's layout differs in 2 and 3; 3 adds
        // value encodings and MODEL_DELTA; 4 the rounds' and secure aggregation's messages).
        let version = UInt8(Int(data[0] >> 1) & 3) + 1
        let frame = Frame(
            header: FrameHeader(version: version, type: type, requestID: 1, payloadLength: UInt32(payload.count)),
            payload: payload)
        _ = MessageCodec.declaredPushShapes(frame, limits: limits)
        if let message = try? MessageCodec.decode(frame, limits: limits) {
            checkReencoding(message, requestID: 1, version: version)
        }
        return 0
    }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let chunk = Int(data[0] >> 1) + 1
    var decoder = FrameDecoder(limits: limits)
    var offset = 0
    do throws(CodecError) {
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            decoder.append(bytes[offset..<end])
            offset = end
            while let frame = try decoder.next() {
                _ = MessageCodec.declaredPushShapes(frame, limits: limits)
                guard let message = try? MessageCodec.decode(frame, limits: limits) else { continue }
                checkReencoding(message, requestID: frame.header.requestID, version: frame.header.version)
            }
        }
        try decoder.finish()
    } catch {
        _ = error.code
    }
    _ = try? Checkpoint.decode(bytes, limits: limits)
    return 0
}

/// Encodes a decoded message and decodes it again: it must come back the same.
/// Lossy encodings are re-encoded as float32 (their decoded values are
/// Float32s; quantizing them again need not reproduce the same codes).
func checkReencoding(_ message: Message, requestID: UInt32, version: UInt8) {
    var message = message
    switch message {
    case .push(var p):
        p.encoding = .float32
        message = .push(p)
    case .modelDelta(var d):
        d.encoding = .float32
        message = .modelDelta(d)
    case .other(let o):
        if var r = o.as(Report.self) {
            r.encoding = .float32
            message = .other(AnyProtocolMessage(r))
        }
    default: break
    }
    let again = MessageCodec.encode(message, requestID: requestID, level: 1, version: version)
    var second = FrameDecoder(limits: Limits(maxPayloadBytes: 64 << 20, maxDecompressedBytes: 64 << 20))
    second.append(again)
    guard let reframed = try? second.next(),
        let decodedAgain = try? MessageCodec.decode(reframed, limits: .init(maxDecompressedBytes: 64 << 20))
    else { fatalError("a decoded message did not re-decode") }
    if !sameBits(decodedAgain, message) { fatalError("re-encoding changed the message") }
}

/// Message equality by value bits (NaN != NaN under ==).
func sameBits(_ a: Message, _ b: Message) -> Bool {
    func bits(_ m: Message) -> [UInt32] {
        switch m {
        case .model(let x): return x.tensors.flatMap { $0.values.map(\.bitPattern) }
        case .push(let x): return x.tensors.flatMap { $0.values.map(\.bitPattern) }
        case .modelDelta(let x): return x.steps.flatMap { $0.flatMap { $0.values.map(\.bitPattern) } }
        case .other(let o):
            if let e = o.as(EvaluationReport.self) {
                // Binary64 values (a NaN loss decodes; the server refuses it): their bits, both halves.
                let values = [e.loss] + e.metrics.sorted { $0.key < $1.key }.map(\.value)
                return values.flatMap {
                    [UInt32(truncatingIfNeeded: $0.bitPattern >> 32), UInt32(truncatingIfNeeded: $0.bitPattern)]
                }
            }
            return o.as(Report.self)?.tensors.flatMap { $0.values.map(\.bitPattern) } ?? []
        default: return []
        }
    }
    func stripped(_ m: Message) -> Message {
        switch m {
        case .model(var x):
            x.tensors = x.tensors.map { Tensor(zeros: $0.shape) }
            return .model(x)
        case .push(var x):
            x.tensors = x.tensors.map { Tensor(zeros: $0.shape) }
            x.encoding = .float32
            return .push(x)
        case .modelDelta(var x):
            x.steps = x.steps.map { $0.map { Tensor(zeros: $0.shape) } }
            x.encoding = .float32
            return .modelDelta(x)
        case .other(let o):
            if var e = o.as(EvaluationReport.self) {
                e.loss = 0
                e.metrics = e.metrics.mapValues { _ in 0 }
                return .other(AnyProtocolMessage(e))
            }
            guard var x = o.as(Report.self) else { return m }
            x.tensors = x.tensors.map { Tensor(zeros: $0.shape) }
            x.encoding = .float32
            return .other(AnyProtocolMessage(x))
        default: return m
        }
    }
    return bits(a) == bits(b) && stripped(a) == stripped(b)
}
