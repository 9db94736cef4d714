/// The messages of the protocol (`Protocol/SPEC.md`, "Messages"), decoded:
/// those of versions 1-3 as cases, every later one as `other`
/// (`MessageRegistry`), so a new message breaks no `switch` over this enum.
///
/// `welcome` and `push` are stored indirectly. With them inline (a 64-byte
/// enum) release builds of Swift 6.3.1 read corrupt payloads out of values
/// passed between this package's test modules, while debug builds did not;
/// boxed, the enum is smaller and both agree.
public enum Message: Hashable, Sendable {
    case hello(Hello)
    indirect case welcome(Welcome)
    /// Asks for the model; `heldVersion` is the version the client already has (0: none).
    /// `deltaEncodings` (version 3): the `ValueEncoding` bits the client accepts
    /// in a `MODEL_DELTA` answer; 0: full models only.
    case fetch(heldVersion: UInt64, compression: Compression, deltaEncodings: UInt8 = 0)
    case model(Model)
    /// The answer to a fetch whose `heldVersion` is the current version: no weights.
    case modelUnchanged(version: UInt64, datasets: UInt64)
    indirect case push(Push)
    case ack(version: UInt64, datasets: UInt64)
    case error(ErrorMessage)
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)
    indirect case modelDelta(ModelDelta)
    /// A message added after version 3 (a `ProtocolMessage` listed in
    /// `MessageRegistry.extensions`); `message.as(T.self)` reads it.
    case other(AnyProtocolMessage)

    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .fetch: .fetch
        case .model: .model
        case .modelUnchanged: .modelUnchanged
        case .push: .push
        case .ack: .ack
        case .error: .error
        case .ping: .ping
        case .pong: .pong
        case .modelDelta: .modelDelta
        case .other(let m): m.type
        }
    }

    /// What the protocol says of this message.
    public var descriptor: MessageDescriptor {
        if case .other(let m) = self { return Swift.type(of: m.base).descriptor }
        return MessageRegistry.descriptor(type.rawValue)!
    }

    /// The message as `M` when it is a `ProtocolMessage` of that type.
    public func `as`<M: ProtocolMessage>(_ type: M.Type) -> M? {
        if case .other(let m) = self { m.as(type) } else { nil }
    }
}

/// `HELLO`: the client's opening message.
public struct Hello: Hashable, Sendable {
    /// Lowest and highest protocol versions the client speaks.
    public var minVersion: UInt8
    public var maxVersion: UInt8
    /// Bit `1 << Compression.rawValue` for each compression the client accepts.
    public var compressions: UInt8
    /// 1 to 256 bytes of UTF-8.
    public var clientID: String
    /// Empty when the client has none; at most 1,024 bytes.
    public var authToken: String

    public init(
        minVersion: UInt8 = 1, maxVersion: UInt8 = 1, compressions: UInt8 = 0b111, clientID: String,
        authToken: String = ""
    ) {
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.compressions = compressions
        self.clientID = clientID
        self.authToken = authToken
    }
}

/// `WELCOME`: the server's answer to `HELLO`.
public struct Welcome: Hashable, Sendable {
    /// The version both sides use from now on.
    public var version: UInt8
    /// The compressions the server will use and accept: a subset of the client's.
    public var compressions: UInt8
    public var serverID: String
    public var modelVersion: UInt64
    public var datasets: UInt64
    /// The largest payload the server accepts.
    public var maxPayloadBytes: UInt32
    /// Version 2 and later: the largest decoded size of a blob the server
    /// accepts (`max_decompressed`), 4 bytes a value whatever the blob's
    /// dtypes; 0 when not announced (version 1).
    public var maxDecompressedBytes: UInt64
    /// Version 2 and later: the largest `datasets` one push may claim; 0 when
    /// not announced (version 1).
    public var maxDatasets: UInt64
    /// Version 3: the `ValueEncoding` bits the server accepts in pushes
    /// (float32 always); 0 when not announced.
    public var encodings: UInt8
    /// Version 3: the encoding of the server's `MODEL_DELTA` steps as a
    /// `ValueEncoding.bit` (at most one bit set), 0 when it sends none (full
    /// models only).
    public var deltaEncoding: UInt8

    public init(
        version: UInt8 = 1, compressions: UInt8, serverID: String, modelVersion: UInt64, datasets: UInt64,
        maxPayloadBytes: UInt32, maxDecompressedBytes: UInt64 = 0, maxDatasets: UInt64 = 0, encodings: UInt8 = 0,
        deltaEncoding: UInt8 = 0
    ) {
        self.encodings = encodings
        self.deltaEncoding = deltaEncoding
        self.version = version
        self.maxDecompressedBytes = maxDecompressedBytes
        self.maxDatasets = maxDatasets
        self.compressions = compressions
        self.serverID = serverID
        self.modelVersion = modelVersion
        self.datasets = datasets
        self.maxPayloadBytes = maxPayloadBytes
    }
}

