import CoreMetrics
import FedCodec
import FedStorage
import NIOCore

/// Everything `FederatedServer` can be told; every parameter has a default.
///
/// Size limits left `nil` are derived from the model the server serves (see
/// `ResolvedLimits`), so a server of the 199,210-float MLP refuses a frame or
/// a body far larger than any honest push before buffering it.
public struct ServerConfiguration: Sendable {
    /// Address to bind. Default 127.0.0.1 (loopback only).
    public var host: String
    /// Port to bind; 0 picks a free one. Default 5000, the original's.
    public var port: Int
    /// Checkpoint file: resumed from on start, written atomically (the
    /// store when `checkpointStore` is nil).
    public var checkpointPath: String
    /// Where the model and its state are resumed from and saved; nil
    /// (default): a `FileCheckpointStore` at `checkpointPath`. Acknowledged
    /// updates are as durable as this store keeps its `CheckpointStore` contract.
    public var checkpointStore: (any CheckpointStore)? = nil
    /// 1 (default): every update is durable before it is acknowledged.
    /// N > 1: write a checkpoint every N versions (faster; a crash loses up to N-1 updates).
    public var saveEvery: Int
    /// The server's name in WELCOME and the HTTP answer's `id`.
    public var serverID: String
    /// Largest `datasets` one update may claim.
    public var maxDatasets: UInt64
    /// What the server computes with updates (default: the original's running average).
    public var strategy: any FederationStrategy
    /// Versions retained as bases of deltas; older bases are too stale (default 16).
    public var maxStaleness: Int
    /// Most samples one update counts for in a strategy's weights (default 10,000).
    public var maxUpdateSamples: UInt64
    /// Frame and blob limits of the binary protocol; nil: derived from the model.
    public var limits: Limits?
    /// Largest HTTP request body; nil: derived from the model (40 bytes per weight + 64 KiB).
    public var maxHTTPBodyBytes: Int?
    /// Connections served at once. One more than this is answered `overloaded`
    /// (binary) or `503` (HTTP) and closed.
    public var maxConnections: Int
    /// Connections from one IP address at once; nil (default): no such limit.
    public var maxConnectionsPerAddress: Int?
    /// Bytes the server may hold for requests still arriving and answers still
    /// being sent, across all connections. Default 256 MiB. A request that
    /// would exceed it is answered `overloaded`/`503` and its connection closed.
    public var memoryBudget: Int
    /// A connection with no traffic for this long is closed.
    public var idleTimeout: Duration
    /// A new connection must send enough bytes to tell its protocol within
    /// this time, or it is closed. Default 5 s.
    public var firstBytesTimeout: Duration
    /// A request (frame, or HTTP head and body) must arrive completely within
    /// this time of its first byte, or the connection is closed.
    public var requestTimeout: Duration
    /// On shutdown: how long in-flight requests may take before connections
    /// are closed regardless. Default 10 s.
    public var shutdownGrace: Duration
    /// Compressions the server accepts and offers (bit per mode).
    public var compressions: UInt8
    /// Value encodings accepted in version-3 pushes (`ValueEncoding.bit`;
    /// default all: lossy pushes are each client's choice, and every push is
    /// validated after decoding).
    public var encodings: UInt8
    /// Fetch deltas: when set, every version the server publishes moves from
    /// the previous one by a step quantized in this encoding (with the
    /// rounding error carried into the next step), and a version-3 client
    /// holding a retained version is sent those steps (`MODEL_DELTA`) instead
    /// of full weights. Default nil: full models only, the model exact.
    public var deltaEncoding: ValueEncoding?
    /// Tokens clients must present: binary clients in HELLO, HTTP clients as
    /// `Authorization: Bearer TOKEN`. Empty: no authentication.
    public var authTokens: Set<String>
    /// Whether the original demo's HTTP interface is served.
    public var serveHTTP: Bool
    /// Browser origins (`https://host:port`) allowed to send HTTP requests;
    /// a request with any other `Origin` header is refused with 403. Clients
    /// that send no `Origin` (every non-browser client) are not affected.
    public var allowedOrigins: Set<String>
    /// With tokens set, whether `/v1/model` may still be kept by shared HTTP
    /// caches (`Cache-Control: public`). Default false: `private`.
    public var publicModel: Bool
    /// Makes this an edge server: client updates are gathered (durably) and
    /// pushed to the upstream server as one update, and the edge serves the
    /// upstream's model (`EdgeUplink`); `strategy` is then not used. Default nil.
    public var upstream: EdgeConfiguration?
    /// Serve TLS on `port` (a connection whose first byte is 0x16, a TLS
    /// record, is taken through TLS, then told apart as FEDW or HTTP inside
    /// it). Default nil: clear text only.
    public var tls: ServerTLS?
    /// With `tls`: bounds on TLS handshakes in progress and per source
    /// address, checked before a ClientHello is processed (defaults: 256 at
    /// once, 20 a second per address with bursts of 40).
    public var tlsHandshakeLimits: TLSHandshakeLimits = TLSHandshakeLimits()
    /// A swift-metrics backend of the embedding app: every metric the server
    /// records is recorded through it too, under the names and dimensions of
    /// `GET /metrics` (the process-wide `MetricsSystem` is never used or
    /// bootstrapped). `GET /metrics` still serves the server's own Prometheus
    /// registry, the same series as without it. Gauges read from the server's
    /// state (model version and samples, buffered updates, open connections,
    /// the memory budget, an edge's queues) and `fed_updates_discarded_total`
    /// reach it only when `/metrics` is served. Default nil: the server's
    /// registry only.
    public var metricsFactory: (any MetricsFactory)? = nil
    /// Rounds the server runs for version-4 clients (check-in, cohorts,
    /// deadlines); nil (default): none, and `CHECK_IN` is answered
    /// `unexpected_message`. Pushes of every version are served either way.
    public var rounds: RoundConfiguration? = nil

