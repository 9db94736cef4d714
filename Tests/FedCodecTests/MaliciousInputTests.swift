import FedTestSupport
import Testing

@testable import FedCodec

/// Hostile lengths and counts, each its own case: every one must be refused
/// with its error before anything of the declared size is allocated.
@Suite("Malicious input")
struct MaliciousInputTests {
    func header(type: UInt8 = 9, length: UInt32, version: UInt8 = 1) -> [UInt8] {
        var w = ByteWriter()
        w.append(FrameHeader.magic)
        w.u8(version)
        w.u8(type)
        w.u16(0)
        w.u32(1)
        w.u32(length)
        w.u32(0)
        return w.bytes
    }

    func decodeError(_ bytes: [UInt8], limits: Limits = .default) -> CodecError? {
        var d = FrameDecoder(limits: limits)
        d.append(bytes)
        do throws(CodecError) {
            while let frame = try d.next() { _ = try MessageCodec.decode(frame, limits: limits) }
            try d.finish()
            return nil
        } catch { return error }
    }

    @Test("Maximum u32 payload length is refused from the header alone")
    func maxLength() {
        #expect(decodeError(header(length: .max))?.code == .frameTooLarge)
    }

    @Test("A length one past a custom limit is refused, the limit itself is not")
    func lengthAtLimit() {
        let limits = Limits(maxPayloadBytes: 8)
        #expect(decodeError(header(length: 9), limits: limits)?.code == .frameTooLarge)
        // At the limit the header is accepted and the decoder waits for the payload.
        #expect(decodeError(header(length: 8), limits: limits)?.code == .truncated)
    }

    @Test("The decoder fails fast on the first wrong magic byte")
    func firstByte() {
        var d = FrameDecoder()
        d.append([0x47])
        #expect(throws: CodecError.self) { try d.next() }
        // And stays failed.
        d.append(MessageCodec.encode(.ping(nonce: 1), requestID: 1))
        #expect(throws: CodecError.self) { try d.next() }
    }

    func pushPayload(blob: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.string("mallory")
        w.u64(1)
        w.u64(0)
        w.append(blob)
        return (try? Frame.encode(type: .push, requestID: 1, payload: w.bytes)) ?? []
    }

    @Test("Dimensions whose product overflows 64 bits are refused")
    func overflowingDims() {
        var w = ByteWriter()
        w.u8(0)
        w.u16(1)
        w.u8(1)
        w.u8(8)
        for _ in 0..<8 { w.u32(.max) }
        w.u32(0)
        w.u32(0)
        #expect(decodeError(pushPayload(blob: w.bytes))?.code == .decompressedTooLarge)
    }

    @Test("Many tensors each just under the limit add up past it")
    func sumOfTensors() {
        var w = ByteWriter()
        w.u8(1)
        w.u16(64)
        for _ in 0..<64 {
            w.u8(1)
            w.u8(1)
            w.u32(16 << 20)  // 64 MiB each: each alone is at the limit
        }
        w.u32(0)
        w.u32(0)
        #expect(decodeError(pushPayload(blob: w.bytes))?.code == .decompressedTooLarge)
    }

    @Test("A string length past the payload's end")
    func stringPastEnd() {
        var w = ByteWriter()
        w.u8(1)
        w.u8(1)
        w.u8(1)
        w.u16(200)  // client id claims 200 bytes
        w.append([0x61, 0x62])
        let frame = try! Frame.encode(type: .hello, requestID: 1, payload: w.bytes)
        #expect(decodeError(frame)?.code == .malformedPayload)
    }

    @Test("A checkpoint whose blob length is past the file's end")
    func checkpointBlobLength() {
        var bytes = Checkpoint(version: 1, datasets: 1, tensors: []).encode()
        bytes[24] = 0x7F
        #expect(performing: { try Checkpoint.decode(bytes) }, throws: { ($0 as? CodecError)?.code == .truncated })
    }

