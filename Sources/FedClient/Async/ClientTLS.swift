import NIOCore
import NIOSSL

extension FederationClient {
    /// How the client speaks TLS: whom it trusts, the name it checks, and
    /// optionally its own certificate (for servers that ask for one).
    public struct TLS: Sendable {
        /// The certificates a server's chain must lead to.
        public enum Roots: Sendable, Hashable {
            /// The system's trust store.
            case system
            /// The CA certificates in a PEM file (a private CA).
            case pemFile(String)
        }

        public var trustRoots: Roots
        /// The name the server's certificate must carry (and the SNI sent);
        /// nil: the host the client connects to. SwiftNIO SSL also accepts a
        /// certificate that names the address connected to (an IP entry).
        public var serverName: String?
        /// PEM files of the client's certificate chain and key (mutual TLS); nil: none.
        public var certificateChainPath: String?
        public var privateKeyPath: String?

        public init(
            trustRoots: Roots = .system, serverName: String? = nil, certificateChainPath: String? = nil,
            privateKeyPath: String? = nil
        ) {
            self.trustRoots = trustRoots
            self.serverName = serverName
            self.certificateChainPath = certificateChainPath
            self.privateKeyPath = privateKeyPath
        }

        /// The TLS context; a clear `ClientError` (`.tlsFailure`) naming a file that cannot be used.
        func makeContext() throws(ClientError) -> NIOSSLContext {
            var c = TLSConfiguration.makeClientConfiguration()
            c.minimumTLSVersion = .tlsv12
            c.certificateVerification = .fullVerification
            switch trustRoots {
            case .system: c.trustRoots = .default
            case .pemFile(let path):
                guard (try? NIOSSLCertificate.fromPEMFile(path))?.isEmpty == false else {
                    throw ClientError(code: .tlsFailure, message: "TLS: cannot read a PEM CA certificate from \(path)")
                }
                c.trustRoots = .file(path)
            }
            if let chainPath = certificateChainPath {
                guard let keyPath = privateKeyPath else {
                    throw ClientError(code: .tlsFailure, message: "TLS: a client certificate needs its private key")
                }
                do {
                    c.certificateChain = try NIOSSLCertificate.fromPEMFile(chainPath).map { .certificate($0) }
                    c.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyPath, format: .pem))
                } catch {
                    throw ClientError(
                        code: .tlsFailure,
                        message: "TLS: cannot read the client certificate \(chainPath) or key \(keyPath): \(error)")
                }
            }
            do {
                return try NIOSSLContext(configuration: c)
            } catch {
                throw ClientError(code: .tlsFailure, message: "TLS: \(error)")
            }
        }

        /// The name checked against the server's certificate, nil for an IP
        /// address (NIOSSL then checks the address itself; an address cannot be SNI).
        func hostname(for host: String) -> String? {
            let name = serverName ?? host
            let isAddress = (try? SocketAddress(ipAddress: name, port: 0)) != nil
            return isAddress ? nil : name
        }
    }
}

extension ClientError {
    /// A TLS failure in words a user can act on.
    static func tls(_ error: any Error, host: String) -> ClientError {
        let text = "\(error)"
        let why: String
        if let e = error as? NIOSSLExtraError, e == .failedToValidateHostname {
            why = "the server's certificate is not for the name or address asked for"
        } else if text.contains("CERTIFICATE_VERIFY_FAILED") {
            why = "the server's certificate is not signed by a trusted CA (give the server's CA as the trust root)"
        } else if text.contains("CERTIFICATE_REQUIRED") || text.contains("HANDSHAKE_FAILURE") {
            why = "the server refused the handshake (it asks for a client certificate this client did not give)"
        } else if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") {
            why = "the server does not speak TLS on this port"
        } else {
            why = "the TLS handshake failed"
        }
        return ClientError(code: .tlsFailure, message: "TLS with \(host): \(why) (\(text))", cause: error)
    }
}
