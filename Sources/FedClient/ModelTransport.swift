import FedCodec

/// What a fetch returned.
public enum FetchResult: Sendable {
    case model(version: UInt64, datasets: UInt64, tensors: [Tensor])
    /// The server still has the version the client holds.
    case unchanged(version: UInt64, datasets: UInt64)
}

/// How a blocking client reaches the server: the binary protocol
/// (`BinaryTransport`, the blocking face of `FederationClient`) or the
/// original's HTTP (`HTTPTransport`). A call makes one attempt; a caller
/// that wants retries runs it under a `RetryPolicy` (as `FederatedLoop` does).
public protocol ModelTransport: AnyObject {
    func fetch(heldVersion: UInt64) throws -> FetchResult
    /// Returns the model version and sample count after the update.
    /// `pushID` (non-zero) is the push's idempotency key: send the same one
    /// when retrying the same push, so a server that applied it already
    /// answers with the original acknowledgement instead of applying it twice.
    func push(_ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> (
        version: UInt64, datasets: UInt64
    )
    var bytesSent: Int { get }
    var bytesReceived: Int { get }
    /// Drops the connection, so the next call reconnects.
    func reset()
}

/// How a client's pushes and fetches travel over version 3 (`Protocol/SPEC.md` section 6.3).
public struct WireEncoding: Hashable, Sendable, CustomStringConvertible {
    /// How pushed values are stored; lossy encodings are opt-in.
    public var values: ValueEncoding
    /// Push `Wc - W_base` against the fetched version instead of weights;
    /// with a lossy encoding the rounding error joins the next delta (error
    /// feedback).
    public var delta: Bool

    public init(values: ValueEncoding = .float32, delta: Bool = false) {
        self.values = values
        self.delta = delta
    }

    /// Lossless full weights (every server takes them).
    public static let lossless = WireEncoding()

    /// `fp32`, `fp16`, `int8`, `int4`, `int2`, each optionally with `-delta`
    /// (`int4-delta`); `delta` alone is lossless Float32 deltas.
    public init?(name: String) {
        if name == "delta" {
            self.init(values: .float32, delta: true)
            return
        }
        let delta = name.hasSuffix("-delta")
        guard let v = ValueEncoding(name: delta ? String(name.dropLast(6)) : name) else { return nil }
        self.init(values: v, delta: delta)
    }

    public var description: String {
        delta ? (values == .float32 ? "delta" : "\(values)-delta") : values.description
    }
}
