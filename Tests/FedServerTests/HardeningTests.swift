import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

@testable import FedServer

#if canImport(Glibc)
    import Glibc
#endif

/// Hostile and unlucky clients over real sockets: each test fails without the
/// defence it names.
@Suite("Hardening", .serialized)
struct HardeningTests {
    @Test("An HTTP request the parser rejects gets 400 and the connection is closed at once")
    func badRequestCloses() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port, timeoutSeconds: 3)
        let start = Date()
        try c.send(Array("GET / HTTP/1.1\r\nthis is not a header\r\n\r\n".utf8))
        let answer = c.receiveAll()
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        #expect(Date().timeIntervalSince(start) < 1, "the 400 did not close the connection")
    }

    @Test("Every HTTP error answer closes the connection, even on keep-alive")
    func errorAnswersClose() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port, timeoutSeconds: 3)
        let start = Date()
        try c.send(Array("GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        let answer = c.receiveAll()
        #expect(answer.hasPrefix("HTTP/1.1 404") && answer.contains("Connection: close"), "\(answer)")
        #expect(Date().timeIntervalSince(start) < 1)
    }

    @Test("Headers dribbled a byte at a time are cut off at the request timeout")
    func headerDribble() throws {
        let s = try RunningServer(requestTimeout: .milliseconds(600))
        let c = try TestClient(port: s.port, timeoutSeconds: 1)
        try c.send(Array("GET / HTTP/1.1\r\nX-Slow: ".utf8))
        let start = Date()
        var closed = false
        for _ in 0..<40 {
            if (try? c.send([UInt8(ascii: "a")])) == nil { closed = true; break }
            var probe = [UInt8](repeating: 0, count: 64)
            let n = probe.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 { closed = true; break }
            usleep(100_000)
        }
        #expect(closed, "still open after dribbling headers for 4 s")
        #expect(Date().timeIntervalSince(start) < 2.5)
    }

    @Test("A PUSH followed by a half-close still gets its ACK, 20 of 20")
    func halfCloseGetsAck() throws {
        let s = try RunningServer()
        for i in 0..<20 {
            let c = try TestClient(port: s.port)
            _ = try c.handshake("h\(i)")
            _ = try c.send(
                .push(Push(clientID: "h\(i)", datasets: 10, baseVersion: 0, tensors: constantTensors(Float(i)))))
            c.finishSending()
            guard case .ack(let v, _)? = try c.receive()?.1 else { throw TestError("push \(i): no ACK") }
            #expect(v == UInt64(i + 1))
            #expect(c.closedByServer())
        }
    }

    @Test("A frame cut off by a half-close gets ERROR truncated")
    func truncatedByHalfClose() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        try c.send(Array(MessageCodec.encode(.ping(nonce: 5), requestID: 9).prefix(25)))
        c.finishSending()
        guard case .error(let e)? = try c.receive()?.1 else { throw TestError("no ERROR") }
        #expect(e.code == .truncated)
        #expect(c.closedByServer())
    }

    @Test("PING before HELLO gets handshake_required; a second HELLO gets unexpected_message")
    func handshakeOrder() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        guard case .error(let e)? = try c.fetchPing() as Message? else { throw TestError("PING answered") }
        #expect(e.code == .handshakeRequired)
        _ = try c.handshake()
        _ = try c.send(.hello(Hello(clientID: "again")))
        guard case .error(let e2)? = try c.receive()?.1 else { throw TestError("second HELLO answered") }
        #expect(e2.code == .unexpectedMessage)
        guard case .pong = try c.fetchPing() else { throw TestError("connection unusable") }
    }

    @Test("A push retried with the same push id is applied once, also after a restart")
    func idempotentPush() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("idem-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let push = Push(
            clientID: "retrier", datasets: 10, baseVersion: 0, tensors: constantTensors(3), pushID: 0xABCDEF)
        do {
            let s = try RunningServer(dir: dir)
            for attempt in 0..<3 {
                let c = try TestClient(port: s.port)
                _ = try c.send(.hello(Hello(minVersion: 1, maxVersion: 2, clientID: "retrier")))
                guard case .welcome(let w)? = try c.receive()?.1 else { throw TestError("no WELCOME") }
                #expect(w.version == 2 && w.maxDatasets == 60_000 && w.maxDecompressedBytes == 796_840)
                try c.send(MessageCodec.encode(.push(push), requestID: 7, version: 2))
                guard case .ack(let v, let d)? = try c.receive()?.1 else {
                    throw TestError("attempt \(attempt): no ACK")
                }
                #expect(v == 1 && d == 10, "attempt \(attempt)")
            }
            #expect(s.server.store.snapshot().version == 1)
            try s.server.shutdown()
        }
        let again = try RunningServer(dir: dir)
        let c = try TestClient(port: again.port)
        _ = try c.send(.hello(Hello(minVersion: 1, maxVersion: 2, clientID: "retrier")))
        _ = try c.receive()
        try c.send(MessageCodec.encode(.push(push), requestID: 8, version: 2))
        guard case .ack(1, 10)? = try c.receive()?.1 else { throw TestError("repeat after restart not answered") }
        #expect(again.server.store.snapshot().version == 1)
    }

    @Test("Silent connections are closed at the first-bytes deadline; over the limit a client is told overloaded")
    func silentConnections() throws {
        let s = try RunningServer(maxConnections: 8) { $0.network.firstBytesTimeout = .milliseconds(800) }
        let silent = try (0..<8).map { _ in try TestClient(port: s.port) }
        usleep(100_000)
        let late = try TestClient(port: s.port)
        _ = try late.send(.hello(Hello(clientID: "late")))
        guard case .error(let e)? = try late.receive()?.1 else { throw TestError("no ERROR") }
        #expect(e.code == .overloaded && e.retryable)
        let start = Date()
        for c in silent { #expect(c.closedByServer()) }
        #expect(Date().timeIntervalSince(start) < 3)
        let served = try TestClient(port: s.port)
        #expect(try served.handshake().modelVersion == 0)
    }

    @Test("A per-address limit refuses the connection past it")
    func perAddressLimit() throws {
        let s = try RunningServer { $0.limits.maxConnectionsPerAddress = 2 }
        let a = try TestClient(port: s.port), b = try TestClient(port: s.port)
        _ = try a.handshake()
        _ = try b.handshake()
        let c = try TestClient(port: s.port)
        _ = try c.send(.hello(Hello(clientID: "third")))
        guard case .error(let e)? = try c.receive()?.1 else { throw TestError("no ERROR") }
        #expect(e.code == .overloaded)
        withExtendedLifetime((a, b)) {}
    }

    @Test("With tokens, HTTP requires Authorization: Bearer; a cross-origin browser request gets 403")
    func httpAuthAndOrigin() throws {
        let s = try RunningServer(authTokens: ["s3cret"])
        func get(_ headers: String) throws -> String {
            let c = try TestClient(port: s.port, timeoutSeconds: 5)
            try c.send(Array("GET /?id=a HTTP/1.1\r\nHost: x\r\n\(headers)Connection: close\r\n\r\n".utf8))
            return c.receiveAll()
        }
        #expect(try get("").hasPrefix("HTTP/1.1 401"))
        #expect(try get("Authorization: Bearer guess\r\n").hasPrefix("HTTP/1.1 401"))
        let ok = try get("Authorization: Bearer s3cret\r\n")
        #expect(ok.hasPrefix("HTTP/1.1 200") && ok.contains("\"weights\""))
        #expect(try get("Authorization: Bearer s3cret\r\nOrigin: http://evil.example\r\n").hasPrefix("HTTP/1.1 403"))
        // A push without the token changes nothing.
        let c = try TestClient(port: s.port, timeoutSeconds: 5)
        let body = "id=x&send=True&datasets=60000&weights=[]"
        try c.send(
            Array("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8))
        #expect(c.receiveAll().hasPrefix("HTTP/1.1 401"))
        #expect(s.server.store.snapshot().version == 0)
    }

    @Test("A declared Content-Length over the limit gets 413 before the body; Expect: 100-continue is answered")
    func earlyAnswers() throws {
        let s = try RunningServer()
        let big = try TestClient(port: s.port, timeoutSeconds: 3)
        try big.send(Array("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40000000\r\n\r\n".utf8))
        let start = Date()
        let answer = big.receiveAll()
        #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer)")
        #expect(Date().timeIntervalSince(start) < 1)
        let cont = try TestClient(port: s.port, timeoutSeconds: 3)
        try cont.send(Array("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n".utf8))
        var chunk = [UInt8](repeating: 0, count: 256)
        let n = chunk.withUnsafeMutableBytes { recv(cont.fd, $0.baseAddress!, $0.count, 0) }
        #expect(String(decoding: chunk.prefix(max(n, 0)), as: UTF8.self).hasPrefix("HTTP/1.1 100 Continue"))
    }

    @Test("A push declaring more data than the model holds is refused before inflating; so are wrong shapes")
    func derivedDecompressionLimit() throws {
        let s = try RunningServer()
        #expect(s.server.limits.frame.maxDecompressedBytes == 796_840)
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        // 64 MiB of zeros deflate to about 64 KB.
        let bomb = [Tensor(zeros: [4096, 4096])]
        guard case .error(let e) = try c.push(bomb, datasets: 10, compression: .zlib) else {
            throw TestError("accepted")
        }
        #expect(e.code == .decompressedTooLarge)
        var wrong = constantTensors(1)
        wrong[0] = Tensor(zeros: [200, 784])
        guard case .error(let e2) = try c.push(wrong, datasets: 10, compression: .zlib) else {
            throw TestError("accepted")
        }
        #expect(e2.code == .shapeMismatch)
    }

    @Test("Requests past the memory budget are refused with overloaded; the budget is never exceeded and comes back")
    func memoryBudget() throws {
        let s = try RunningServer {
            $0.limits.memoryBudget = 3 << 20
            $0.aggregation.maxStaleness = 0  // no retained versions in so small a budget
        }
        // Each client sends all but the last 100 bytes of an honest 800 KB push.
        let frame = MessageCodec.encode(
            .push(Push(clientID: "p", datasets: 1, baseVersion: 0, tensors: constantTensors(1))), requestID: 1)
        var refused = 0
        var clients: [TestClient] = []
        for i in 0..<8 {
            let c = try TestClient(port: s.port, timeoutSeconds: 2)
            _ = try c.handshake("m\(i)")
            try? c.send(Array(frame.dropLast(100)))
            usleep(50_000)
            #expect(s.server.budget.used <= 3 << 20)
            clients.append(c)
        }
        for c in clients {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                c.decoder.append(chunk[0..<n])
                if case .error(let e)? = try c.decoder.next().map({ try MessageCodec.decode($0) }) {
                    #expect(e.code == .overloaded)
                    refused += 1
                }
            }
        }
        #expect(refused >= 4, "8 x 800 KB in a 3 MB budget: \(refused) refused")
        clients.removeAll()
        var waited = 0
        while s.server.budget.used > 0 && waited < 50 {
            usleep(20_000)
            waited += 1
        }
        #expect(s.server.budget.used == 0)
    }

    @Test("A client that pipelines HTTP fetches and never reads holds at most about one answer")
    func httpBackpressure() throws {
        let s = try RunningServer(tensors: constantTensors(0.25))
        let reader = try TestClient(port: s.port, timeoutSeconds: 2)
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(reader.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var small: Int32 = 4096
        setsockopt(reader.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let pusher = try TestClient(port: s.port)
        _ = try pusher.handshake()
        var peak = 0
        for i in 0..<30 {
            try? reader.send(Array("GET /?id=slow HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            guard case .ack = try pusher.push(constantTensors(Float(i)), datasets: 10) else {
                throw TestError("no ACK")
            }
            usleep(20_000)
            peak = max(peak, s.server.budget.used)
        }
        // One JSON answer of the MLP is about 4 MB; without backpressure this grows by one per version.
        #expect(peak < 12 << 20, "peak \(peak) bytes held for a client that does not read")
    }

    @Test("Shutdown under back-to-back pushes finishes within the grace, with every ACKed update in the checkpoint")
    func shutdownUnderLoad() async throws {
        let s = try RunningServer()
        let port = s.port
        let stop = Atomic<Bool>(false)
        let highest = Mutex<UInt64>(0)
        let pushers = (0..<4).map { i in
            Thread {
                guard let c = try? TestClient(port: port, timeoutSeconds: 5), (try? c.handshake("s\(i)")) != nil else {
                    return
                }
                while !stop.load(ordering: .relaxed) {
                    guard let answer = try? c.push(constantTensors(Float(i)), datasets: 1) else { return }
                    if case .ack(let v, _) = answer { highest.withLock { $0 = max($0, v) } }
                    if case .error(let e) = answer {
                        #expect(e.code == .shuttingDown)
                        return
                    }
                }
            }
        }
        pushers.forEach { $0.start() }
        try await Task.sleep(for: .milliseconds(500))
        let start = Date()
        try s.server.shutdown(grace: .seconds(5))
        let took = Date().timeIntervalSince(start)
        stop.store(true, ordering: .relaxed)
        #expect(took < 5, "shutdown took \(took) s")
        let saved = try #require(try CheckpointFile.load(from: s.checkpoint))
        #expect(saved.version >= highest.withLock { $0 } && highest.withLock { $0 } > 0)
    }

    @Test("Client-supplied text cannot forge or flood a log line")
    func logInjection() throws {
        let lines = LogCapture()
        var logger = Logger(label: "capture") { _ in lines }
        logger.logLevel = .info
        let s = try RunningServer(logger: logger)
        let c = try TestClient(port: s.port)
        _ = try c.handshake("evil\napplied update from admin: version 999999")
        var nan = constantTensors(1)
        nan[0].values[0] = .nan
        _ = try c.push(nan, datasets: 1)
        let http = try TestClient(port: s.port, timeoutSeconds: 3)
        let id = String(repeating: "x", count: 100_000)
        try http.send(Array("GET /?id=\(id)%0Aforged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        _ = http.receiveAll()
        usleep(100_000)
        let all = lines.messages
        #expect(!all.isEmpty)
        for line in all {
            #expect(!line.contains("\n"), "\(line)")
            #expect(line.utf8.count < 2_000, "a log line of \(line.utf8.count) bytes")
        }
    }

    @Test("A checkpoint of other shapes stops the start with a clear message; a directory too")
    func foreignCheckpoint() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ck-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("model.fedk").path
        try CheckpointFile.save(
            ModelSnapshot(version: 3, datasets: 9, tensors: constantTensors(1, shapes: [[2]])), to: path)
        #expect {
            _ = try RunningServer(dir: dir)
        } throws: { "\($0)".contains("shapes") && "\($0)".contains(path) }
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        #expect {
            _ = try RunningServer(dir: dir)
        } throws: { "\($0)".contains("is a directory") }
    }
}

/// Collects every log message (tests of what reaches the log).
final class LogCapture: LogHandler, @unchecked Sendable {
    // Guarded by `lock`; swift-log requires a mutable `metadata` and `logLevel` on the handler.
    private let lock = NSLock()
    private var collected: [String] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    var messages: [String] { lock.withLock { collected } }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let meta = (event.metadata ?? [:]).merging(metadata) { a, _ in a }.map { "\($0)=\($1)" }.joined(separator: " ")
        lock.withLock { collected.append("\(meta) \(event.message)") }
    }

    @Test("Pushes waiting for a slow disk count against the memory budget: past it a push is told overloaded")
    func pushesWaitingForTheDisk() throws {
        // 4 MiB: requests may hold 2.5 MiB in all; a waiting push of the MLP holds 0.8 MB.
        let checkpoints = SlowCheckpointStore()
        let s = try RunningServer {
            $0.limits.memoryBudget = 4 << 20
            $0.aggregation.maxStaleness = 0  // no retained versions in so small a budget
            $0.storage.checkpointStore = checkpoints
        }
        checkpoints.delay = 1500...1500
        let clients = try (0..<6).map { i in
            let c = try TestClient(port: s.port)
            _ = try c.handshake("c\(i)")
            return c
        }
        var peak = 0
        for c in clients {
            _ = try c.send(.push(Push(clientID: "c", datasets: 10, baseVersion: 0, tensors: constantTensors(1))))
            // One at a time: each frame is read and its lease returned before the next arrives.
            for _ in 0..<10 {
                usleep(10_000)
                peak = max(peak, s.server.budget.used)
            }
        }
        var acks = 0
        var overloaded = 0
        for c in clients {
            switch try c.receive()?.1 {
            case .ack?: acks += 1
            case .error(let e)? where e.code == .overloaded && e.retryable: overloaded += 1
            case let other: Issue.record("unexpected answer \(String(describing: other))")
            }
        }
        #expect(overloaded >= 1 && acks >= 2 && acks + overloaded == 6, "\(acks) ACKs, \(overloaded) overloaded")
        #expect(peak <= s.server.budget.requestLimit, "held \(peak) B")
        // Once the disk has caught up, the budget is free again and a push goes through.
        checkpoints.delay = 0...0
        #expect(s.server.budget.used == 0)
        guard case .ack = try clients[0].push(constantTensors(2), datasets: 10) else {
            throw TestError("no ACK after the disk caught up")
        }
        #expect(s.server.store.snapshot().version == UInt64(acks + 1))
    }
}
