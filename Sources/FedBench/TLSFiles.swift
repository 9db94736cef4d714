import ArgumentParser
import FedClient
import Foundation

/// A private CA and certificates made with the `openssl` command, for trying
/// and measuring TLS on loopback: a server certificate for the name
/// `localhost` (a name only: a client must check the name, as for a real
/// server), a client certificate (mutual TLS), and a second CA that signed
/// neither (a client with the wrong CA).
public struct TLSFiles: Sendable {
    public let directory: String
    public var caCertificate: String { directory + "/ca.pem" }
    public var serverCertificate: String { directory + "/server.pem" }
    public var serverKey: String { directory + "/server.key" }
    public var clientCertificate: String { directory + "/client.pem" }
    public var clientKey: String { directory + "/client.key" }
    /// A CA that signed none of the above.
    public var otherCACertificate: String { directory + "/other-ca.pem" }

    /// Makes the files in `directory` (created if needed). Throws, saying so,
    /// when `openssl` is missing or fails.
    public static func make(in directory: String) throws -> TLSFiles {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let files = TLSFiles(directory: directory)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ["ca", "other-ca"] {
            try openssl(
                ["req", "-x509"] + ec + [
                    "-keyout", "\(directory)/\(ca).key", "-out", "\(directory)/\(ca).pem", "-days", "7",
                    "-subj", "/CN=fed test \(ca)", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                ])
        }
        for (name, usage, san) in [
            ("server", "serverAuth", "subjectAltName=DNS:localhost"),
            ("client", "clientAuth", "subjectAltName=DNS:fed-test-client"),
        ] {
            try openssl(
                ["req"] + ec + [
                    "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).csr", "-subj",
                    "/CN=\(name)",
                ])
            let ext = "\(directory)/\(name).ext"
            try "\(san)\nextendedKeyUsage=\(usage)\nbasicConstraints=CA:FALSE\n".write(
                toFile: ext, atomically: true, encoding: .utf8)
            try openssl([
                "x509", "-req", "-in", "\(directory)/\(name).csr", "-CA", files.caCertificate, "-CAkey",
                "\(directory)/ca.key", "-CAcreateserial", "-out", "\(directory)/\(name).pem", "-days", "7",
                "-extfile", ext,
            ])
        }
        return files
    }

    /// `fed server` options serving TLS with these files (clear text still allowed when `plaintext`).
    public func serverArguments(plaintext: Bool = false, clientCA: Bool = false) -> [String] {
        ["--tls-cert", serverCertificate, "--tls-key", serverKey]
            + (clientCA ? ["--tls-client-ca", caCertificate] : [])
            + (plaintext ? ["--allow-plaintext"] : [])
    }

    /// A client trusting this CA and expecting the name `localhost` (with the
    /// client certificate when `withCertificate`).
    public func client(withCertificate: Bool = false) -> FederationClient.TLS {
        FederationClient.TLS(
            trustRoots: .pemFile(caCertificate), serverName: "localhost",
            certificateChainPath: withCertificate ? clientCertificate : nil,
            privateKeyPath: withCertificate ? clientKey : nil)
    }

    private static func openssl(_ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["openssl"] + arguments
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        do { try p.run() } catch { throw ValidationError("cannot run openssl: \(error)") }
        let text = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ValidationError(
                "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(String(decoding: text, as: UTF8.self))"
            )
        }
    }
}