    @Test("Every truncation of a valid checkpoint is refused")
    func checkpointTruncations() throws {
        let t = try Tensor(shape: [3], values: [1, 2, 3])
        let bytes = Checkpoint(version: 2, datasets: 10, tensors: [t]).encode()
        for n in 0..<bytes.count {
            #expect(throws: CodecError.self, "cut at \(n)") { try Checkpoint.decode(Array(bytes[0..<n])) }
        }
    }
}

/// Damaged payloads of every message type: each decode either succeeds or
/// throws a `CodecError` with one of the spec's payload codes (8-16), and
/// never traps.
@Suite("Damaged payloads of every message type")
struct DamagedPayloadTests {
    /// Small limits, so that a random blob header cannot make a case slow.
    static let limits = Limits(maxPayloadBytes: 1 << 16, maxDecompressedBytes: 1 << 16)

    /// One valid message of each type, in the frame version it is defined in (4 for the rounds').
    static let samples: [(Message, UInt8)] = {
        let tensors = [try! Tensor(shape: [2, 3], values: [0.5, -1.25, 3, 0, -0, 1e-3]), Tensor(zeros: [3])]
        let properties = ["os": "linux", "region": "eu", "r\u{E9}seau": "wifi"]
        return [
            (.hello(Hello(minVersion: 1, maxVersion: 4, compressions: 7, clientID: "alice", authToken: "t")), 1),
            (
                .welcome(
                    Welcome(
                        version: 4, compressions: 7, serverID: "s", modelVersion: 3, datasets: 10,
                        maxPayloadBytes: 1 << 20, maxDecompressedBytes: 1 << 20, maxDatasets: 100, encodings: 31,
                        deltaEncoding: 4)), 1
            ),
            (.fetch(heldVersion: 3, compression: .shuffleZlib, deltaEncodings: 31), 4),
            (.model(Model(version: 3, datasets: 10, tensors: tensors, compression: .zlib)), 4),
            (.modelUnchanged(version: 3, datasets: 10), 4),
            (
                .push(
                    Push(
                        clientID: "bob", datasets: 5, baseVersion: 2, tensors: tensors, compression: .shuffleZlib,
                        pushID: 9)), 4
            ),
            (.ack(version: 4, datasets: 15), 4),
            (.error(ErrorMessage(code: .roundClosed, message: "round 7 closed")), 4),
            (.ping(nonce: 7), 4),
            (.pong(nonce: 7), 4),
            (
                .modelDelta(
                    ModelDelta(
                        version: 4, datasets: 1, fromVersion: 3, steps: [tensors], encoding: .float32,
                        compression: .none)), 4
            ),
            (.other(AnyProtocolMessage(CheckIn(features: [], waitMilliseconds: 5_000, properties: properties))), 4),
            (
                .other(
                    AnyProtocolMessage(
                        Assignment(
                            kind: .train, taskID: 0xFEDC_BA98_7654_3210, round: 7, modelVersion: 42,
                            deadlineMilliseconds: 60_000, parameters: ["epochs": "1", "learning_rate": "0.001"]))),
                4
            ),
            (.other(AnyProtocolMessage(Assignment.comeBack(after: 1_500, .roundFull))), 4),
            (.other(AnyProtocolMessage(Report(taskID: 77, samples: 600, tensors: tensors))), 4),
            (
                .other(
                    AnyProtocolMessage(
                        EvaluationReport(
                            taskID: 78, modelVersion: 3, examples: 120, loss: 0.42,
                            metrics: ["accuracy": 0.875, "f1": 0.8]))), 4
            ),
            (
                .other(
                    AnyProtocolMessage(
                        Report(
                            taskID: 78, samples: 600, tensors: tensors, isDelta: true, compression: .none,
                            encoding: .int4))), 4
            ),
            (
                .other(
                    AnyProtocolMessage(
                        SecAggKeys(
                            taskID: 79, encryptionKey: [UInt8](repeating: 9, count: 32),
                            maskingKey: [UInt8](repeating: 7, count: 32)))), 4
            ),
            (
                .other(
                    AnyProtocolMessage(
                        SecAggRoster(
                            taskID: 79, participant: 2,
                            neighbours: [
                                .init(
                                    id: 1, encryptionKey: [UInt8](repeating: 1, count: 32),
                                    maskingKey: [UInt8](repeating: 2, count: 32)),
                                .init(
                                    id: 3, encryptionKey: [UInt8](repeating: 3, count: 32),
                                    maskingKey: [UInt8](repeating: 4, count: 32)),
                            ]))), 4
            ),
            (
                .other(
                    AnyProtocolMessage(
                        SecAggShares(
                            taskID: 79,
                            bundles: [
                                .init(participant: 1, sealed: Array(0..<60)),
                                .init(participant: 3, sealed: Array(5..<70)),
                            ]
                        ))), 4
            ),
            (
                .other(
                    AnyProtocolMessage(
                        SecAggInbox(taskID: 79, bundles: [.init(participant: 3, sealed: Array(1..<61))]))), 4
            ),
            (.other(AnyProtocolMessage(SecAggInput(taskID: 79, elementBytes: 4, values: Array(0..<40)))), 4),
            (.other(AnyProtocolMessage(SecAggInput(taskID: 79, elementBytes: 2, values: Array(100..<140)))), 4),
            (.other(AnyProtocolMessage(SecAggSurvivors(taskID: 79, contributors: 2, survivors: [1, 3]))), 4),
            (
                .other(
                    AnyProtocolMessage(
                        SecAggSignedKeys(
                            keys: SecAggKeys(taskID: 79, encryptionKey: Array(0..<32), maskingKey: Array(32..<64)),
                            signature: Array(64..<128)))), 4
            ),
            (
                .other(
                    AnyProtocolMessage(
                        SecAggSignedRoster(
                            taskID: 79, participant: 2, session: Array(100..<132),
                            cohort: [.init(id: 1, name: "a"), .init(id: 2, name: "bé"), .init(id: 3, name: "c")],
                            neighbours: [
                                .init(
                                    id: 1, encryptionKey: Array(0..<32), maskingKey: Array(1..<33),
                                    signature: Array(2..<66))
                            ]))), 4
            ),
            (.other(AnyProtocolMessage(SecAggContributors(taskID: 79, contributors: [1, 2, 3]))), 4),
            (.other(AnyProtocolMessage(SecAggConsistency(taskID: 79, signature: Array(0..<64)))), 4),
            (
                .other(
                    AnyProtocolMessage(
                        SecAggSignatures(
                            taskID: 79,
                            signatures: [
                                .init(signer: 1, signature: Array(0..<64)),
                                .init(signer: 3, signature: Array(64..<128)),
                            ]
                        ))), 4
            ),
            (
                .other(
                    AnyProtocolMessage(
                        SecAggUnmask(
                            taskID: 79,
                            shares: [
                                .init(owner: 1, kind: .selfMaskSeed, share: Array(0..<54)),
                                .init(owner: 3, kind: .maskingKey, share: Array(3..<57)),
                            ]))), 4
            ),
        ]
    }()

