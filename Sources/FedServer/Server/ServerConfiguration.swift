import CoreMetrics
import FedCodec
import FedStorage
import NIOCore

/// Everything `FederatedServer` can be told, one structure per concern,
/// each with defaults:
///
/// ```swift
/// var configuration = ServerConfiguration()
/// configuration.network.port = 0
/// configuration.storage.checkpointPath = "model.fedk"
/// configuration.aggregation.strategy = try StrategySpec("fedavg/k=10").strategy
/// ```
///
/// Size limits left `nil` are derived from the model the server serves (see
/// `ResolvedLimits`), so a server of the 199,210-float MLP refuses a frame or
/// a body far larger than any honest push before buffering it.
public struct ServerConfiguration: Sendable {
    /// Where the server listens, what it tells clients, and its timeouts.
    public var network: NetworkConfiguration
    /// Bounds on what clients may send and hold.
    public var limits: LimitsConfiguration
    /// What the server computes with updates and what it serves of the model.
    public var aggregation: AggregationConfiguration
    /// Where the model and its state are kept.
    public var storage: StorageConfiguration
    /// Authentication and TLS.
    public var security: SecurityConfiguration
    /// The original demo's HTTP interface.
    public var http: HTTPConfiguration
    /// Makes this an edge server: client updates are gathered (durably) and
    /// pushed to the upstream server as one update, and the edge serves the
    /// upstream's model (`EdgeUplink`); `aggregation.strategy` is then not
    /// used. Default nil.
    public var edge: EdgeConfiguration?
    /// A swift-metrics backend of the embedding app: every metric the server
    /// records is recorded through it too, under the names and dimensions of
    /// `GET /metrics` (the process-wide `MetricsSystem` is never used or
    /// bootstrapped). `GET /metrics` still serves the server's own Prometheus
    /// registry, the same series as without it. Gauges read from the server's
    /// state (model version and samples, buffered updates, open connections,
    /// the memory budget, an edge's queues) and `fed_updates_discarded_total`
    /// reach it only when `/metrics` is served. Default nil: the server's
    /// registry only.
    public var metricsFactory: (any MetricsFactory)?
    /// Rounds the server runs for version-4 clients (check-in, cohorts,
    /// deadlines); nil (default): none, and `CHECK_IN` is answered
    /// `unexpected_message`. Pushes of every version are served either way.
    public var rounds: RoundConfiguration?
    /// Federated evaluation: the share of check-ins given an evaluate task
    /// (needs `rounds`), and the evaluation history kept. Evaluation reports
    /// are taken whatever the share (HTTP `POST /v1/evaluation` needs no task).
    public var evaluation: EvaluationConfiguration

    public init(
        network: NetworkConfiguration = .init(), limits: LimitsConfiguration = .init(),
        aggregation: AggregationConfiguration = .init(), storage: StorageConfiguration = .init(),
        security: SecurityConfiguration = .init(), http: HTTPConfiguration = .init(), edge: EdgeConfiguration? = nil,
        metricsFactory: (any MetricsFactory)? = nil, rounds: RoundConfiguration? = nil,
        evaluation: EvaluationConfiguration = .init()
    ) {
        self.rounds = rounds
        self.evaluation = evaluation
        self.network = network
        self.limits = limits
        self.aggregation = aggregation
        self.storage = storage
        self.security = security
        self.http = http
        self.edge = edge
        self.metricsFactory = metricsFactory
    }
}

/// Where the server listens, what it announces to clients, and how long it
/// waits for them.
public struct NetworkConfiguration: Sendable {
    /// Address to bind. Default 127.0.0.1 (loopback only).
    public var host: String
    /// Port to bind; 0 picks a free one (`FederatedServer.localPort` tells
    /// which). Default 5000, the original's.
    public var port: Int
    /// The server's name in WELCOME and the HTTP answer's `id`.
    public var serverID: String
    /// Compressions the server accepts and offers (uncompressed is always
    /// among them). Default all.
    public var compressions: CompressionSet
    /// Value encodings accepted in version-3 pushes (Float32 is always among
    /// them). Default all: lossy pushes are each client's choice, and every
    /// push is validated after decoding.
    public var encodings: ValueEncodingSet
    /// A connection with no traffic for this long is closed. Default 300 s.
    public var idleTimeout: Duration
    /// A new connection must send enough bytes to tell its protocol within
    /// this time, or it is closed. Default 5 s.
    public var firstBytesTimeout: Duration
    /// A request (frame, or HTTP head and body) must arrive completely within
    /// this time of its first byte, or the connection is closed. Default 30 s.
    public var requestTimeout: Duration
    /// On shutdown: how long in-flight requests may take before connections
    /// are closed regardless. Default 10 s.
    public var shutdownGrace: Duration

