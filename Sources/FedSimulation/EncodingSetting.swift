import FedClient
import FedCodec

/// How the simulated clients push, and how the server publishes versions for
/// them to fetch: `PUSH[,fetch=ENC]` as `fed simulate --encoding` takes it.
///
/// `PUSH` is a client encoding as `fed client --encoding` takes it (`fp32`,
/// `fp16`, `int8-delta`, `delta`, ...). With `fetch=ENC` the server
/// publishes each version as a step quantized in `ENC` and the clients fetch
/// those steps (`MODEL_DELTA`).
public struct EncodingSetting: Hashable, Sendable, CustomStringConvertible {
    /// How clients push; default lossless full weights.
    public var push = WireEncoding.lossless
    /// The server's fetch-delta encoding; nil (the default): clients fetch full models.
    public var fetch: ValueEncoding? = nil

    /// Lossless full weights both ways (`fp32`).
    public init() {}

    /// An explicit setting.
    public init(push: WireEncoding, fetch: ValueEncoding? = nil) {
        self.push = push
        self.fetch = fetch
    }

    /// Parses `PUSH[,fetch=ENC]`; nil when either part is not an encoding.
    public init?(_ text: String) {
        let parts = text.split(separator: ",").map(String.init)
        guard let first = parts.first, let p = WireEncoding(name: first) else { return nil }
        push = p
        for part in parts.dropFirst() {
            guard part.hasPrefix("fetch="), let f = ValueEncoding(name: String(part.dropFirst(6))) else { return nil }
            fetch = f
        }
    }

    /// The text ``init(_:)`` parses back into this setting.
    public var description: String { fetch.map { "\(push),fetch=\($0)" } ?? push.description }
}
