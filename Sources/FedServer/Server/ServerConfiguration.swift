import FedCodec
import NIOCore

/// Everything `FederatedServer` can be told; every parameter has a default.
public struct ServerConfiguration: Sendable {
    /// Address to bind. Default 127.0.0.1 (loopback only).
    public var host: String
    /// Port to bind; 0 picks a free one. Default 5000, the original's.
    public var port: Int
    /// Checkpoint file: resumed from on start, written atomically.
    public var checkpointPath: String
    /// 1 (default): every update is durable before it is acknowledged.
    /// N > 1: write a checkpoint every N versions (faster; a crash loses up to N-1 updates).
    public var saveEvery: Int
    /// The server's name in WELCOME and the HTTP answer's `id`.
    public var serverID: String
    /// Largest `datasets` one update may claim.
    public var maxDatasets: UInt64
    /// Frame and blob limits of the binary protocol.
    public var limits: Limits
    /// Largest HTTP request body (the original's push is about 4.8 MB).
    public var maxHTTPBodyBytes: Int
    /// Connections served at once; more are closed on arrival.
    public var maxConnections: Int
    /// A connection with no traffic for this long is closed.
    public var idleTimeout: TimeAmount
    /// A request (frame or HTTP message) must arrive completely within this
    /// time of its first byte, or the connection is closed.
    public var requestTimeout: TimeAmount
    /// Compressions the server accepts and offers (bit per mode).
    public var compressions: UInt8
    /// Tokens a binary client must present in HELLO; empty: no authentication.
    public var authTokens: Set<String>
    /// Whether the original demo's HTTP interface is served (it has no authentication).
    public var serveHTTP: Bool

    public init(
        host: String = "127.0.0.1", port: Int = 5000, checkpointPath: String = "model.fedk", saveEvery: Int = 1,
        serverID: String = "fed-server", maxDatasets: UInt64 = 60_000, limits: Limits = .default,
        maxHTTPBodyBytes: Int = 32 << 20, maxConnections: Int = 1024, idleTimeout: TimeAmount = .seconds(300),
        requestTimeout: TimeAmount = .seconds(30), compressions: UInt8 = 0b111, authTokens: Set<String> = [],
        serveHTTP: Bool = true
    ) {
        self.authTokens = authTokens
        self.serveHTTP = serveHTTP
        self.host = host
        self.port = port
        self.checkpointPath = checkpointPath
        self.saveEvery = saveEvery
        self.serverID = serverID
        self.maxDatasets = maxDatasets
        self.limits = limits
        self.maxHTTPBodyBytes = maxHTTPBodyBytes
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.compressions = compressions
    }
}
