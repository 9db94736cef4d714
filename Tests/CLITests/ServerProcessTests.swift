import FedCodec
import FedTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A `fed server` process on a free port, for tests that need a real process. Sendable
/// so that `terminate` can wait on another thread: its properties are constants, and
/// Process and Pipe may be used from any thread.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let port: Int
    private let output = Pipe()

    init(checkpoint: String, port requested: Int = 0, extra: [String] = []) throws {
        process.executableURL = FedProcess.binary
        process.arguments =
            ["server", "--port", String(requested), "--checkpoint", checkpoint, "--log-level", "warning"] + extra
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        // Wait (bounded) for "listening on HOST:PORT".
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while !text.contains("\n") && Date() < deadline {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard let line = text.split(separator: "\n").first, line.hasPrefix("listening on "),
            let port = Int(line.split(separator: ":").last ?? "")
        else {
            process.terminate()
            throw TestError("server did not start: \(text)")
        }
        self.port = port
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM, then the exit status; a server still running after 20 s is
    /// killed and reported as -1, so no test can hang here.
    func terminate() -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill9()
            return -1
        }
        return process.terminationStatus
    }

    /// `terminate()`, waited for off the cooperative pool (`offPool`): the test is suspended meanwhile.
    func terminate() async throws -> Int32 {
        try await offPool { self.terminate() }
    }

    deinit {
        if process.isRunning { kill9() }
    }
}

@Suite("fed server process", .serialized)
struct ServerProcessTests {
    @Test("A Python standard-library client of the original HTTP protocol works unchanged")
    func originalHTTPClient() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try ServerProcess(checkpoint: dir.appendingPathComponent("m.fedk").path)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "original_http_client.py")
        let port = server.port
        let (status, data) = try await offPool {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", script.path, String(port)]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, data)
        }
        #expect(status == 0)
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(report["fetch_status"] as? Int == 200)
        #expect(report["fetch_keys"] as? [String] == ["datasets", "id", "weights"])
        #expect(report["shapes_ok"] as? Bool == true)
        #expect(report["push_status"] as? Int == 200 && report["push_body"] as? String == "Success")
        #expect(report["nan_status"] as? Int == 400 && report["nan_error"] as? String == "non_finite_value")
        #expect(report["huge_datasets_status"] as? Int == 400)
        #expect(report["huge_datasets_error"] as? String == "invalid_datasets")
        #expect(report["wrong_shape_error"] as? String == "shape_mismatch")
        #expect(report["datasets_after"] as? Int == 5000)
        #expect(report["b3_after"] as? [Double] == [0.25, 0.25, 0.25])
        // The original's fetch is 4,350,666 bytes; ours is the same JSON within 1%.
        let bytes = try #require(report["fetch_bytes"] as? Int)
        #expect(abs(Double(bytes) - 4_350_666) / 4_350_666 < 0.01, "\(bytes) bytes")
        #expect(try await server.terminate() == 0)
    }

    @Test("kill -9 during a stream of updates loses no acknowledged update")
    func killNine() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.fedk").path
        let server = try ServerProcess(checkpoint: path)
        let client = try TestClient(port: server.port)
        _ = try client.handshake()
        var lastAcked: UInt64 = 0
        // Pipeline pushes without waiting, and kill the server while they stream.
        let pid = server.process.processIdentifier
        let killer = Thread {
            usleep(150_000)
            kill(pid, SIGKILL)
        }
        killer.start()
        var sent = 0
        while sent < 10_000 {
            do {
                _ = try client.send(
                    .push(
                        Push(
                            clientID: "k", datasets: 10, baseVersion: 0, tensors: constantTensors(Float(sent)),
                            compression: .none)))
                sent += 1
                if sent % 4 == 0 {
                    while let (_, m) = try client.receive() {
                        if case .ack(let v, _) = m { lastAcked = max(lastAcked, v) }
                        if client.decoder.bufferedByteCount == 0 { break }
                    }
                }
            } catch {
                break
            }
        }
        server.process.waitUntilExit()
        #expect(lastAcked > 0, "no update was acknowledged before the kill")
        let restarted = try ServerProcess(checkpoint: path)
        let c2 = try TestClient(port: restarted.port)
        let welcome = try c2.handshake()
        // Every acknowledged update survived; at most the one in flight was also written.
        #expect(welcome.modelVersion >= lastAcked, "restarted at \(welcome.modelVersion), \(lastAcked) acknowledged")
        #expect(welcome.datasets == welcome.modelVersion * 10)
        #expect(restarted.terminate() == 0)
    }

    @Test("fedbuff: updates acknowledged while buffered survive kill -9 and are combined after the restart")
    func bufferedAcrossKill() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.fedk").path
        let strategy = ["--strategy", "fedbuff/k=3/s=constant"]
        let server = try ServerProcess(checkpoint: path, extra: strategy)
        for i in 0..<2 {
            let c = try TestClient(port: server.port)
            _ = try c.handshake("b\(i)")
            guard case .ack(let v, let d) = try c.push(constantTensors(Float(i + 1)), datasets: 100) else {
                throw TestError("push \(i) not acknowledged")
            }
            #expect(v == 0 && d == 0, "a buffered update leaves the model at version 0")
        }
        server.kill9()
        let restarted = try ServerProcess(checkpoint: path, extra: strategy)
        let c = try TestClient(port: restarted.port)
        _ = try c.handshake("b2")
        guard case .ack(let v, let d) = try c.push(constantTensors(3), datasets: 100) else {
            throw TestError("third push not acknowledged")
        }
        // The two buffered before the kill and this one: combined into version 1.
        #expect(v == 1 && d == 300)
        guard case .model(let m) = try c.fetch() else { throw TestError("no MODEL") }
        // W0 + mean(Wc - W0) over Wc = 1, 2, 3 (equal samples): 2 wherever W0 started.
        #expect(m.tensors.allSatisfy { $0.values.allSatisfy { abs($0 - 2) < 1e-5 } })
        #expect(restarted.terminate() == 0)
    }

    @Test("Tokens from --auth-token-file admit their holders and no one else; an empty file stops the server")
    func tokenFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("tokens").path
        try "# one token a line\nalpha\n\n  beta  \n".write(toFile: file, atomically: true, encoding: .utf8)
        let server = try ServerProcess(
            checkpoint: dir.appendingPathComponent("m.fedk").path, extra: ["--auth-token-file", file])
        for (token, admitted) in [("beta", true), ("alpha", true), ("gamma", false), ("", false)] {
            let c = try TestClient(port: server.port)
            _ = try c.send(.hello(Hello(clientID: "t", authToken: token)))
            let answer = try c.receive()?.1
            if admitted {
                guard case .welcome? = answer else { throw TestError("\(token) refused") }
            } else {
                guard case .error(let e)? = answer, e.code == .unauthorized else {
                    throw TestError("\(token) admitted")
                }
            }
        }
        #expect(server.terminate() == 0)
        try "# nothing\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try FedProcess.run(["server", "--port", "0", "--auth-token-file", file])
        #expect(r.status != 0 && r.output.contains("holds no token"), "\(r.output)")
    }

    @Test("SIGTERM writes the checkpoint and exits 0; a corrupt checkpoint stops the server")
    func gracefulStopAndCorruptCheckpoint() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.fedk").path
        let server = try ServerProcess(checkpoint: path, extra: ["--save-every", "100"])
        let c = try TestClient(port: server.port)
        _ = try c.handshake()
        guard case .ack(1, 10) = try c.push(constantTensors(3), datasets: 10) else { throw TestError("no ack") }
        #expect(server.terminate() == 0)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(try Checkpoint.decode(bytes).version == 1)
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: path))
        let r = try FedProcess.run(["server", "--port", "0", "--checkpoint", path])
        #expect(r.status != 0)
        #expect(r.output.contains("not a usable checkpoint"))
    }
}

