import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Testing

@testable import FedServer

/// A server on 127.0.0.1 and a free port, with its checkpoint in a temporary folder.
final class RunningServer {
    let server: FederatedServer
    let dir: URL
    var port: Int { server.localPort }
    var checkpoint: String { dir.appendingPathComponent("model.fedk").path }

    init(
        tensors: [Tensor] = constantTensors(0), requestTimeout: Duration = .seconds(10), maxConnections: Int = 256,
        idleTimeout: Duration = .seconds(300), authTokens: Set<String> = [], serveHTTP: Bool = true,
        dir existing: URL? = nil, logger given: Logger? = nil, configure: (inout ServerConfiguration) -> Void = { _ in }
    ) throws {
        dir = existing ?? FileManager.default.temporaryDirectory.appendingPathComponent("srv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var configuration = ServerConfiguration(
            network: .init(port: 0, idleTimeout: idleTimeout, requestTimeout: requestTimeout),
            limits: .init(maxConnections: maxConnections),
            storage: .init(checkpointPath: dir.appendingPathComponent("model.fedk").path),
            security: .init(authTokens: authTokens), http: .init(enabled: serveHTTP))
        configure(&configuration)
        server = try FederatedServer.start(
            configuration: configuration, initial: tensors, logger: given ?? logger, threads: 2)
        keepDir = existing != nil
    }

    private let keepDir: Bool

    deinit {
        if !server.isDraining { try? server.shutdown(grace: .milliseconds(200)) }
        if !keepDir { try? FileManager.default.removeItem(at: dir) }
    }
}