    /// The outcome of decoding `payload` as a frame of `type` in `version`:
    /// nil when it decodes, else the error's code. A trap fails the whole run.
    static func decode(_ payload: [UInt8], type: MessageType, version: UInt8) -> (Message?, ErrorCode?) {
        let header = FrameHeader(version: version, type: type, requestID: 1, payloadLength: UInt32(payload.count))
        do throws(CodecError) {
            return (try MessageCodec.decode(Frame(header: header, payload: payload), limits: limits), nil)
        } catch {
            return (nil, error.code)
        }
    }

    static let payloadCodes = Set((8...16).map { ErrorCode(rawValue: UInt16($0)) })

    @Test("Every type the registry defines has a sample here")
    func everyType() {
        #expect(Set(Self.samples.map(\.0.type)) == Set(MessageRegistry.all.map(\.type)))
    }

    @Test(
        "Every truncation and every bit flip of a valid payload decodes or is refused with a payload code",
        arguments: DamagedPayloadTests.samples.indices)
    func truncationsAndFlips(_ index: Int) {
        let (message, version) = Self.samples[index]
        let payload = MessageCodec.payload(message, version: version)
        #expect(Self.decode(payload, type: message.type, version: version).1 == nil, "the sample decodes")
        for n in 0..<payload.count {
            let (decoded, code) = Self.decode(Array(payload[0..<n]), type: message.type, version: version)
            #expect(decoded == nil, "\(message.type) cut at \(n) decoded")
            if let code { #expect(Self.payloadCodes.contains(code), "\(message.type) cut at \(n): \(code)") }
        }
        for bit in 0..<payload.count * 8 {
            var flipped = payload
            flipped[bit / 8] ^= 1 << (bit % 8)
            let (decoded, code) = Self.decode(flipped, type: message.type, version: version)
            if let code { #expect(Self.payloadCodes.contains(code), "\(message.type) bit \(bit): \(code)") }
            // A rounds' message that still decodes encodes and decodes to itself (lossy
            // values and NaN, which equals nothing, aside).
            if let decoded, case .other = decoded, Self.isExact(decoded) {
                let again = MessageCodec.payload(decoded, version: version)
                #expect(Self.decode(again, type: message.type, version: version).0 == decoded, "bit \(bit)")
            }
        }
    }

    static func isExact(_ message: Message) -> Bool {
        guard let report = message.as(Report.self) else { return true }
        return report.encoding == .float32 && !report.tensors.contains { $0.values.contains(where: \.isNaN) }
    }

    @Test(
        "Random payloads of every type decode or are refused with a payload code",
        arguments: DamagedPayloadTests.samples.indices)
    func randomPayloads(_ index: Int) {
        let (message, version) = Self.samples[index]
        let valid = MessageCodec.payload(message, version: version)
        var rng = SplitMix64(seed: UInt64(index) &* 0x9E37_79B9)
        for round in 0..<400 {
            // Half wholly random, half a valid prefix followed by random bytes.
            var payload: [UInt8]
            if round % 2 == 0 {
                payload = (0..<Int.random(in: 0...96, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                payload = Array(valid.prefix(Int.random(in: 0...valid.count, using: &rng)))
                payload += (0..<Int.random(in: 0...32, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            let (_, code) = Self.decode(payload, type: message.type, version: version)
            if let code { #expect(Self.payloadCodes.contains(code), "\(message.type) random \(round): \(code)") }
        }
    }

    @Test("The rounds' messages are refused in frames of versions 1-3, from the header", arguments: [UInt8(1), 2, 3])
    func roundsBeforeVersion4(_ version: UInt8) {
        for (message, _) in Self.samples where message.descriptor.sinceVersion == 4 {
            var decoder = FrameDecoder(limits: Self.limits)
            decoder.append(MessageCodec.encode(message, requestID: 1, version: version))
            let error = #expect(throws: CodecError.self, "\(message.type) in version \(version)") {
                try decoder.next()
            }
            #expect(error?.code == .unknownMessageType)
        }
    }
}

@Suite("Weights JSON numbers")
struct WeightsJSONNumberTests {
    @Test("RFC 8259 numbers are read", arguments: ["0", "-0", "1", "-12", "0.5", "1.25e-3", "6E+2", "-0.0e0"])
    func accepted(_ number: String) throws {
        let tensors = try WeightsJSONParser.parse(Array("[[\(number)]]".utf8))
        #expect(tensors.first?.values == [Float(Double(number)!)])
    }

    @Test("Spellings JSON does not allow are refused", arguments: ["01", "1.", ".5", "+1", "1e", "0x10", "1.e3", "-"])
    func refused(_ number: String) {
        #expect(throws: WeightsJSONParser.Failure.self) { try WeightsJSONParser.parse(Array("[[\(number)]]".utf8)) }
    }
}
