import FedCodec

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Every failure a client call reports: what kind (`code`), what happened
/// (`message`, the server's own text when the server refused), whether trying
/// again can help (`isRetryable`), and the underlying error if there is one.
///
/// A transport of one's own throws it too, so the retry policy and the
/// federated loop treat its failures like the built-in ones.
public struct ClientError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure: the server's `ErrorCode` when it refused
    /// (`.server(code)`), or one of the local kinds below. A struct, so kinds
    /// can be added without breaking a caller's `switch`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Local: Hashable, Sendable {
            case connectionRefused, connectionLost, timedOut, hostNotFound, tlsFailure, protocolViolation, cancelled
            case invalidArgument, deadlineExceeded
        }
        private enum Kind: Hashable, Sendable {
            case server(ErrorCode)
            case local(Local)
        }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// The server answered `ERROR` (or an HTTP error) with this code.
        public static func server(_ code: ErrorCode) -> Code { Code(.server(code)) }
        /// Nothing listens at the address (retryable).
        public static let connectionRefused = Code(.local(.connectionRefused))
        /// The connection was reset or closed before the answer came (retryable).
        public static let connectionLost = Code(.local(.connectionLost))
        /// No answer (or no connection) within the configured time (retryable).
        public static let timedOut = Code(.local(.timedOut))
        /// The host name did not resolve, or the address is not one.
        public static let hostNotFound = Code(.local(.hostNotFound))
        /// The TLS handshake failed: an untrusted certificate, a wrong host name, no client certificate.
        public static let tlsFailure = Code(.local(.tlsFailure))
        /// The server sent something the protocol does not allow.
        public static let protocolViolation = Code(.local(.protocolViolation))
        /// The calling task was cancelled.
        public static let cancelled = Code(.local(.cancelled))
        /// The call was given something it cannot send.
        public static let invalidArgument = Code(.local(.invalidArgument))
        /// The retry policy's deadline passed before a try succeeded (`cause`: the last failure).
        public static let deadlineExceeded = Code(.local(.deadlineExceeded))

        /// The server's code, if the server refused.
        public var serverCode: ErrorCode? {
            if case .server(let c) = kind { return c }
            return nil
        }

        public var description: String {
            switch kind {
            case .server(let c): c.name
            case .local(let l): "\(l)"
            }
        }

        /// Whether failures of this kind are retried unless said otherwise.
        var retryableByDefault: Bool {
            switch kind {
            case .server(let c): c.isRetryableByDefault
            case .local(let l): l == .connectionRefused || l == .connectionLost || l == .timedOut
            }
        }
    }

    public var code: Code
    /// What happened; for a server's refusal, the server's message.
    public var message: String
    /// Whether trying again (on a new connection if need be) can help.
    public var isRetryable: Bool
    /// The error underneath (a socket error, a decoding error, the last try's failure).
    public var cause: (any Error & Sendable)?

    /// `isRetryable` defaults to what `code` implies (for a server's code, the spec's default).
    public init(code: Code, message: String, isRetryable: Bool? = nil, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.isRetryable = isRetryable ?? code.retryableByDefault
        self.cause = cause
    }

    /// The server refused: its `ERROR` message, retryable as it said.
    public init(_ error: ErrorMessage) {
        self.init(code: .server(error.code), message: error.message, isRetryable: error.retryable)
    }

    public var description: String {
        code.serverCode != nil ? "server error \(code): \(message)" : message
    }

    /// Whether `error` is a `ClientError` worth retrying (anything else is not).
    public static func isRetryable(_ error: any Error) -> Bool { (error as? ClientError)?.isRetryable ?? false }

    /// A socket call's failure, from `errno`.
    static func socket(_ e: Int32, _ what: String = "") -> ClientError {
        let text = String(cString: strerror(e))
        switch e {
        case ECONNRESET, EPIPE: return ClientError(code: .connectionLost, message: "connection reset by the server")
        case EAGAIN, ETIMEDOUT: return ClientError(code: .timedOut, message: "timed out")
        case ECONNREFUSED: return ClientError(code: .connectionRefused, message: "connection refused\(what)")
        default: return ClientError(code: .connectionLost, message: "socket error: \(text)")
        }
    }

    static let closed = ClientError(code: .connectionLost, message: "the server closed the connection")

    static func violation(_ text: String) -> ClientError {
        ClientError(code: .protocolViolation, message: "protocol violation: \(text)")
    }

    /// Bytes from the server that do not decode; a stream that can no longer
    /// be trusted is worth a new connection.
    static func undecodable(_ e: CodecError) -> ClientError {
        ClientError(
            code: .protocolViolation, message: "undecodable answer: \(e)", isRetryable: e.code.isFatalToStream, cause: e
        )
    }
}