/// `MODEL`: the model's weights at one version.
public struct Model: Hashable, Sendable {
    public var version: UInt64
    /// How many samples the model has been trained on in total.
    public var datasets: UInt64
    public var tensors: [Tensor]
    /// How the blob was (or will be) stored on the wire.
    public var compression: Compression

    public init(version: UInt64, datasets: UInt64, tensors: [Tensor], compression: Compression = .none) {
        self.version = version
        self.datasets = datasets
        self.tensors = tensors
        self.compression = compression
    }
}

/// `PUSH`: a client's locally trained weights.
public struct Push: Hashable, Sendable {
    public var clientID: String
    /// Samples this client's weights represent (`b` in the update rule).
    public var datasets: UInt64
    /// The model version the client started training from (0: none).
    public var baseVersion: UInt64
    public var tensors: [Tensor]
    public var compression: Compression
    /// Version 2 and later: the push's idempotency key, unique among this
    /// client id's pushes (a random or increasing number); 0: none. A server
    /// answers a push whose (client id, push id) it has applied with that
    /// push's original `ACK` and applies nothing. Not sent in version 1.
    public var pushID: UInt64
    /// Version 3: how the values travel (lossy encodings are opt-in).
    public var encoding: ValueEncoding
    /// Version 3: `tensors` are the delta `Wc - W_base` against `baseVersion`,
    /// which the server must hold (else `unknown_base`).
    public var isDelta: Bool
    /// How a lossy encoding rounds (the sender's choice; not on the wire).
    public var rounding: ValueEncoding.Rounding

    public init(
        clientID: String, datasets: UInt64, baseVersion: UInt64, tensors: [Tensor], compression: Compression = .none,
        pushID: UInt64 = 0, encoding: ValueEncoding = .float32, isDelta: Bool = false,
        rounding: ValueEncoding.Rounding = .nearest
    ) {
        self.encoding = encoding
        self.isDelta = isDelta
        self.rounding = rounding
        self.pushID = pushID
        self.clientID = clientID
        self.datasets = datasets
        self.baseVersion = baseVersion
        self.tensors = tensors
        self.compression = compression
    }
}

/// `ERROR`: why a request failed.
public struct ErrorMessage: Error, Hashable, Sendable {
    public var code: ErrorCode
    /// Whether the same request may succeed if sent again later.
    public var retryable: Bool
    /// The protocol versions the sender speaks, so a peer can tell what to use.
    public var minVersion: UInt8
    public var maxVersion: UInt8
    /// For people; at most 4,096 bytes.
    public var message: String

    public init(
        code: ErrorCode, retryable: Bool? = nil, message: String,
        minVersion: UInt8 = FrameHeader.supportedVersions.lowerBound,
        maxVersion: UInt8 = FrameHeader.supportedVersions.upperBound
    ) {
        self.code = code
        self.retryable = retryable ?? code.isRetryableByDefault
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.message = message
    }

    /// The `ERROR` that reports a codec failure.
    public init(_ error: CodecError) {
        self.init(code: error.code, message: error.message)
    }
}

/// `MODEL_DELTA` (version 3): the client's version `fromVersion` becomes
/// `version` by adding each step's decoded values, in order, in Float32
/// (`w = w + step`); the server's model advanced by exactly these steps, so
/// the client's copy is bit for bit the server's.
public struct ModelDelta: Hashable, Sendable {
    public var version: UInt64
    public var datasets: UInt64
    public var fromVersion: UInt64
    /// Each step's tensors, decoded.
    public var steps: [[Tensor]]
    /// How the steps travel (when encoding).
    public var encoding: ValueEncoding
    public var compression: Compression

    public init(
        version: UInt64, datasets: UInt64, fromVersion: UInt64, steps: [[Tensor]], encoding: ValueEncoding = .float32,
        compression: Compression = .none
    ) {
        self.version = version
        self.datasets = datasets
        self.fromVersion = fromVersion
        self.steps = steps
        self.encoding = encoding
        self.compression = compression
    }

    /// `weights` advanced by every step (shapes already checked by the caller).
    public func apply(to weights: [Tensor]) -> [Tensor] {
        steps.reduce(weights) { Self.add($1, to: $0) }
    }

    /// `weights + step`, element by element in Float32: how a step (or a
    /// delta push) is applied on both sides (shapes already checked).
    public static func add(_ step: [Tensor], to weights: [Tensor]) -> [Tensor] {
        var out = weights
        for t in out.indices {
            step[t].values.withUnsafeBufferPointer { d in
                out[t].values.withUnsafeMutableBufferPointer { w in
                    for i in w.indices { w[i] = w[i] + d[i] }
                }
            }
        }
        return out
    }
}