    public init(
        host: String = "127.0.0.1", port: Int = 5000, serverID: String = "fed-server",
        compressions: CompressionSet = .all, encodings: ValueEncodingSet = .all,
        idleTimeout: Duration = .seconds(300), firstBytesTimeout: Duration = .seconds(5),
        requestTimeout: Duration = .seconds(30), shutdownGrace: Duration = .seconds(10)
    ) {
        self.host = host
        self.port = port
        self.serverID = serverID
        self.compressions = compressions
        self.encodings = encodings
        self.idleTimeout = idleTimeout
        self.firstBytesTimeout = firstBytesTimeout
        self.requestTimeout = requestTimeout
        self.shutdownGrace = shutdownGrace
    }
}

/// Bounds on what clients may send and what the server holds for them.
public struct LimitsConfiguration: Sendable {
    /// Frame and blob limits of the binary protocol; nil (default): derived
    /// from the model.
    public var frame: Limits?
    /// Largest `datasets` one update may claim. Default 60,000.
    public var maxDatasets: UInt64
    /// Connections served at once. One more than this is answered `overloaded`
    /// (binary) or `503` (HTTP) and closed. Default 1,024.
    public var maxConnections: Int
    /// Connections from one IP address at once; nil (default): no such limit.
    public var maxConnectionsPerAddress: Int?
    /// Bytes the server may hold for requests still arriving and answers still
    /// being sent, across all connections, and for the retained versions.
    /// Default 256 MiB. A request that would exceed it is answered
    /// `overloaded`/`503` and its connection closed.
    public var memoryBudget: Int

    public init(
        frame: Limits? = nil, maxDatasets: UInt64 = 60_000, maxConnections: Int = 1024,
        maxConnectionsPerAddress: Int? = nil, memoryBudget: Int = 256 << 20
    ) {
        self.frame = frame
        self.maxDatasets = maxDatasets
        self.maxConnections = maxConnections
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.memoryBudget = memoryBudget
    }
}

/// What the server computes with updates, and how it serves the versions.
public struct AggregationConfiguration: Sendable {
    /// What the server computes with updates. Default: the original's running average.
    public var strategy: any FederationStrategy
    /// Versions retained as bases of deltas; older bases are too stale.
    /// Default 16; each takes a copy of the model from the memory budget.
    public var maxStaleness: Int
    /// Most samples one update counts for in a strategy's weights. Default 10,000.
    public var maxUpdateSamples: UInt64
    /// Fetch deltas: when set, every version the server publishes moves from
    /// the previous one by a step quantized in this encoding (with the
    /// rounding error carried into the next step), and a version-3 client
    /// holding a retained version is sent those steps (`MODEL_DELTA`) instead
    /// of full weights. Default nil: full models only, the model exact.
    public var deltaEncoding: ValueEncoding?

    public init(
        strategy: any FederationStrategy = RunningAverage(), maxStaleness: Int = 16,
        maxUpdateSamples: UInt64 = 10_000, deltaEncoding: ValueEncoding? = nil
    ) {
        self.strategy = strategy
        self.maxStaleness = maxStaleness
        self.maxUpdateSamples = maxUpdateSamples
        self.deltaEncoding = deltaEncoding
    }
}

/// Where the model and its state are resumed from and saved, and how often.
public struct StorageConfiguration: Sendable {
    /// Checkpoint file: resumed from on start, written atomically (the store
    /// when `checkpointStore` is nil). Default `model.fedk`.
    public var checkpointPath: String
    /// Where the model and its state are resumed from and saved; nil
    /// (default): a `FileCheckpointStore` at `checkpointPath`. Acknowledged
    /// updates are as durable as this store keeps its `CheckpointStore` contract.
    public var checkpointStore: (any CheckpointStore)?
    /// 1 (default): every update is durable before it is acknowledged.
    /// N > 1: write a checkpoint every N versions (faster; a crash loses up to N-1 updates).
    public var saveEvery: Int

    public init(
        checkpointPath: String = "model.fedk", checkpointStore: (any CheckpointStore)? = nil, saveEvery: Int = 1
    ) {
        self.checkpointPath = checkpointPath
        self.checkpointStore = checkpointStore
        self.saveEvery = saveEvery
    }