    public init(
        host: String = "127.0.0.1", port: Int = 5000, checkpointPath: String = "model.fedk", saveEvery: Int = 1,
        serverID: String = "fed-server", maxDatasets: UInt64 = 60_000,
        strategy: any FederationStrategy = RunningAverage(), maxStaleness: Int = 16, maxUpdateSamples: UInt64 = 10_000,
        limits: Limits? = nil,
        maxHTTPBodyBytes: Int? = nil, maxConnections: Int = 1024, maxConnectionsPerAddress: Int? = nil,
        memoryBudget: Int = 256 << 20, idleTimeout: Duration = .seconds(300),
        firstBytesTimeout: Duration = .seconds(5), requestTimeout: Duration = .seconds(30),
        shutdownGrace: Duration = .seconds(10), compressions: UInt8 = 0b111, authTokens: Set<String> = [],
        serveHTTP: Bool = true, allowedOrigins: Set<String> = [], publicModel: Bool = false,
        encodings: UInt8 = 0b1_1111, deltaEncoding: ValueEncoding? = nil, upstream: EdgeConfiguration? = nil,
        tls: ServerTLS? = nil
    ) {
        self.tls = tls
        self.upstream = upstream
        self.encodings = encodings | ValueEncoding.float32.bit
        self.deltaEncoding = deltaEncoding
        self.publicModel = publicModel
        self.host = host
        self.port = port
        self.checkpointPath = checkpointPath
        self.saveEvery = saveEvery
        self.serverID = serverID
        self.maxDatasets = maxDatasets
        self.strategy = strategy
        self.maxStaleness = maxStaleness
        self.maxUpdateSamples = maxUpdateSamples
        self.limits = limits
        self.maxHTTPBodyBytes = maxHTTPBodyBytes
        self.maxConnections = maxConnections
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.memoryBudget = memoryBudget
        self.idleTimeout = idleTimeout
        self.firstBytesTimeout = firstBytesTimeout
        self.requestTimeout = requestTimeout
        self.shutdownGrace = shutdownGrace
        self.compressions = compressions
        self.authTokens = authTokens
        self.serveHTTP = serveHTTP
        self.allowedOrigins = allowedOrigins
    }
}

/// The server's TLS: its certificate and key, optionally the CA its clients'
/// certificates must chain to (mutual TLS), and whether clear text is still
/// served on the same port.
public struct ServerTLS: Sendable {
    /// PEM file of the server's certificate, then any intermediates.
    public var certificateChainPath: String
    /// PEM file of the certificate's private key.
    public var privateKeyPath: String
    /// PEM file of the CA(s) client certificates must chain to; nil: no client certificates asked for.
    public var clientCAPath: String?
    /// Also serve clear-text connections (FEDW or HTTP without TLS). Default false: refused.
    public var allowPlaintext: Bool

    public init(
        certificateChainPath: String, privateKeyPath: String, clientCAPath: String? = nil, allowPlaintext: Bool = false
    ) {
        self.certificateChainPath = certificateChainPath
        self.privateKeyPath = privateKeyPath
        self.clientCAPath = clientCAPath
        self.allowPlaintext = allowPlaintext
    }
}

/// The limits a running server enforces: the configured ones, or for those
/// left nil, values derived from the served model's raw size `R` (4 bytes a
/// weight): `max_decompressed = R` (no honest push inflates to more),
/// `max_payload = R + R/64 + 64 KiB` (zlib's worst-case growth is far below
/// 1/64, plus the message's fields), HTTP body `40 bytes a weight + 64 KiB`
/// (a form-encoded JSON number with its separator is at most about 30).
/// Blobs in version-3 frames may use only the dtypes of `encodings`.
public struct ResolvedLimits: Sendable, Equatable {
    public var frame: Limits
    public var maxHTTPBodyBytes: Int

    public init(configuration: ServerConfiguration, modelShapes: [[Int]]) {
        let weights = modelShapes.reduce(0) { $0 + ($1.reduce(1, *)) }
        let raw = max(4 * weights, 1024)
        frame =
            configuration.limits
            ?? Limits(maxPayloadBytes: raw + raw / 64 + (64 << 10), maxDecompressedBytes: raw)
        frame.version3Encodings = configuration.encodings | ValueEncoding.float32.bit
        maxHTTPBodyBytes = configuration.maxHTTPBodyBytes ?? (40 * weights + (64 << 10))
    }
}
