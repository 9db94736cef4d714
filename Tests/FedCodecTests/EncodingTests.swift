@testable import FedCodec
import Foundation
import Testing

/// The value encodings of version 3 (SPEC section 6.3), against values computed by hand.
@Suite("Value encodings")
struct EncodingTests {
    func blob(_ tensors: [Tensor], _ e: ValueEncoding, _ c: Compression = .none) -> [UInt8] {
        var w = ByteWriter()
        TensorBlob.encode(tensors, compression: c, encoding: e, into: &w)
        return w.bytes
    }

    func decode(_ bytes: [UInt8], encodings: UInt8 = 0b1_1111) throws -> [Tensor] {
        var limits = Limits()
        limits.valueEncodings = encodings
        return try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            return try TensorBlob.decode(&r, limits: limits)
        }
    }

    @Test("fp16: exact for representable values, round to nearest even, beyond 65504 infinite")
    func float16() {
        let v: [Float] = [0, -0.0, 1, -2.5, 65504, 1.0009765625, 1 + 0.00048828125, 1 + 3 * 0.00048828125, 1e6]
        let out = ValueEncoding.float16.roundTrip(v)
        #expect(Array(out[0..<6]) == [0, -0.0, 1, -2.5, 65504, 1.0009765625])
        #expect(out[1].sign == .minus)
        #expect(out[6] == 1)  // a tie rounds to the even mantissa
        #expect(out[7] == 1 + 4 * 0.00048828125)
        #expect(out[8] == .infinity)
    }

    @Test("int8/int4/int2 blocks: lo + q * step per block of 256, codes packed low bits first")
    func blocks() throws {
        // One block: lo = -1, hi = 2; int2 step = 1: -1, 0, 1, 2 exactly.
        let v: [Float] = [-1, 0, 1, 2, 0.4, 0.6]
        #expect(ValueEncoding.int2.roundTrip(v) == [-1, 0, 1, 2, 0, 1])
        var w = ByteWriter()
        ValueEncoding.int2.encode(v, into: &w)
        // header: lo -1.0 (0xBF800000), step 1.0 (0x3F800000), little-endian; codes 0,1,2,3 | 1,2
        #expect(w.bytes == [0, 0, 0x80, 0xBF, 0, 0, 0x80, 0x3F, 0b11_10_01_00, 0b0000_10_01])
        #expect(ValueEncoding.int8.encodedSize(count: 257) == 16 + 257)
        #expect(ValueEncoding.int4.encodedSize(count: 257) == 16 + 129)
        #expect(ValueEncoding.int2.encodedSize(count: 5) == 8 + 2)
        // A constant block has step 0 and decodes to its value.
        #expect(ValueEncoding.int4.roundTrip([3, 3, 3]) == [3, 3, 3])
        // int8 error at most half a step (nearest rounding).
        let ramp = (0..<1000).map { Float($0) * 0.013 - 4 }
        for (a, b) in zip(ramp, ValueEncoding.int8.roundTrip(ramp)) { #expect(abs(a - b) <= 3.33 / 255 / 2 + 1e-6) }
    }

    @Test("Stochastic rounding is unbiased: the mean of many encodings is the value")
    func stochastic() {
        let v = [Float](repeating: 0.3, count: 254) + [0, 1]  // one block; int2 step 1/3: 0.3 is 0.9 of a step
        var sum = 0.0
        let runs = 200
        for seed in 0..<runs {
            let out = ValueEncoding.int2.roundTrip(v, rounding: .stochastic(seed: UInt64(seed)))
            sum += out[0..<254].reduce(0.0) { $0 + Double($1) }
        }
        #expect(abs(sum / Double(runs * 254) - 0.3) < 0.005)
        #expect(ValueEncoding.int2.roundTrip(v, rounding: .nearest)[0] == Float(1) / 3)
    }

    @Test(
        "Blobs of every encoding and compression decode to what the encoder meant",
        arguments: ValueEncoding.allCases, Compression.allCases)
    func blobRoundTrip(_ e: ValueEncoding, _ c: Compression) throws {
        let tensors = [
            try Tensor(shape: [3, 300], values: (0..<900).map { Float(sin(Double($0))) }),
            try Tensor(shape: [5], values: [1, 2, 3, 4, 5]),
        ]
        let decoded = try decode(blob(tensors, e, c))
        #expect(decoded.map { (t: Tensor) in t.shape } == [[3, 300], [5]])
        for (t, d) in zip(tensors, decoded) { #expect(d.values == e.roundTrip(t.values)) }
        if e == .float32 { #expect(decoded == tensors) }
    }

    @Test("Outside version 3 only float32 is defined: dtype 2 is unsupported_d_type")
    func dtypeOutsideVersion3() {
        let b = blob([try! Tensor(shape: [2], values: [1, 2])], .float16)
        #expect(throws: CodecError.self) { try decode(b, encodings: ValueEncoding.float32.bit) }
        do {
            _ = try decode(b, encodings: ValueEncoding.float32.bit)
        } catch {
            #expect((error as? CodecError)?.code == .unsupportedDType)
        }
    }

    @Test("shuffle-zlib over mixed widths is unsupported_compression; raw size must match the encoded sizes")
    func headerChecks() throws {
        var b = blob([try Tensor(shape: [2], values: [1, 2]), try Tensor(shape: [1], values: [3])], .float16, .none)
        b[0] = 2  // claim shuffle-zlib, then make the second tensor fp32 (raw size 4 + 4)
        b[2 + 1 + 2 + 4] = 1
        b[18] = 8
        #expect(
            throws: CodecError(
                .unsupportedCompression, "shuffle-zlib needs every tensor in fp32, or every tensor in fp16")
        ) { try decode(b) }
        var c = blob([try Tensor(shape: [300], values: [Float](repeating: 1, count: 300))], .int4)
        c[3 + 2 + 4 + 3] &+= 1  // raw size one too many
        do {
            _ = try decode(c)
            Issue.record("accepted")
        } catch {
            #expect((error as? CodecError)?.code == .sizeMismatch)
        }
    }

    @Test("PUSH version 3: flags and delta; MODEL_DELTA steps apply bit for bit; undefined flags are malformed")
    func messages() throws {
        let t = [try Tensor(shape: [4], values: [0.1, -0.2, 0.3, 1e-3])]
        let push = Message.push(
            Push(
                clientID: "c", datasets: 10, baseVersion: 7, tensors: t, compression: .zlib, pushID: 9,
                encoding: .int8, isDelta: true))
        var d = FrameDecoder()
        d.append(MessageCodec.encode(push, requestID: 1, version: 3))
        guard case .push(let p) = try MessageCodec.decode(try d.next()!) else { throw CodecError(.internalError, "") }
        #expect(p.isDelta && p.encoding == .int8 && p.baseVersion == 7 && p.pushID == 9)
        #expect(p.tensors[0].values == ValueEncoding.int8.roundTrip(t[0].values))
        // The same push in a version-2 frame carries float32 weights and no flags.
        d.append(MessageCodec.encode(push, requestID: 2, version: 2))
        guard case .push(let p2) = try MessageCodec.decode(try d.next()!) else { throw CodecError(.internalError, "") }
        #expect(!p2.isDelta && p2.encoding == .float32 && p2.tensors == t)

        var bad = MessageCodec.payload(push, version: 3)
        bad[2 + 1 + 8 + 8 + 8] = 2
        var frame = FrameWriter(type: .push, requestID: 3, version: 3)
        frame.payload.append(bad)
        d.append(try frame.finish())
        #expect(throws: CodecError(.malformedPayload, "push flags 0x2 are not defined")) {
            try MessageCodec.decode(try d.next()!)
        }

        let steps = [
            [try Tensor(shape: [4], values: [1, 2, 3, 4])], [try Tensor(shape: [4], values: [0.5, 0, 0, -1])],
        ]
        let delta = Message.modelDelta(
            ModelDelta(version: 9, datasets: 5, fromVersion: 7, steps: steps, encoding: .float16, compression: .zlib))
        d.append(MessageCodec.encode(delta, requestID: 4, version: 3))
        guard case .modelDelta(let md) = try MessageCodec.decode(try d.next()!) else {
            throw CodecError(.internalError, "")
        }
        #expect(md.fromVersion == 7 && md.version == 9 && md.steps == steps && md.encoding == .float16)
        let expected: [Float] = [0.1 + 1 + 0.5, -0.2 + 2 + 0, 0.3 + 3 + 0, 1e-3 + 4 - 1]
        let applied = md.apply(to: t)[0].values
        #expect(applied == expected)
        // MODEL_DELTA is not a message of version 2.
        d = FrameDecoder()
        d.append(MessageCodec.encode(delta, requestID: 5, version: 2))
        #expect(throws: CodecError.self) { try d.next() }
    }
}

@Suite("Frame decoder memory")
struct FrameDecoderMemoryTests {
    @Test("After a frame of weights the decoder gives its buffer back: an idle connection holds no model")
    func largeFrameReleased() throws {
        var d = FrameDecoder()
        let push = Message.push(
            Push(clientID: "c", datasets: 1, baseVersion: 0, tensors: [Tensor(zeros: [200_000])]))
        d.append(MessageCodec.encode(push, requestID: 1))
        #expect(try d.next() != nil)
        #expect(d.storageCapacity <= FrameDecoder.retainedCapacity)
        d.append(MessageCodec.encode(.ping(nonce: 1), requestID: 2))
        #expect(try d.next() != nil)
        #expect(d.storageCapacity > 0 && d.storageCapacity <= FrameDecoder.retainedCapacity)
    }
}
