import FedCodec
import FedTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Extreme finite pushes against real `fed server` processes (issue 21,
/// items 1, 2 and 5): no crash, no published weight beyond the bound, the
/// same after a restart; a retained window larger than the budget refused.
@Suite("fed server under extreme values", .serialized)
struct ExtremeValuesProcessTests {
    static func alternating(_ v: Float) -> [Tensor] {
        Tensor.mnistMLPShapes.map { shape in
            try! Tensor(shape: shape, values: (0..<Tensor.elementCount(shape)!).map { $0 % 2 == 0 ? v : -v })
        }
    }

    /// The served model, checked finite and within the bound.
    static func served(port: Int) throws -> (version: UInt64, inRange: Bool) {
        let c = try TestClient(port: port)
        _ = try c.handshake("reader")
        guard case .model(let m) = try c.fetch() else { throw TestError("no MODEL") }
        return (m.version, Limits.firstOutOfRange(m.tensors) == nil)
    }

    /// A version-2 client pushing with a named base.
    static func push(_ c: TestClient, _ tensors: [Tensor], base: UInt64) throws -> Message {
        _ = try c.send(
            .push(Push(clientID: "x", datasets: 100, baseVersion: base, tensors: tensors, compression: .zlib)),
            version: 2)
        guard let (_, m) = try c.receive() else { throw TestError("closed") }
        return m
    }

    static func v2Client(port: Int, id: String) throws -> TestClient {
        let c = try TestClient(port: port)
        _ = try c.send(.hello(Hello(minVersion: 1, maxVersion: 2, clientID: id)))
        guard case .welcome(let w)? = try c.receive()?.1, w.version == 2 else {
            throw TestError("no version-2 WELCOME")
        }
        return c
    }

    static func isRefusal(_ m: Message) -> Bool {
        if case .error(let e) = m { return e.code == .nonFiniteValue }
        return false
    }

    @Test(
        "A ±2e38 push to a server with lossy fetch deltas is refused; the server lives on, across a restart",
        arguments: ["int8", "int2"])
    func extremePushWithFetchDeltas(encoding: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ck = dir.appendingPathComponent("m.fedk").path
        var server = try ServerProcess(checkpoint: ck, extra: ["--fetch-deltas", encoding])
        let c = try Self.v2Client(port: server.port, id: "mallory")
        #expect(Self.isRefusal(try Self.push(c, Self.alternating(2e38), base: 0)))
        // Near the bound, alternating signs in every block: accepted and published finite.
        guard case .ack(let v, _) = try Self.push(c, Self.alternating(Limits.maxMagnitude / 2), base: 0) else {
            throw TestError("a push at the bound was refused")
        }
        #expect(v == 1)
        #expect(try Self.served(port: server.port) == (1, true))
        #expect(server.terminate() == 0)
        server = try ServerProcess(checkpoint: ck, extra: ["--fetch-deltas", encoding])
        let c2 = try Self.v2Client(port: server.port, id: "mallory")
        #expect(Self.isRefusal(try Self.push(c2, Self.alternating(2e38), base: 1)))
        #expect(try Self.served(port: server.port) == (1, true))
        #expect(server.terminate() == 0)
    }

    @Test("fedbuff/k=2: the ±3e38 sequence is refused, and a combination beyond the bound publishes nothing")
    func fedbuffSequence() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ck = dir.appendingPathComponent("m.fedk").path
        let extra = ["--strategy", "fedbuff/k=2/s=constant"]
        var server = try ServerProcess(checkpoint: ck, extra: extra)
        let c = try Self.v2Client(port: server.port, id: "mallory")
        let limit = Limits.maxMagnitude
        for v: Float in [3e38, 3e38, -3e38, -3e38] {
            #expect(Self.isRefusal(try Self.push(c, constantTensors(v), base: 0)))
        }
        #expect(try Self.served(port: server.port) == (0, true))
        // Within the bound: version 1 at limit/2 (base 0: the current version), version 2 at
        // the limit (deltas of limit/2 from base 1) ...
        for (v, base): (Float, UInt64) in [(limit / 2, 0), (limit / 2, 0), (limit, 1), (limit, 1), (limit, 1)] {
            guard case .ack = try Self.push(c, constantTensors(v), base: base) else { throw TestError("refused") }
        }
        #expect(try Self.served(port: server.port) == (2, true))
        // ... and a second delta of limit/2 from the stale base 1 would publish 1.5 x limit: refused.
        #expect(Self.isRefusal(try Self.push(c, constantTensors(limit), base: 1)))
        #expect(try Self.served(port: server.port) == (2, true))
        // Honest clients go on.
        for _ in 0..<2 {
            guard case .ack = try Self.push(c, constantTensors(0.5), base: 2) else { throw TestError("refused") }
        }
        #expect(try Self.served(port: server.port) == (3, true))
        server.kill9()
        server = try ServerProcess(checkpoint: ck, extra: extra)
        #expect(try Self.served(port: server.port) == (3, true))
        #expect(server.terminate() == 0)
    }

    @Test("--max-staleness beyond what half the memory budget holds is refused at start, naming the limit")
    func stalenessBeyondBudget() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ck = dir.appendingPathComponent("m.fedk").path
        for args in [["--max-staleness", "1000"], ["--max-staleness", "100000000000"]] {
            let r = try FedProcess.run(["server", "--port", "0", "--checkpoint", ck] + args)
            #expect(r.status != 0)
            #expect(r.output.contains("holds at most 168"), "\(r.output)")
        }
        // The largest that fits starts, and says what it takes.
        let p = Process()
        p.executableURL = FedProcess.binary
        p.arguments = ["server", "--port", "0", "--checkpoint", ck, "--max-staleness", "168"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while !text.contains("retained versions") && Date() < deadline {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(text.contains("retained versions: 168 older versions of 796840 B"), "\(text)")
    }
}
