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
