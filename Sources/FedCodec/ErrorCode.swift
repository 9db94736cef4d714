/// A stable numeric error code of the protocol (`Protocol/SPEC.md`, "Error codes").
///
/// Codes are a struct over a private enum, so new codes can be added without
/// breaking exhaustive switches in client code, while every code the spec
/// defines has a name. A code received from a peer that this implementation
/// does not know is kept as-is (`rawValue`) and described as `unknown(N)`.
public struct ErrorCode: Hashable, Sendable, CustomStringConvertible {
    /// The code as it travels in an `ERROR` message.
    public let rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    private init(_ known: Known) { self.rawValue = known.rawValue }

    private enum Known: UInt16, CaseIterable {
        case badMagic = 1
        case unsupportedVersion = 2
        case unknownMessageType = 3
        case unsupportedFlags = 4
        case frameTooLarge = 5
        case checksumMismatch = 6
        case truncated = 7
        case malformedPayload = 8
        case trailingBytes = 9
        case invalidString = 10
        case unsupportedCompression = 11
        case unsupportedDType = 12
        case invalidShape = 13
        case sizeMismatch = 14
        case decompressedTooLarge = 15
        case corruptCompressedData = 16
        case handshakeRequired = 32
        case unexpectedMessage = 33
        case shapeMismatch = 34
        case nonFiniteValue = 35
        case invalidDatasets = 36
        case unauthorized = 37
        case overloaded = 38
        case internalError = 39
        case timeout = 40
        case shuttingDown = 41
        case staleBase = 42
        case unknownBase = 43
        case unknownTask = 44
        case roundClosed = 45
        case privacyBudgetSpent = 46
    }

    public static let badMagic = ErrorCode(.badMagic)
    public static let unsupportedVersion = ErrorCode(.unsupportedVersion)
    public static let unknownMessageType = ErrorCode(.unknownMessageType)
    public static let unsupportedFlags = ErrorCode(.unsupportedFlags)
    public static let frameTooLarge = ErrorCode(.frameTooLarge)
    public static let checksumMismatch = ErrorCode(.checksumMismatch)
    public static let truncated = ErrorCode(.truncated)
    public static let malformedPayload = ErrorCode(.malformedPayload)
    public static let trailingBytes = ErrorCode(.trailingBytes)
    public static let invalidString = ErrorCode(.invalidString)
    public static let unsupportedCompression = ErrorCode(.unsupportedCompression)
    public static let unsupportedDType = ErrorCode(.unsupportedDType)
    public static let invalidShape = ErrorCode(.invalidShape)
    public static let sizeMismatch = ErrorCode(.sizeMismatch)
    public static let decompressedTooLarge = ErrorCode(.decompressedTooLarge)
    public static let corruptCompressedData = ErrorCode(.corruptCompressedData)
    public static let handshakeRequired = ErrorCode(.handshakeRequired)
    public static let unexpectedMessage = ErrorCode(.unexpectedMessage)
    public static let shapeMismatch = ErrorCode(.shapeMismatch)
    public static let nonFiniteValue = ErrorCode(.nonFiniteValue)
    public static let invalidDatasets = ErrorCode(.invalidDatasets)
    public static let unauthorized = ErrorCode(.unauthorized)
    public static let overloaded = ErrorCode(.overloaded)
    public static let internalError = ErrorCode(.internalError)
    public static let timeout = ErrorCode(.timeout)
    public static let shuttingDown = ErrorCode(.shuttingDown)
    /// Version 2: a push trained from a version the server no longer retains.
    public static let staleBase = ErrorCode(.staleBase)
    /// Version 3: a delta push against a version the server does not hold (push full weights).
    public static let unknownBase = ErrorCode(.unknownBase)
    /// Version 4: a `REPORT` names a task the server did not give or no longer holds.
    public static let unknownTask = ErrorCode(.unknownTask)
    /// Version 4: a `REPORT` arrived after its round closed or was abandoned.
    public static let roundClosed = ErrorCode(.roundClosed)
    /// Version 4, differential privacy: the round's version would bring the
    /// server's epsilon above its target, so it is not published.
    public static let privacyBudgetSpent = ErrorCode(.privacyBudgetSpent)

    /// Every code the spec defines.
    public static let allKnown: [ErrorCode] = Known.allCases.map { ErrorCode($0) }

    /// The spec's name of the code, in snake case (`bad_magic`), as used in
    /// `Protocol/vectors/manifest.json`; `unknown(N)` for a code not in the spec.
    public var name: String {
        guard let known = Known(rawValue: rawValue) else { return "unknown(\(rawValue))" }
        var out = ""
        for ch in String(describing: known) {
            if ch.isUppercase {
                out.append("_")
                out.append(contentsOf: ch.lowercased())
            } else {
                out.append(ch)
            }
        }
        return out
    }

    /// Looks a code up by its spec name (`bad_magic`); nil if the spec has no such name.
    public init?(name: String) {
        guard let code = ErrorCode.allKnown.first(where: { $0.name == name }) else { return nil }
        self = code
    }

    /// Whether a stream that produced this error can still be trusted to
    /// carry further frames. Frame-level errors (codes 1-7) are fatal: the
    /// receiver answers with `ERROR` and closes the connection.
    public var isFatalToStream: Bool { (1...7).contains(rawValue) }

    /// Whether the spec marks this code as retryable by default.
    public var isRetryableByDefault: Bool {
        self == .overloaded || self == .internalError || self == .timeout || self == .shuttingDown
    }

    public var description: String { "\(name) (\(rawValue))" }
}
