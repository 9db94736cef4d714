import Foundation
import NIOSSL

/// What the server says about its TLS in its log: a certificate outside its
/// validity period at start, and why a handshake failed, in words that carry
/// no detail of the machine the server was built on.
enum TLSDiagnostics {
    /// A warning when the leaf certificate `certificate` (read from `path`) is
    /// not valid at `now`: expired (naming its notAfter) or not yet valid
    /// (naming its notBefore). Nil while it is valid.
    static func validityWarning(_ certificate: NIOSSLCertificate, path: String, now: Date = Date()) -> String? {
        let notBefore = Date(timeIntervalSince1970: TimeInterval(certificate.notValidBefore))
        let notAfter = Date(timeIntervalSince1970: TimeInterval(certificate.notValidAfter))
        if now > notAfter {
            return
                "TLS certificate \(path) expired: notAfter \(notAfter.formatted(.iso8601)); clients that check it will refuse every handshake"
        }
        if now < notBefore {
            return
                "TLS certificate \(path) is not valid yet: notBefore \(notBefore.formatted(.iso8601)); clients that check it will refuse every handshake"
        }
        return nil
    }

    /// Why a TLS connection failed, for a log line: BoringSSL's reason names
    /// (such as `CERTIFICATE_VERIFY_FAILED`) without the source file paths
    /// and line numbers its error descriptions carry.
    static func reason(_ error: any Error) -> String {
        switch error {
        case NIOSSLError.handshakeFailed(let e): "TLS handshake failed: \(describe(e))"
        case NIOSSLError.shutdownFailed(let e): "TLS shutdown failed: \(describe(e))"
        case NIOSSLError.uncleanShutdown: "the peer closed the connection without ending TLS"
        default: withoutPaths("\(error)")
        }
    }

    private static func describe(_ error: BoringSSLError) -> String {
        switch error {
        case .sslError(let stack), .unknownError(let stack), .invalidSNIName(let stack), .failedToSetALPN(let stack):
            let reasons = stack.map { reasonName("\($0)") }.filter { !$0.isEmpty }
            return reasons.isEmpty ? "no reason given" : reasons.joined(separator: "; ")
        default:
            return "\(error)"
        }
    }

    /// `Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /path/file.cc:592`
    /// gives `CERTIFICATE_VERIFY_FAILED`; a description without a reason code
    /// (`Error:  EOF during handshake`) gives its text.
    static func reasonName(_ description: String) -> String {
        if let m = description.firstMatch(of: /error:[0-9A-Fa-f]+:[^:]*:[^:]*:([^\s:]+)/) { return String(m.1) }
        return withoutPaths(description.replacing(/^Error:\s*\d*\s*/, with: ""))
    }

    /// `text` with every ` at /file:line` and every other absolute path removed.
    static func withoutPaths(_ text: String) -> String {
        text.replacing(/\ at \/[^\s\])]*/, with: "").replacing(/\/[^\s\])]*\/[^\s\])]*/, with: "[path]")
            .trimmingCharacters(in: .whitespaces)
    }
}

extension ServerTLS {
    /// `TLSDiagnostics.validityWarning` for the first certificate of the chain
    /// file (the server's own); nil when it is valid or cannot be read (making
    /// the context reports that).
    func validityWarning(now: Date = Date()) -> String? {
        guard let leaf = (try? NIOSSLCertificate.fromPEMFile(certificateChainPath))?.first else { return nil }
        return TLSDiagnostics.validityWarning(leaf, path: certificateChainPath, now: now)
    }
}
