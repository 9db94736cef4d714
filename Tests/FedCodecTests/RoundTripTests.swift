import FedTestSupport
import Testing

@testable import FedCodec

func randomString(_ rng: inout SplitMix64, minLength: Int = 1) -> String {
    let alphabet = Array("abcxyz019-_ üλ漢🙂")
    return String((0..<Int.random(in: minLength...12, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
}

func randomTensors(_ rng: inout SplitMix64) -> [Tensor] {
    (0..<Int.random(in: 0...5, using: &rng)).map { _ in
        let shape = (0..<Int.random(in: 0...3, using: &rng)).map { _ in Int.random(in: 0...7, using: &rng) }
        let n = Tensor.elementCount(shape)!
        return try! Tensor(shape: shape, values: (0..<n).map { _ in Float.random(in: -2...2, using: &rng) })
    }
}

func randomMessage(_ rng: inout SplitMix64) -> Message {
    let compression = Compression.allCases.randomElement(using: &rng)!
    switch Int.random(in: 0..<10, using: &rng) {
    case 0:
        return .hello(
            Hello(
                minVersion: 1, maxVersion: UInt8.random(in: 1...9, using: &rng),
                compressions: UInt8.random(in: 0...255, using: &rng), clientID: randomString(&rng),
                authToken: randomString(&rng, minLength: 0)))
    case 1:
        return .welcome(
            Welcome(
                compressions: 7, serverID: randomString(&rng, minLength: 0), modelVersion: rng.next(),
                datasets: rng.next(), maxPayloadBytes: UInt32.random(in: 0...UInt32.max, using: &rng)))
    case 2: return .fetch(heldVersion: rng.next(), compression: compression)
    case 3:
        return .model(
            Model(version: rng.next(), datasets: rng.next(), tensors: randomTensors(&rng), compression: compression))
    case 4: return .modelUnchanged(version: rng.next(), datasets: rng.next())
    case 5:
        return .push(
            Push(
                clientID: randomString(&rng), datasets: rng.next(), baseVersion: rng.next(),
                tensors: randomTensors(&rng), compression: compression))
    case 6: return .ack(version: rng.next(), datasets: rng.next())
    case 7:
        return .error(
            ErrorMessage(
                code: ErrorCode.allKnown.randomElement(using: &rng)!, retryable: Bool.random(using: &rng),
                message: randomString(&rng, minLength: 0)))
    case 8: return .ping(nonce: rng.next())
    default: return .pong(nonce: rng.next())
    }
}

func randomPairs(_ rng: inout SplitMix64) -> [String: String] {
    var pairs: [String: String] = [:]
    for _ in 0..<Int.random(in: 0...5, using: &rng) { pairs[randomString(&rng)] = randomString(&rng, minLength: 0) }
    return pairs
}

/// A random `CHECK_IN`, `ASSIGNMENT` or `REPORT` (version 4), lossless values only.
func randomRoundsMessage(_ rng: inout SplitMix64) -> Message {
    switch Int.random(in: 0..<3, using: &rng) {
    case 0:
        return .other(
            AnyProtocolMessage(
                CheckIn(
                    features: Features(rawValue: rng.next()),
                    abilities: CheckIn.Abilities(rawValue: UInt8.random(in: 0...3, using: &rng)),
                    waitMilliseconds: UInt32.random(in: 0...UInt32.max, using: &rng), properties: randomPairs(&rng))))
    case 1:
        let train = Bool.random(using: &rng)
        return .other(
            AnyProtocolMessage(
                Assignment(
                    kind: train ? .train : .comeBack, features: Features(rawValue: rng.next()),
                    taskID: train ? UInt64.random(in: 1...UInt64.max, using: &rng) : 0, round: rng.next(),
                    modelVersion: rng.next(), deadlineMilliseconds: UInt32.random(in: 0...UInt32.max, using: &rng),
                    retryAfterMilliseconds: UInt32.random(in: 0...UInt32.max, using: &rng),
                    reason: Assignment.Reason(rawValue: UInt8.random(in: 0...4, using: &rng)),
                    parameters: randomPairs(&rng))))
    default:
        return .other(
            AnyProtocolMessage(
                Report(
                    taskID: UInt64.random(in: 1...UInt64.max, using: &rng), samples: rng.next(),
                    tensors: randomTensors(&rng), isDelta: Bool.random(using: &rng),
                    compression: Compression.allCases.randomElement(using: &rng)!)))
    }
}

@Suite("Round trips")
struct RoundTripTests {
    @Test("Random rounds' messages survive random chunking in version-4 frames", arguments: 0..<10)
    func randomRoundsStream(seed: UInt64) throws {
        var rng = SplitMix64(seed: 1_000 + seed)
        let messages = (0..<30).map { _ in randomRoundsMessage(&rng) }
        var stream: [UInt8] = []
        for (i, m) in messages.enumerated() { stream += MessageCodec.encode(m, requestID: UInt32(i), version: 4) }
        var decoder = FrameDecoder()
        var decoded: [Message] = []
        var offset = 0
        while offset < stream.count {
            let step = min(stream.count - offset, Int.random(in: 1...97, using: &rng))
            decoder.append(stream[offset..<offset + step])
            offset += step
            while let frame = try decoder.next() { decoded.append(try MessageCodec.decode(frame)) }
        }
        try decoder.finish()
        #expect(decoded == messages)
    }

    @Test("Random messages survive random chunking", arguments: 0..<20)
    func randomStream(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let messages = (0..<30).map { _ in randomMessage(&rng) }
        var stream: [UInt8] = []
        for (i, m) in messages.enumerated() {
            stream += MessageCodec.encode(m, requestID: UInt32(i), level: Int32.random(in: 1...9, using: &rng))
        }
        var decoder = FrameDecoder()
        var decoded: [(UInt32, Message)] = []
        var offset = 0
        while offset < stream.count {
            let step = min(stream.count - offset, Int.random(in: 1...97, using: &rng))
            decoder.append(stream[offset..<offset + step])
            offset += step
            while let frame = try decoder.next() {
                decoded.append((frame.header.requestID, try MessageCodec.decode(frame)))
            }
        }
        try decoder.finish()
        #expect(decoded.map(\.0) == Array(0..<UInt32(messages.count)))
        #expect(decoded.map(\.1) == messages)
    }

    @Test("MLP weights round-trip in every compression mode", arguments: Compression.allCases)
    func mlpWeights(_ compression: Compression) throws {
        var rng = SplitMix64(seed: 7)
        let tensors = Tensor.mnistMLPShapes.map { shape in
            try! Tensor(
                shape: shape,
                values: (0..<Tensor.elementCount(shape)!).map { _ in Float.random(in: -0.1...0.1, using: &rng) })
        }
        #expect(tensors.reduce(0) { $0 + $1.count } == 199_210)
        let push = Message.push(
            Push(clientID: "c", datasets: 5000, baseVersion: 1, tensors: tensors, compression: compression))
        let bytes = MessageCodec.encode(push, requestID: 1, level: 1)
        if compression == .none {
            // header, client id, datasets + base, mode + count, dtype/rank x6, 9 dims, sizes, data
            #expect(bytes.count == 20 + 3 + 16 + 3 + 12 + 9 * 4 + 8 + 796_840)
        }
        var decoder = FrameDecoder()
        decoder.append(bytes)
        let frame = try #require(try decoder.next())
        #expect(try MessageCodec.decode(frame) == push)
    }

    @Test("Special float values keep their bits")
    func specialFloats() throws {
        let values: [Float] = [
            .nan, -.nan, .infinity, -.infinity, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude,
        ]
        let t = try Tensor(shape: [values.count], values: values)
        for c in Compression.allCases {
            let bytes = MessageCodec.encode(
                .model(Model(version: 1, datasets: 1, tensors: [t], compression: c)), requestID: 0)
            var d = FrameDecoder()
            d.append(bytes)
            guard case .model(let m) = try MessageCodec.decode(try #require(try d.next())) else {
                Issue.record("not a model")
                return
            }
            #expect(m.tensors[0].values.map(\.bitPattern) == values.map(\.bitPattern))
        }
    }

    @Test("Checkpoints round-trip in every mode", arguments: Compression.allCases)
    func checkpoint(_ compression: Compression) throws {
        var rng = SplitMix64(seed: 3)
        let ck = Checkpoint(version: 9, datasets: 45000, tensors: randomTensors(&rng) + randomTensors(&rng))
        #expect(try Checkpoint.decode(ck.encode(compression: compression)) == ck)
    }

    @Test("Recent pushes keep their acceptance times (optional section 0x8003); without times the file has none")
    func pushTimes() throws {
        let t = [Tensor(zeros: [3])]
        let timed = Checkpoint(
            version: 2, datasets: 20, tensors: t,
            recentPushes: [
                PushRecord(clientID: "a", pushID: 7, version: 1, datasets: 10, acceptedAt: 1_800_000_000_000),
                PushRecord(clientID: "b", pushID: 9, version: 2, datasets: 20, acceptedAt: 1_800_000_000_500),
            ])
        #expect(try Checkpoint.decode(timed.encode()) == timed)
        var untimed = timed
        for i in untimed.recentPushes.indices { untimed.recentPushes[i].acceptedAt = 0 }
        let bytes = untimed.encode()
        #expect(try Checkpoint.decode(bytes) == untimed)
        #expect(bytes.count + 2 + 4 + 4 + 16 == timed.encode().count)  // tag, length, count, two times
    }

    @Test("Byte shuffle is its own inverse's inverse")
    func shuffle() {
        let src: [UInt8] = Array(0..<40)
        var shuffled = [UInt8](repeating: 0, count: 40)
        var back = [UInt8](repeating: 0, count: 40)
        src.withUnsafeBytes { s in shuffled.withUnsafeMutableBytes { Zlib.shuffle(s, into: $0) } }
        #expect(Array(shuffled[0..<10]) == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36])
        #expect(Array(shuffled[10..<12]) == [1, 5])
        shuffled.withUnsafeBytes { s in back.withUnsafeMutableBytes { Zlib.unshuffle(s, into: $0) } }
        #expect(back == src)
    }
}
