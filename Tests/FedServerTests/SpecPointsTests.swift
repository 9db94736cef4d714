import FedCodec
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

#if canImport(Glibc)
    import Glibc
#endif

/// The points Protocol/SPEC.md decides about frame versions, request ids,
/// dtypes, fetch deltas and the model's HTTP resources, checked over real
/// sockets against a running server.
@Suite("Spec points over TCP", .serialized)
struct SpecPointsTests {
    /// The next frame, header included (the frame version is part of what is checked).
    func receiveFrame(_ c: TestClient) throws -> Frame? {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            if let frame = try c.decoder.next() { return frame }
            let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return nil }
            guard n > 0 else { throw TestError("recv failed or timed out: \(errno)") }
            c.decoder.append(chunk[0..<n])
        }
    }

    func error(_ frame: Frame?) throws -> ErrorMessage {
        guard let frame, case .error(let e) = try MessageCodec.decode(frame) else {
            throw TestError("expected ERROR, got \(String(describing: frame?.header.type))")
        }
        return e
    }

    func get(_ port: Int, _ path: String, headers: String = "") throws -> String {
        let c = try TestClient(port: port, timeoutSeconds: 5)
        try c.send(Array("GET \(path) HTTP/1.1\r\nHost: x\r\n\(headers)Connection: close\r\n\r\n".utf8))
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        return String(decoding: out.prefix(200), as: UTF8.self)
    }

    @Test("A version is named by one URL only: canonical decimal, nothing else")
    func canonicalVersions() {
        #expect(ModelResource.version("0") == 0)
        #expect(ModelResource.version("1") == 1)
        #expect(ModelResource.version("18446744073709551615") == UInt64.max)
        for text in ["", "01", "00", "+1", "-1", " 1", "1 ", "1.0", "0x1", "18446744073709551616", "１", "1/2"] {
            #expect(ModelResource.version(Substring(text)) == nil, "\(text)")
        }
    }

    @Test("If-None-Match: weak comparison, lists, *, and a malformed field that matches nothing")
    func ifNoneMatch() {
        let tag = "\"v1\""
        for field in [
            ["\"v1\""], ["W/\"v1\""], ["*"], [" * "], ["\"v0\", W/\"v1\""], ["\"v0\"", "\"v1\""], [", ,\"v1\","],
            ["\"a,b\", \"v1\""],
        ] {
            #expect(ModelResource.ifNoneMatch(field, matches: tag), "\(field)")
        }
        for field in [
            [], [""], ["\"v0\""], ["v1"], ["w/\"v1\""], ["\"v1"], ["\"v1\" \"v2\""], ["*, \"v1\""], ["\"V1\""],
            ["\"v1\"x"],
        ] {
            #expect(!ModelResource.ifNoneMatch(field, matches: tag), "\(field)")
        }
    }

    @Test("Over HTTP: W/\"v1\" and lists get 304; /v1/model/01 and /v1/model/+1 are 404, /v1/model/1 is 200")
    func modelResourcesOverHTTP() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        _ = try c.push(constantTensors(2), datasets: 10)
        for field in ["W/\"v1\"", "\"v0\", W/\"v1\"", "*"] {
            let head = try get(s.port, "/v1/model", headers: "If-None-Match: \(field)\r\n")
            #expect(head.hasPrefix("HTTP/1.1 304"), "\(field): \(head)")
        }
        #expect(try get(s.port, "/v1/model", headers: "If-None-Match: W/\"v0\"\r\n").hasPrefix("HTTP/1.1 200"))
        #expect(try get(s.port, "/v1/model/1", headers: "If-None-Match: W/\"v1\"\r\n").hasPrefix("HTTP/1.1 304"))
        #expect(try get(s.port, "/v1/model/1").hasPrefix("HTTP/1.1 200"))
        #expect(try get(s.port, "/v1/model/0").hasPrefix("HTTP/1.1 200"))
        for path in ["/v1/model/01", "/v1/model/+1", "/v1/model/00", "/v1/model/1%20", "/v1/model/"] {
            #expect(try get(s.port, path).hasPrefix("HTTP/1.1 404"), "\(path)")
        }
    }

    @Test("A TLS failure's reason keeps BoringSSL's reason name and drops the build's file paths")
    func tlsReasons() {
        let stack =
            "Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /home/ci/work/.build/checkouts/swift-nio-ssl/Sources/CNIOBoringSSL/ssl/handshake.cc:393"
        #expect(TLSDiagnostics.reasonName(stack) == "CERTIFICATE_VERIFY_FAILED")
        #expect(TLSDiagnostics.reasonName("Error:  EOF during handshake") == "EOF during handshake")
        #expect(
            TLSDiagnostics.withoutPaths("read failed at /a/b/c.swift:12 (see /x/y/z)") == "read failed (see [path])")
        #expect(TLSDiagnostics.withoutPaths("connection reset by peer") == "connection reset by peer")
    }

    @Test("Before the handshake every ERROR travels in a version-1 frame; unsupported_version names 1...4 with id 0")
    func preHandshakeErrors() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        try c.send(try Frame.encode(type: .ping, requestID: 7, payload: [UInt8](repeating: 0, count: 8), version: 3))
        let refused = try receiveFrame(c)
        #expect(refused?.header.version == 1)
        let e = try error(refused)
        #expect(e.code == .handshakeRequired && refused?.header.requestID == 7)

        let v7 = try TestClient(port: s.port)
        var bytes = try Frame.encode(type: .ping, requestID: 9, payload: [UInt8](repeating: 0, count: 8))
        bytes[4] = 7
        try v7.send(bytes)
        let frame = try receiveFrame(v7)
        let e7 = try error(frame)
        #expect(frame?.header.version == 1 && frame?.header.requestID == 0)
        #expect(e7.code == .unsupportedVersion && e7.minVersion == 1 && e7.maxVersion == 4)
        #expect(v7.closedByServer())

        let late = try TestClient(port: s.port)
        _ = try late.send(.hello(Hello(minVersion: 5, maxVersion: 9, clientID: "future")))
        let answer = try receiveFrame(late)
        let e4 = try error(answer)
        #expect(answer?.header.version == 1 && answer?.header.requestID == 1)
        #expect(e4.code == .unsupportedVersion && e4.minVersion == 1 && e4.maxVersion == 4)
        #expect(late.closedByServer())
    }

    @Test("A second HELLO: in the agreed version, 33 and the connection goes on; in a version-1 frame, fatal")
    func secondHello() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        _ = try c.send(.hello(Hello(maxVersion: 3, clientID: "twice")))
        guard case .welcome(let w)? = try c.receive()?.1, w.version == 3 else { throw TestError("no WELCOME 3") }
        let hello = MessageCodec.payload(.hello(Hello(maxVersion: 3, clientID: "twice")))
        try c.send(try Frame.encode(type: .hello, requestID: 5, payload: hello, version: 3))
        let answer = try receiveFrame(c)
        #expect(answer?.header.version == 3 && answer?.header.requestID == 5)
        #expect(try error(answer).code == .unexpectedMessage)
        _ = try c.send(.ping(nonce: 42), version: 3)
        guard case .pong(42)? = try c.receive()?.1 else { throw TestError("the connection did not go on") }

        _ = try c.send(.hello(Hello(maxVersion: 3, clientID: "twice")))  // a version-1 frame
        let fatal = try receiveFrame(c)
        let e = try error(fatal)
        #expect(fatal?.header.version == 3 && fatal?.header.requestID == c.nextID - 1)
        #expect(e.code == .unsupportedVersion && e.minVersion == 1 && e.maxVersion == 4)
        #expect(c.closedByServer())
    }

    /// A version-3 PUSH payload whose tensors are stored in the given dtypes, one per tensor.
    func mixedPush(_ tensors: [Tensor], _ encodings: [ValueEncoding]) -> [UInt8] {
        var w = ByteWriter()
        w.string("mixed")
        w.u64(10)
        w.u64(0)
        w.u64(0)
        w.u8(0)
        w.u8(Compression.none.rawValue)
        w.u16(UInt16(tensors.count))
        var raw = ByteWriter()
        for (t, e) in zip(tensors, encodings) {
            w.u8(e.rawValue)
            w.u8(UInt8(t.shape.count))
            for d in t.shape { w.u32(UInt32(d)) }
            e.encode(t.values, into: &raw)
        }
        w.u32(UInt32(raw.bytes.count))
        w.u32(UInt32(raw.bytes.count))
        w.append(raw.bytes)
        return w.bytes
    }

    @Test("A dtype the server does not accept is unsupported_d_type on any tensor, before the shapes are compared")
    func refusedDTypeOnEveryTensor() throws {
        let s = try RunningServer { $0.network.encodings = .float16 }
        let c = try TestClient(port: s.port)
        _ = try c.send(.hello(Hello(maxVersion: 3, clientID: "mixed")))
        guard case .welcome(let w)? = try c.receive()?.1, w.encodings == 0b11 else { throw TestError("WELCOME") }
        let model = constantTensors(0.5)
        // The first tensor in float32 (accepted), the others in int4 (not accepted).
        var encodings = [ValueEncoding](repeating: .int4, count: model.count)
        encodings[0] = .float32
        try c.send(try Frame.encode(type: .push, requestID: 3, payload: mixedPush(model, encodings), version: 3))
        let e = try error(try receiveFrame(c))
        #expect(e.code == .unsupportedDType && e.message.contains("int4") == false && e.message.contains("fp16"))
        // Wrong shapes and a refused dtype: the blob header's dtype comes first (section 4.2).
        let wrong = Array(model.dropLast())
        try c.send(
            try Frame.encode(
                type: .push, requestID: 4, payload: mixedPush(wrong, Array(encodings.dropLast())), version: 3))
        #expect(try error(try receiveFrame(c)).code == .unsupportedDType)
        // Accepted dtypes on every tensor: applied.
        let fine = [ValueEncoding](repeating: .float16, count: model.count)
        try c.send(try Frame.encode(type: .push, requestID: 5, payload: mixedPush(model, fine), version: 3))
        guard case .ack(1, 10)? = try c.receive()?.1 else { throw TestError("no ACK") }
    }

    @Test("MODEL_DELTA only when the steps' compression was agreed; its payload smaller than the MODEL it replaces")
    func deltaStepsNeedTheirCompression() throws {
        let s = try RunningServer { $0.aggregation.deltaEncoding = .int8 }
        let pusher = try TestClient(port: s.port)
        _ = try pusher.handshake("pusher")
        for k in 1...2 {
            let t = constantTensors(0).enumerated().map { i, t in
                try! Tensor(shape: t.shape, values: (0..<t.count).map { Float(sin(Double($0 * k + i))) })
            }
            guard case .ack = try pusher.push(t, datasets: 10) else { throw TestError("no ACK") }
        }
        func fetch(offering compressions: UInt8, wanted: Compression) throws -> (Message, Int) {
            let c = try TestClient(port: s.port)
            _ = try c.send(.hello(Hello(maxVersion: 3, compressions: compressions, clientID: "reader")))
            _ = try c.receive()
            _ = try c.send(
                .fetch(heldVersion: 1, compression: wanted, deltaEncodings: ValueEncoding.int8.bit), version: 3)
            guard let frame = try receiveFrame(c) else { throw TestError("closed") }
            return (try MessageCodec.decode(frame), Int(frame.header.payloadLength))
        }
        // Mode none only: int8 steps are zlib streams, so the full model comes.
        let (full, modelSize) = try fetch(offering: 0b001, wanted: .none)
        guard case .model(let m) = full else {
            throw TestError("a MODEL_DELTA in a compression the client did not agree to")
        }
        #expect(m.version == 2 && m.compression == Compression.none)
        let (delta, size) = try fetch(offering: 0b111, wanted: .none)
        guard case .modelDelta(let d) = delta else { throw TestError("no MODEL_DELTA: \(delta)") }
        #expect(d.fromVersion == 1 && d.version == 2 && d.encoding == .int8 && d.compression == .zlib)
        #expect(size < modelSize)
    }
}