@Suite("Server over TCP", .serialized)
struct ServerTests {
    @Test("Handshake, fetch, unchanged fetch, push, ack, and a rejected push that changes nothing")
    func session() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        let welcome = try c.handshake()
        #expect(welcome.version == 1 && welcome.modelVersion == 0 && welcome.compressions == 0b111)
        guard case .model(let m0) = try c.fetch(compression: .shuffleZlib) else { throw TestError("no MODEL") }
        #expect(m0.version == 0 && m0.tensors == constantTensors(0) && m0.compression == .shuffleZlib)
        guard case .model = try c.fetch(held: 0) else { throw TestError("held 0 means none: expected MODEL") }
        let pushed = try c.push(constantTensors(2), datasets: 5000, compression: .zlib)
        guard case .ack(1, 5000) = pushed else {
            throw TestError("no ACK: \(pushed)")
        }
        var nan = constantTensors(1)
        nan[5].values[3] = .nan
        guard case .error(let e) = try c.push(nan, datasets: 5000) else { throw TestError("NaN accepted") }
        #expect(e.code == .nonFiniteValue && !e.retryable)
        guard case .error(let e2) = try c.push(constantTensors(1), datasets: 2_000_000) else {
            throw TestError("accepted")
        }
        #expect(e2.code == .invalidDatasets)
        guard case .model(let m1) = try c.fetch(held: 0) else { throw TestError("no MODEL") }
        #expect(m1.version == 1 && m1.datasets == 5000 && m1.tensors == constantTensors(2))
        guard case .modelUnchanged(1, 5000) = try c.fetch(held: 1) else { throw TestError("expected unchanged") }
        // The acknowledged update is in the checkpoint.
        #expect(try CheckpointFile.load(from: s.checkpoint)?.version == 1)
    }

    @Test("A HELLO with no common version gets unsupported_version naming ours, then the server goes on")
    func noCommonVersion() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        _ = try c.send(.hello(Hello(minVersion: 5, maxVersion: 9, clientID: "future")))
        guard case .error(let e)? = try c.receive()?.1 else { throw TestError("no ERROR") }
        #expect(e.code == .unsupportedVersion && e.minVersion == 1 && e.maxVersion == 4)
        #expect(c.closedByServer())
        let other = try TestClient(port: s.port)
        #expect(try other.handshake().version == 1)
    }

    @Test("Requests before HELLO are refused; pipelined requests are answered in order")
    func pipelining() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        _ = try c.send(.fetch(heldVersion: 0, compression: .none))
        guard case .error(let e)? = try c.receive()?.1 else { throw TestError("no error") }
        #expect(e.code == .handshakeRequired)
        var bytes: [UInt8] = []
        let messages: [Message] = [
            .hello(Hello(clientID: "p")), .fetch(heldVersion: 0, compression: .zlib), .ping(nonce: 9),
            .fetch(heldVersion: 0, compression: .none), .ping(nonce: 10),
        ]
        for (i, m) in messages.enumerated() { bytes += MessageCodec.encode(m, requestID: UInt32(100 + i)) }
        // One byte at a time: the server must reassemble every frame.
        for b in bytes { try c.send([b]) }
        var ids: [UInt32] = []
        var kinds: [MessageType] = []
        for _ in messages {
            guard let (id, m) = try c.receive() else { throw TestError("closed early") }
            ids.append(id)
            kinds.append(m.type)
        }
        #expect(ids == [100, 101, 102, 103, 104])
        #expect(kinds == [.welcome, .model, .pong, .model, .pong])
    }

    @Test("Every invalid golden vector gets its error over a socket while another client is served")
    func invalidVectors() throws {
        let s = try RunningServer()
        let other = try TestClient(port: s.port)
        _ = try other.handshake("bystander")
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Protocol/vectors")
        let manifest =
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
            as! [String: Any]
        var checked = 0
        for v in manifest["vectors"] as! [[String: Any]] {
            guard v["kind"] as? String == "stream", let error = v["error"] as? [String: Any] else { continue }
            let name = v["name"] as! String
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(v["file"] as! String)))
            let code = ErrorCode(rawValue: UInt16(error["code"] as! Int))
            let c = try TestClient(port: s.port)
            if name == "bad_magic" {
                // Starts with an HTTP request line: it goes to the HTTP layer, which must not crash.
                try c.send(bytes)
                c.finishSending()
                #expect(c.closedByServer(), "\(name)")
                continue
            }
            try c.send(bytes)
            c.finishSending()
            do {
                // A stream that ends inside a frame gets ERROR truncated (SPEC.md 2.1), even inside the magic.
                var got: ErrorCode?
                while let (_, m) = try c.receive() {
                    // A whole PING ahead of the garbage is answered first: before HELLO, with handshake_required.
                    if case .error(let e) = m, e.code != .handshakeRequired || code == .handshakeRequired {
                        got = e.code
                        break
                    }
                }
                #expect(got == code, "\(name): got \(String(describing: got)), want \(code)")
                if code.isFatalToStream { #expect(c.closedByServer(), "\(name) must close the connection") }
            }
            // The bystander is still served.
            guard case .model = try other.fetch(held: 0) else { throw TestError("bystander not served after \(name)") }
            checked += 1
        }
        #expect(checked >= 30)
    }

    @Test("64 concurrent clients push and every update is acknowledged once")
    func concurrentClients() async throws {
        let s = try RunningServer(maxConnections: 100)
        let port = s.port
        let acks = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for i in 0..<64 {
                group.addTask {
                    let c = try TestClient(port: port, timeoutSeconds: 30)
                    _ = try c.handshake("c\(i)")
                    guard case .model = try c.fetch(compression: .shuffleZlib) else { throw TestError("no model") }
                    guard case .ack(let v, _) = try c.push(constantTensors(Float(i)), datasets: 10) else {
                        throw TestError("no ack")
                    }
                    return v
                }
            }
            var all: [UInt64] = []
            for try await v in group { all.append(v) }
            return all
        }
        #expect(Set(acks) == Set(1...64))
        #expect(s.server.store.snapshot().datasets == 640)
    }

    @Test("A client that stalls mid-frame is dropped at the request deadline; others are unaffected")
    func stalledClient() throws {
        let s = try RunningServer(requestTimeout: .milliseconds(300))
        let staller = try TestClient(port: s.port)
        try staller.send(Array(MessageCodec.encode(.ping(nonce: 1), requestID: 1).prefix(10)))
        let other = try TestClient(port: s.port)
        _ = try other.handshake()
        let start = Date()
        #expect(staller.closedByServer())
        #expect(Date().timeIntervalSince(start) < 5)
        guard case .model = try other.fetch(held: 0) else { throw TestError("other not served") }
    }

    @Test("A connection silent for the idle timeout is closed; an active one is not")
    func idleTimeout() throws {
        let s = try RunningServer(idleTimeout: .milliseconds(500))
        let idle = try TestClient(port: s.port)
        _ = try idle.handshake()
        let active = try TestClient(port: s.port)
        _ = try active.handshake()
        for _ in 0..<8 {
            usleep(150_000)
            guard case .pong = try active.fetchPing() else { throw TestError("active client dropped") }
        }
        #expect(idle.closedByServer())
    }

    @Test(
        "An HTTP request cut off mid-body is dropped at the request deadline; a silent connection at the idle timeout")
    func stalledHTTPAndSilentConnection() throws {
        let s = try RunningServer(requestTimeout: .milliseconds(300), idleTimeout: .milliseconds(700))
        let http = try TestClient(port: s.port)
        try http.send(Array("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nid=a".utf8))
        let silent = try TestClient(port: s.port)  // never sends a byte: no protocol known yet
        let start = Date()
        #expect(http.closedByServer())
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(silent.closedByServer())
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test("With auth tokens, HELLO without a known token gets unauthorized and is closed; HTTP can be turned off")
    func authentication() throws {
        let s = try RunningServer(authTokens: ["s3cret"], serveHTTP: false)
        for token in ["", "guess"] {
            let c = try TestClient(port: s.port)
            _ = try c.send(.hello(Hello(clientID: "x", authToken: token)))
            guard case .error(let e)? = try c.receive()?.1 else { throw TestError("no ERROR") }
            #expect(e.code == .unauthorized)
            #expect(c.closedByServer())
        }
        let ok = try TestClient(port: s.port)
        _ = try ok.send(.hello(Hello(clientID: "x", authToken: "s3cret")))
        guard case .welcome? = try ok.receive()?.1 else { throw TestError("token refused") }
        let http = try TestClient(port: s.port)
        try http.send(Array("GET /?id=a HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(http.closedByServer())
    }

    @Test("A connection over the limit is told overloaded (binary) or 503 (HTTP), then closed")
    func connectionLimit() throws {
        let s = try RunningServer(maxConnections: 2)
        let a = try TestClient(port: s.port), b = try TestClient(port: s.port)
        _ = try a.handshake()
        _ = try b.handshake()
        let c = try TestClient(port: s.port)
        _ = try c.send(.hello(Hello(clientID: "late")))
        guard case .error(let e)? = try c.receive()?.1 else { throw TestError("no ERROR") }
        #expect(e.code == .overloaded && e.retryable)
        #expect(c.closedByServer())
        let h = try TestClient(port: s.port)
        try h.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        let answer = h.receiveAll()
        #expect(answer.hasPrefix("HTTP/1.1 503"), "\(answer)")
        withExtendedLifetime((a, b)) {}
    }

    @Test(
        "Garbage that is neither FEDW nor HTTP gets ERROR bad_magic, then is closed",
        arguments: [
            [0x16, 0x03, 0x01, 0x00], [0x00, 0x01, 0x02, 0x03], Array("FEDX".utf8), Array("HELO".utf8),
        ])
    func garbage(_ bytes: [UInt8]) throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        try c.send(bytes)
        guard case .error(let e)? = try c.receive()?.1 else { throw TestError("no ERROR for \(bytes)") }
        #expect(e.code == .badMagic)
        #expect(c.closedByServer())
    }
}

extension TestClient {
    func fetchPing() throws -> Message {
        _ = try send(.ping(nonce: 1))
        guard let (_, m) = try receive() else { throw TestError("closed") }
        return m
    }
}

@Suite("Server lifecycle", .serialized)
struct LifecycleTests {
    @Test(
        "run() in a ServiceGroup binds and reports the address; a graceful shutdown drains, writes the checkpoint and returns; an injected group stays up"
    )
    func serviceGroup() async throws {
        let dir = try temporaryDirectory("lifecycle")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.fedk").path
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = try FederatedServer(
            configuration: ServerConfiguration(network: .init(port: 0), storage: .init(checkpointPath: path)),
            initial: constantTensors(0),
            logger: logger, eventLoopGroup: loops)
        let group = ServiceGroup(services: [server], logger: logger)
        let running = Task { try await group.run() }
        let port = try #require(try await server.boundAddress.port)
        #expect(port != 0 && port == server.localPort)
        let c = try TestClient(port: port)
        _ = try c.handshake()
        guard case .ack = try c.push(constantTensors(1), datasets: 10) else { throw TestError("no ACK") }
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(server.isDraining)
        #expect(try CheckpointFile.load(from: path)?.version == 1)
        // The injected group was not shut down with the server.
        #expect(try await loops.next().submit { 42 }.get() == 42)
        try await loops.shutdownGracefully()
    }

    @Test("run() on a port already bound throws the bind's error, and so does boundAddress; the server is stopped")
    func bindFailure() async throws {
        let dir = try temporaryDirectory("lifecycle")
        defer { try? FileManager.default.removeItem(at: dir) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let first = try FederatedServer.start(
            configuration: ServerConfiguration(
                network: .init(port: 0), storage: .init(checkpointPath: dir.appendingPathComponent("a.fedk").path)),
            initial: constantTensors(0), logger: logger, threads: 1)
        defer { try? first.shutdown(grace: .milliseconds(100)) }
        let second = try FederatedServer(
            configuration: ServerConfiguration(
                network: .init(port: first.localPort),
                storage: .init(checkpointPath: dir.appendingPathComponent("b.fedk").path)),
            initial: constantTensors(0), logger: logger, threads: 1)
        await #expect(throws: IOError.self) { try await second.run() }
        await #expect(throws: IOError.self) { _ = try await second.boundAddress }
        try second.shutdown()  // already stopped: returns at once
    }

    @Test("Cancelling the task that runs the server shuts it down")
    func cancellation() async throws {
        let dir = try temporaryDirectory("lifecycle")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.fedk").path
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = try FederatedServer.start(
            configuration: ServerConfiguration(network: .init(port: 0), storage: .init(checkpointPath: path)),
            initial: constantTensors(0),
            logger: logger, threads: 1)
        let running = Task { try await server.run() }
        try await Task.sleep(for: .milliseconds(100))
        running.cancel()
        try await running.value
        #expect(server.isDraining)
        #expect(try CheckpointFile.load(from: path) != nil)
        try server.shutdown()  // a second shutdown returns at once
    }
}
