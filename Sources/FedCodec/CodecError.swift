/// The one error type FedCodec throws: a spec error code and a message for people.
///
/// Every failure while decoding untrusted bytes is reported as a `CodecError`;
/// FedCodec never traps on input. `code` maps one-to-one onto the `ERROR`
/// message a server sends back.
public struct CodecError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.name): \(message)" }
}
