import FedBench
import FedClient
import FedCodec
import FedTestSupport
import Foundation
import Testing

/// `fed server` with TLS, against clients nobody here wrote (openssl s_client,
/// curl) and the library's own async client.
@Suite("TLS", .serialized)
struct TLSTests {
    static func program(_ name: String) -> String? {
        ["/usr/bin/\(name)", "/bin/\(name)", "/usr/local/bin/\(name)"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    /// A TLS server (its files, its folder) for one test.
    static func server(_ extra: [String] = [], clientCA: Bool = false) throws -> (ServerProcess, TLSFiles, URL) {
        let dir = try temporaryDirectory("tls")
        let files = try TLSFiles.make(in: dir.appendingPathComponent("pki").path)
        let server = try ServerProcess(
            checkpoint: dir.appendingPathComponent("m.fedk").path,
            extra: files.serverArguments(clientCA: clientCA) + extra)
        return (server, files, dir)
    }

    static func client(_ port: Int, _ tls: FederationClient.TLS?, host: String = "localhost") -> FederationClient {
        FederationClient(
            host: host, port: port,
            configuration: .init(clientID: "tls-test", retryPolicy: RetryPolicy(maxAttempts: 1), tls: tls))
    }

    static func failure(_ client: FederationClient) async -> ClientError? {
        do {
            _ = try await client.fetch()
            return nil
        } catch { return error }
    }

    @Test(
        "openssl s_client completes a handshake and verifies the certificate; curl fetches the original's JSON over HTTPS"
    )
    func realClients() throws {
        let (server, files, dir) = try Self.server()
        defer { try? FileManager.default.removeItem(at: dir) }
        guard let openssl = Self.program("openssl"), let curl = Self.program("curl") else {
            Issue.record("openssl and curl are needed (.ci/run installs them)")
            return
        }
        let s = try runProgram(
            openssl,
            [
                "s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "localhost", "-CAfile",
                files.caCertificate, "-verify_return_error", "-verify_hostname", "localhost",
            ])
        let text = String(decoding: s.output, as: UTF8.self)
        #expect(s.status == 0 && text.contains("Verify return code: 0 (ok)"), "\(text)")

        let r = try runProgram(
            curl,
            [
                "-sS", "--cacert", files.caCertificate, "-d", "id=curl&send=False",
                "https://localhost:\(server.port)/",
            ], mergeErrors: false)
        let body = String(decoding: r.output, as: UTF8.self)
        #expect(r.status == 0 && body.hasPrefix("{\"id\"") && body.contains("\"weights\""), "\(body.prefix(300))")
        #expect(r.output.count > 1_000_000)  // the MLP's weights as JSON

        // curl refuses the server when it does not trust the CA (its own check, not ours).
        let untrusted = try runProgram(
            curl, ["-sS", "--cacert", files.otherCACertificate, "https://localhost:\(server.port)/v1/model"])
        #expect(untrusted.status != 0)
    }

    @Test("Clear text on a TLS port is refused: binary gets ERROR unauthorized, HTTP gets 400")
    func clearTextRefused() throws {
        let (server, _, dir) = try Self.server()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try TestClient(port: server.port)
        _ = try c.send(.hello(Hello(clientID: "plain")))
        guard case .error(let e)? = try c.receive()?.1 else {
            Issue.record("expected ERROR")
            return
        }
        #expect(e.code == .unauthorized && e.message.contains("TLS"))
        if let curl = Self.program("curl") {
            let r = try runProgram(
                curl, ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(server.port)/v1/model"])
            #expect(String(decoding: r.output, as: UTF8.self) == "400")
        }
    }

    @Test("The async client over TLS; refused with a clear message for a wrong CA and a wrong host name")
    func asyncClient() async throws {
        let (server, files, dir) = try Self.server()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = Self.client(server.port, files.client())
        guard case .model = try await good.fetch() else {
            Issue.record("no model over TLS")
            return
        }
        let ack = try await good.push(constantTensors(0.1), datasets: 10, baseVersion: 0)
        #expect(ack.version == 1)
        // By address, with the name to check given apart.
        guard case .model = try await Self.client(server.port, files.client(), host: "127.0.0.1").fetch() else {
            Issue.record("no model from 127.0.0.1")
            return
        }
        // By address alone: the certificate names no address, so the client refuses it.
        var byAddress = files.client()
        byAddress.serverName = nil
        let unnamed = await Self.failure(Self.client(server.port, byAddress, host: "127.0.0.1"))
        #expect(unnamed?.code == .tlsFailure, "\(String(describing: unnamed)) \(String(describing: unnamed?.cause))")

        let wrongCA = await Self.failure(
            Self.client(server.port, FederationClient.TLS(trustRoots: .pemFile(files.otherCACertificate))))
        #expect(wrongCA?.code == .tlsFailure && wrongCA?.isRetryable == false)
        #expect(wrongCA?.message.contains("not signed by a trusted CA") == true, "\(String(describing: wrongCA))")

        var misnamed = files.client()
        misnamed.serverName = "fed.example.org"
        let wrongName = await Self.failure(Self.client(server.port, misnamed))
        #expect(wrongName?.code == .tlsFailure)
        #expect(wrongName?.message.contains("not for") == true, "\(String(describing: wrongName))")

        // A clear-text client on the TLS port is told so.
        let plain = await Self.failure(Self.client(server.port, nil))
        #expect(plain?.code == .server(.unauthorized), "\(String(describing: plain))")
    }

    @Test("Mutual TLS: a client without a certificate is refused, one with a certificate of the CA is served")
    func mutual() async throws {
        let (server, files, dir) = try Self.server(clientCA: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let without = await Self.failure(Self.client(server.port, files.client()))
        #expect(without?.code == .tlsFailure, "\(String(describing: without))")
        #expect(without?.message.contains("client certificate") == true, "\(String(describing: without))")
        guard case .model = try await Self.client(server.port, files.client(withCertificate: true)).fetch() else {
            Issue.record("no model with a client certificate")
            return
        }
        if let openssl = Self.program("openssl") {
            let s = try runProgram(
                openssl,
                [
                    "s_client", "-connect", "127.0.0.1:\(server.port)", "-CAfile", files.caCertificate, "-cert",
                    files.clientCertificate, "-key", files.clientKey, "-verify_return_error",
                ])
            #expect(s.status == 0, "\(String(decoding: s.output, as: UTF8.self))")
        }
    }

    @Test("fed client trains and pushes over TLS with --tls-ca; with no CA given it refuses the private CA")
    func fedClient() throws {
        let (server, files, dir) = try Self.server()
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = [
            "client", "--server", "localhost:\(server.port)", "--id", "tls-client", "--range", "1", "1", "--data",
            FedProcess.mnist, "--epochs", "1", "--attempts", "1",
        ]
        let r = try FedProcess.run(base + ["--tls-ca", files.caCertificate])
        #expect(r.status == 0 && r.output.contains("pushes accepted 1"), "\(r.output)")
        let refused = try FedProcess.run(base + ["--tls"])
        #expect(refused.status != 0 && refused.output.contains("not signed by a trusted CA"), "\(refused.output)")
    }
}
