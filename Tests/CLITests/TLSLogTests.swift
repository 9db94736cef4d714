import FedBench
import FedTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What `fed server` logs about its TLS: a certificate outside its validity
/// period at start, and failed handshakes without the build's file paths.
@Suite("TLS in the server's log", .serialized)
struct TLSLogTests {
    /// `fed server` with its log (standard error) kept in a file.
    final class LoggedServer {
        let process = Process()
        let port: Int
        let log: URL

        init(dir: URL, arguments: [String]) throws {
            log = dir.appendingPathComponent("server.log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let out = Pipe()
            process.executableURL = FedProcess.binary
            process.arguments =
                ["server", "--port", "0", "--checkpoint", dir.appendingPathComponent("m.fedk").path] + arguments
            process.standardOutput = out
            process.standardError = try FileHandle(forWritingTo: log)
            try process.run()
            var text = ""
            let deadline = Date().addingTimeInterval(20)
            while !text.contains("\n") && Date() < deadline {
                let chunk = out.fileHandleForReading.availableData
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

        var text: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        deinit {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
    }

    /// A certificate for `localhost` signed by `files`' CA, valid from `start`
    /// to `end` (openssl's `YYYYMMDDHHMMSSZ`), made with `openssl ca`.
    static func certificate(_ files: TLSFiles, start: String, end: String, name: String) throws -> (String, String) {
        let dir = files.directory
        let (key, csr, pem) = ("\(dir)/\(name).key", "\(dir)/\(name).csr", "\(dir)/\(name).pem")
        try "".write(toFile: "\(dir)/index-\(name).txt", atomically: true, encoding: .utf8)
        try "1000\n".write(toFile: "\(dir)/serial-\(name)", atomically: true, encoding: .utf8)
        let config = """
            [ca]
            default_ca = d
            [d]
            database = \(dir)/index-\(name).txt
            new_certs_dir = \(dir)
            serial = \(dir)/serial-\(name)
            default_md = sha256
            policy = p
            unique_subject = no
            x509_extensions = e
            [p]
            commonName = supplied
            [e]
            subjectAltName = DNS:localhost
            basicConstraints = CA:FALSE
            """
        try config.write(toFile: "\(dir)/ca-\(name).cnf", atomically: true, encoding: .utf8)
        let req = try runProgram(
            "/usr/bin/env",
            [
                "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=localhost",
            ])
        guard req.status == 0 else { throw TestError(String(decoding: req.output, as: UTF8.self)) }
        let sign = try runProgram(
            "/usr/bin/env",
            [
                "openssl", "ca", "-batch", "-notext", "-config", "\(dir)/ca-\(name).cnf", "-cert", files.caCertificate,
                "-keyfile", "\(dir)/ca.key", "-in", csr, "-out", pem, "-startdate", start, "-enddate", end,
            ])
        guard sign.status == 0 else { throw TestError(String(decoding: sign.output, as: UTF8.self)) }
        return (pem, key)
    }

    @Test("An expired or not yet valid certificate is named in a warning at start, with its notAfter or notBefore")
    func validityWarnings() throws {
        let dir = try temporaryDirectory("tls-log")
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try TLSFiles.make(in: dir.appendingPathComponent("pki").path)
        let (expired, expiredKey) = try Self.certificate(
            files, start: "20200101000000Z", end: "20200102000000Z", name: "expired")
        let old = try LoggedServer(
            dir: dir, arguments: ["--tls-cert", expired, "--tls-key", expiredKey, "--log-level", "warning"])
        #expect(old.text.contains("TLS certificate \(expired) expired: notAfter 2020-01-02T00:00:00Z"), "\(old.text)")

        let (future, futureKey) = try Self.certificate(
            files, start: "20990101000000Z", end: "20990201000000Z", name: "future")
        let early = try LoggedServer(
            dir: dir, arguments: ["--tls-cert", future, "--tls-key", futureKey, "--log-level", "warning"])
        #expect(
            early.text.contains("TLS certificate \(future) is not valid yet: notBefore 2099-01-01T00:00:00Z"),
            "\(early.text)")

        let fine = try LoggedServer(dir: dir, arguments: files.serverArguments() + ["--log-level", "warning"])
        #expect(!fine.text.contains("TLS certificate"), "\(fine.text)")
    }

    @Test("A failed handshake is logged with BoringSSL's reason and no file path of the build")
    func handshakeFailureReason() throws {
        let dir = try temporaryDirectory("tls-log")
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try TLSFiles.make(in: dir.appendingPathComponent("pki").path)
        let server = try LoggedServer(dir: dir, arguments: files.serverArguments() + ["--log-level", "info"])
        // A TLS record header, then a handshake message no TLS version defines.
        let c = try TestClient(port: server.port, timeoutSeconds: 5)
        try c.send([0x16, 0x03, 0x01, 0x00, 0x06, 0xEE, 0x00, 0x00, 0x02, 0x00, 0x00])
        #expect(c.closedByServer())
        // A client that does not trust the server's CA aborts the handshake with an alert.
        let s = try runProgram(
            "/usr/bin/env",
            [
                "openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-CAfile", files.otherCACertificate,
                "-verify_return_error",
            ])
        #expect(s.status != 0)
        var lines: [Substring] = []
        for _ in 0..<50 {
            lines = server.text.split(separator: "\n").filter { $0.contains("closing connection from") }
            if lines.count >= 2 { break }
            usleep(100_000)
        }
        #expect(lines.count >= 2, "\(server.text)")
        for line in lines {
            #expect(line.contains("TLS handshake failed: "), "\(line)")
            #expect(line.firstMatch(of: /failed: [A-Z0-9_]{6,}/) != nil, "\(line)")
            #expect(!line.contains("checkouts") && !line.contains(".cc:") && !line.contains(".c:"), "\(line)")
            #expect(line.firstMatch(of: /\/[^\/\s]*\/[^\/\s]*\//) == nil, "a path in: \(line)")
        }
        // BoringSSL's reason for the undefined handshake message.
        #expect(server.text.contains("TLS handshake failed: UNEXPECTED_MESSAGE"), "\(server.text)")
    }
}
