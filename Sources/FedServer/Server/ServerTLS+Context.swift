import FedStorage
import NIOSSL

extension ServerTLS {
    /// The TLS context for these files; a clear error naming the file that
    /// could not be used.
    func makeContext() throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateChainPath)
        } catch {
            throw FileError("TLS: cannot read a PEM certificate from \(certificateChainPath): \(error)")
        }
        guard !chain.isEmpty else { throw FileError("TLS: \(certificateChainPath) holds no PEM certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: privateKeyPath, format: .pem)
        } catch {
            throw FileError("TLS: cannot read a PEM private key from \(privateKeyPath): \(error)")
        }
        var configuration: TLSConfiguration
        if let clientCAPath {
            guard (try? NIOSSLCertificate.fromPEMFile(clientCAPath))?.isEmpty == false else {
                throw FileError("TLS: cannot read a PEM CA certificate from \(clientCAPath)")
            }
            configuration = .makeServerConfigurationWithMTLS(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key),
                trustRoots: .file(clientCAPath))
            configuration.sendCANameList = true
        } else {
            configuration = .makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        }
        configuration.minimumTLSVersion = .tlsv12
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw FileError("TLS: the certificate and key cannot be used together: \(error)")
        }
    }
}