@Suite("fed server limits", .serialized)
struct ServerLimitTests {
    @Test("A client that pipelines fetches and never reads does not make the server buffer without bound")
    func backpressure() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try ServerProcess(checkpoint: dir.appendingPathComponent("m.fedk").path)
        let c = try TestClient(port: server.port, timeoutSeconds: 2)
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = try c.handshake()
        // 20,000 fetches ask for 16 GB of answers; the client reads none of them.
        var frames: [UInt8] = []
        for i in 0..<20_000 {
            frames += MessageCodec.encode(.fetch(heldVersion: 0, compression: .none), requestID: UInt32(i + 10))
        }
        try? c.send(frames)  // stops with a send timeout once the server stops reading
        try await Task.sleep(for: .seconds(1))
        let rss = residentMegabytes(server.process.processIdentifier)
        #expect(rss > 0 && rss < 150, "server resident memory \(rss) MB")
        // Another client is still served promptly.
        let other = try TestClient(port: server.port)
        _ = try other.handshake()
        guard case .model = try other.fetch() else { throw TestError("other client not served") }
    }

    @Test("An HTTP body over the limit gets 413 and the model is unchanged")
    func bodyLimit() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try ServerProcess(
            checkpoint: dir.appendingPathComponent("m.fedk").path, extra: ["--max-body", "100000"])
        let c = try TestClient(port: server.port)
        let body = "id=x&send=True&datasets=10&weights=" + String(repeating: "1", count: 200_000)
        try c.send(
            Array(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                    .utf8))
        var answer = [UInt8](repeating: 0, count: 4096)
        let n = answer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress!, $0.count, 0) }
        let text = String(decoding: answer.prefix(max(n, 0)), as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 413"), "\(text)")
        let check = try TestClient(port: server.port)
        #expect(try check.handshake().modelVersion == 0)
    }
}
