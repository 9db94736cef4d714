import FedCodec
import FedTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A `fed client` process. Sendable so that `finish` can wait on another thread: its
/// properties are constants, and Process and Pipe may be used from any thread.
final class ClientProcess: @unchecked Sendable {
    let process = Process()
    private let output = Pipe()

    init(port: Int, id: String, range: (Int, Int), extra: [String] = []) throws {
        process.executableURL = FedProcess.binary
        process.arguments =
            [
                "client", "--server", "127.0.0.1:\(port)", "--id", id, "--range", String(range.0), String(range.1),
                "--data", FedProcess.mnist, "--epochs", "2",
            ] + extra
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    /// Waits for the end; returns the exit status and everything printed.
    func finish() -> (Int32, String) {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// `finish()`, waited for off the cooperative pool (`offPool`): the test is suspended meanwhile.
    func finish() async throws -> (Int32, String) {
        try await offPool { self.finish() }
    }

    /// `pushes accepted N` from the summary line.
    static func accepted(_ text: String) -> Int? {
        guard let r = text.range(of: "pushes accepted ") else { return nil }
        return Int(text[r.upperBound...].prefix { $0.isNumber })
    }
}

@Suite("Federated sessions", .serialized)
struct FederationTests {
    @Test("Three clients and a server run to completion: 12 updates applied")
    func threeClients() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try ServerProcess(checkpoint: dir.appendingPathComponent("m.fedk").path)
        let clients = try [(1, 4), (5, 8), (9, 12)].enumerated().map { i, r in
            try ClientProcess(port: server.port, id: "c\(i)", range: r)
        }
        for c in clients {
            let (status, text) = try await c.finish()
            #expect(status == 0, "\(text)")
            #expect(ClientProcess.accepted(text) == 4, "\(text)")
        }
        let check = try TestClient(port: server.port)
        #expect(try check.handshake().modelVersion == 12)
        #expect(try await server.terminate() == 0)
    }

    @Test("The server killed with -9 and restarted mid-run: every client finishes, no acknowledged update lost")
    func serverRestart() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.fedk").path
        let port = reservePort()
        let server = try ServerProcess(checkpoint: path, port: port)
        let clients = try [(1, 6), (7, 12)].enumerated().map { i, r in
            try ClientProcess(port: port, id: "r\(i)", range: r, extra: ["--deadline", "60", "--epochs", "5"])
        }
        // The kill lands mid-run on any machine: right after the first update is applied, 11 to
        // come. Then 1.5 s without a server. Timed on a thread of its own, not on the pool.
        let (applied, restarted) = try await offPool {
            var applied = false
            for _ in 0..<1500 where !applied {  // at most about 30 s
                applied = ((try? TestClient(port: port).handshake("observer").modelVersion) ?? 0) >= 1
                if !applied { usleep(20_000) }
            }
            server.kill9()
            usleep(1_500_000)
            return (applied, try ServerProcess(checkpoint: path, port: port))
        }
        #expect(applied, "no update was applied within 30 s")
        var accepted = 0
        var retried = false
        for c in clients {
            let (status, text) = try await c.finish()
            #expect(status == 0, "\(text)")
            accepted += ClientProcess.accepted(text) ?? 0
            retried = retried || text.contains("retry 1 in")
        }
        #expect(retried, "the kill should have interrupted the clients")
        let check = try TestClient(port: port)
        let version = try check.handshake().modelVersion
        // Each acknowledged push is exactly one version on the server: a push applied
        // just before the kill whose ACK was lost is retried with the same push id
        // and answered with its original ACK, not applied again.
        #expect(version == UInt64(accepted), "server at \(version), \(accepted) pushes acknowledged")
        #expect(accepted >= 10, "pushes after the restart must go through: \(accepted) of 12")
        #expect(try await restarted.terminate() == 0)
    }

    @Test("A client whose server never appears gives up at its deadline with a clear message")
    func noServer() async throws {
        let start = Date()
        let c = try ClientProcess(
            port: reservePort(), id: "lonely", range: (1, 1), extra: ["--deadline", "2", "--epochs", "1"])
        let (status, text) = try await c.finish()
        #expect(status != 0)
        #expect(text.contains("gave up at the retry deadline"), "\(text)")
        #expect(text.contains("connection refused"))
        #expect(Date().timeIntervalSince(start) < 30)
    }

    @Test("A Python standard-library client of the original HTTP protocol takes part with binary clients")
    func mixedSession() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try ServerProcess(checkpoint: dir.appendingPathComponent("m.fedk").path)
        let binary = try ClientProcess(port: server.port, id: "bin", range: (1, 4))
        let http = try ClientProcess(
            port: server.port, id: "swift-http", range: (5, 6), extra: ["--transport", "http"])
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "original_http_client.py")
        let port = server.port
        let (pyStatus, pyText) = try await offPool {
            let py = Process()
            py.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            py.arguments = ["python3", script.path, String(port), "session", "3"]
            let out = Pipe()
            py.standardOutput = out
            try py.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            py.waitUntilExit()
            return (py.terminationStatus, text)
        }
        #expect(pyStatus == 0)
        #expect(pyText.contains("\"pushes\": 3"))
        let (s1, t1) = try await binary.finish()
        let (s2, t2) = try await http.finish()
        #expect(s1 == 0 && s2 == 0, "\(t1)\n\(t2)")
        #expect(ClientProcess.accepted(t1) == 4 && ClientProcess.accepted(t2) == 2)
        let check = try TestClient(port: server.port)
        #expect(try check.handshake().modelVersion == 4 + 2 + 3)
        #expect(try await server.terminate() == 0)
    }

    @Test("fed demo: the federated model beats one client's share alone, above a floor of 0.85")
    func demo() async throws {
        let r = try await FedProcess.run(["demo", "--data", FedProcess.mnist, "--epochs", "5"])
        #expect(r.status == 0, "\(r.output)")
        func accuracy(after marker: String) -> Double? {
            guard let range = r.output.range(of: marker) else { return nil }
            let rest = r.output[range.upperBound...]
            guard let a = rest.range(of: "accuracy ") else { return nil }
            return Double(rest[a.upperBound...].prefix { $0.isNumber || $0 == "." })
        }
        let federated = try #require(accuracy(after: "federated model"))
        let alone = try #require(accuracy(after: "one client's share alone"))
        #expect(federated >= 0.85, "\(r.output)")
        #expect(federated > alone, "\(r.output)")
        #expect(r.output.contains("the original's JSON would have moved"))
    }
}