    /// The store the server uses: `checkpointStore`, or the file at `checkpointPath`.
    var resolvedStore: any CheckpointStore { checkpointStore ?? FileCheckpointStore(path: checkpointPath) }
}

/// Who may talk to the server, and over what.
public struct SecurityConfiguration: Sendable {
    /// Tokens clients must present: binary clients in HELLO, HTTP clients as
    /// `Authorization: Bearer TOKEN`. Empty (default): no authentication.
    public var authTokens: Set<String>
    /// Serve TLS on the port (a connection whose first byte is 0x16, a TLS
    /// record, is taken through TLS, then told apart as FEDW or HTTP inside
    /// it). Default nil: clear text only.
    public var tls: ServerTLS?

    public init(authTokens: Set<String> = [], tls: ServerTLS? = nil) {
        self.authTokens = authTokens
        self.tls = tls
    }
}

/// The original demo's HTTP interface, served on the same port as the binary protocol.
public struct HTTPConfiguration: Sendable {
    /// Whether it is served. Default true.
    public var enabled: Bool
    /// Largest request body; nil (default): derived from the model (40 bytes
    /// per weight + 64 KiB).
    public var maxBodyBytes: Int?
    /// Browser origins (`https://host:port`) allowed to send requests; a
    /// request with any other `Origin` header is refused with 403. Clients
    /// that send no `Origin` (every non-browser client) are not affected.
    public var allowedOrigins: Set<String>
    /// With tokens set, whether `/v1/model` may still be kept by shared HTTP
    /// caches (`Cache-Control: public`). Default false: `private`.
    public var publicModel: Bool

    public init(
        enabled: Bool = true, maxBodyBytes: Int? = nil, allowedOrigins: Set<String> = [], publicModel: Bool = false
    ) {
        self.enabled = enabled
        self.maxBodyBytes = maxBodyBytes
        self.allowedOrigins = allowedOrigins
        self.publicModel = publicModel
    }
}

/// The server's TLS: its certificate and key, optionally the CA its clients'
/// certificates must chain to (mutual TLS), whether clear text is still
/// served on the same port, and the bounds on handshakes.
public struct ServerTLS: Sendable {
    /// PEM file of the server's certificate, then any intermediates.
    public var certificateChainPath: String
    /// PEM file of the certificate's private key.
    public var privateKeyPath: String
    /// PEM file of the CA(s) client certificates must chain to; nil: no client certificates asked for.
    public var clientCAPath: String?
    /// Also serve clear-text connections (FEDW or HTTP without TLS). Default false: refused.
    public var allowPlaintext: Bool
    /// Bounds on TLS handshakes in progress and per source address, checked
    /// before a ClientHello is processed (defaults: 256 at once, 20 a second
    /// per address with bursts of 40).
    public var handshakeLimits: TLSHandshakeLimits

    public init(
        certificateChainPath: String, privateKeyPath: String, clientCAPath: String? = nil, allowPlaintext: Bool = false,
        handshakeLimits: TLSHandshakeLimits = TLSHandshakeLimits()
    ) {
        self.certificateChainPath = certificateChainPath
        self.privateKeyPath = privateKeyPath
        self.clientCAPath = clientCAPath
        self.allowPlaintext = allowPlaintext
        self.handshakeLimits = handshakeLimits
    }
}

/// The limits a running server enforces: the configured ones, or for those
/// left nil, values derived from the served model's raw size `R` (4 bytes a
/// weight): `max_decompressed = R` (no honest push inflates to more),
/// `max_payload = R + R/64 + 64 KiB` (zlib's worst-case growth is far below
/// 1/64, plus the message's fields), HTTP body `40 bytes a weight + 64 KiB`
/// (a form-encoded JSON number with its separator is at most about 30).
/// Blobs in version-3 frames may use only the dtypes of `network.encodings`
/// (and Float32).
public struct ResolvedLimits: Sendable, Equatable {
    public var frame: Limits
    public var maxHTTPBodyBytes: Int

    public init(configuration: ServerConfiguration, modelShapes: [[Int]]) {
        let weights = modelShapes.reduce(0) { $0 + ($1.reduce(1, *)) }
        let raw = max(4 * weights, 1024)
        frame =
            configuration.limits.frame
            ?? Limits(maxPayloadBytes: raw + raw / 64 + (64 << 10), maxDecompressedBytes: raw)
        frame.version3Encodings = configuration.network.encodings.union(.float32).rawValue
        maxHTTPBodyBytes = configuration.http.maxBodyBytes ?? (40 * weights + (64 << 10))
    }
}
