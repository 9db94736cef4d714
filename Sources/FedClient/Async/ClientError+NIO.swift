import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension ClientError {
    /// The `ClientError` for an error from SwiftNIO (or anything else a
    /// channel can throw): refused, reset, timed out, a name that did not
    /// resolve; a `ClientError` as it is.
    static func from(_ error: any Error, peer: String = "the server") -> ClientError {
        switch error {
        case let e as ClientError: return e
        case let e as NIOConnectionError:
            if e.connectionErrors.isEmpty {
                let dns = e.dnsAError ?? e.dnsAAAAError
                return ClientError(
                    code: .hostNotFound,
                    message: "\(e.host) did not resolve to an address\(dns.map { ": \($0)" } ?? "")")
            }
            // Every address refused: nothing listens there (yet).
            let errors = e.connectionErrors.map(\.error)
            if errors.allSatisfy({ ($0 as? IOError)?.errnoCode == ECONNREFUSED }) {
                return ClientError(code: .connectionRefused, message: "connection refused by \(e.host):\(e.port)")
            }
            return from(errors[errors.count - 1], peer: peer)
        case let e as IOError:
            return ClientError.socket(e.errnoCode, " by \(peer)").with(cause: e)
        case let e as ChannelError:
            switch e {
            case .connectTimeout(let t):
                return ClientError(code: .timedOut, message: "no connection within \(t)", cause: e)
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed:
                return ClientError(code: .connectionLost, message: "the connection closed", cause: e)
            default:
                return ClientError(code: .connectionLost, message: "channel error: \(e)", cause: e)
            }
        case is NIOSSLError, is NIOSSLExtraError, is BoringSSLError:
            return ClientError.tls(error, host: peer)
        case is CancellationError:
            return ClientError(code: .cancelled, message: "cancelled")
        default:
            return ClientError(
                code: .connectionLost, message: "\(error)", cause: error)
        }
    }

    func with(cause: any Error & Sendable) -> ClientError {
        var e = self
        e.cause = cause
        return e
    }
}
