import FedCodec
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The server: one TCP port speaking the binary protocol and the original
/// demo's HTTP, in front of a `ModelStore` whose updates are made durable by
/// a `GroupCommitter`.
///
/// Lifecycle: `start` resumes from the checkpoint (or starts from `initial`),
/// binds, and returns once listening; `shutdown` stops accepting, lets
/// connections finish what they are doing, writes the checkpoint and returns.
public final class FederatedServer: Sendable {
    public let configuration: ServerConfiguration
    public let store: ModelStore
    public let committer: GroupCommitter
    public let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    /// The address actually bound (with the real port when 0 was asked for).
    public var localPort: Int { channel.localAddress?.port ?? configuration.port }

    /// Resumes or creates the model and starts listening.
    /// Throws if the checkpoint exists but cannot be read (never starts fresh
    /// over it), or if the address cannot be bound.
    public static func start(
        configuration: ServerConfiguration, initial: @autoclosure () -> [Tensor],
        logger: Logger = Logger(label: "fed.server"),
        threads: Int = System.coreCount
    ) throws -> FederatedServer {
        let snapshot: ModelSnapshot
        if let resumed = try CheckpointFile.load(from: configuration.checkpointPath) {
            snapshot = resumed
            logger.info(
                "resumed version \(resumed.version) (\(resumed.datasets) samples) from \(configuration.checkpointPath)")
        } else {
            snapshot = ModelSnapshot(version: 0, datasets: 0, tensors: initial())
            logger.info("no checkpoint at \(configuration.checkpointPath): starting from fresh weights")
        }
        let store = ModelStore(initial: snapshot, configuration: .init(maxDatasets: configuration.maxDatasets))
        let committer = GroupCommitter(
            store: store, path: configuration.checkpointPath, saveEvery: configuration.saveEvery)
        if configuration.saveEvery > 1 {
            logger.warning("--save-every \(configuration.saveEvery): updates are acknowledged before they are durable")
        }
        return try FederatedServer(
            configuration: configuration, store: store, committer: committer, logger: logger, threads: threads)
    }

    private init(
        configuration: ServerConfiguration, store: ModelStore, committer: GroupCommitter, logger: Logger, threads: Int
    ) throws {
        self.configuration = configuration
        self.store = store
        self.committer = committer
        self.logger = logger
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        self.group = group
        let context = ServerContext(
            configuration: configuration, store: store, committer: committer, logger: logger)
        let counter = ConnectionCounter(limit: configuration.maxConnections)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard counter.acquire() else {
                        logger.warning(
                            "connection from \(channel.remoteAddress?.description ?? "?") refused: \(configuration.maxConnections) connections already open"
                        )
                        channel.close(promise: nil)
                        return
                    }
                    channel.closeFuture.whenComplete { _ in counter.release() }
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: configuration.idleTimeout))
                    try sync.addHandler(IdleConnectionCloser(logger: logger))
                    try sync.addHandler(ProtocolSniffer(context: context))
                }
            }
        self.channel = try bootstrap.bind(host: configuration.host, port: configuration.port).wait()
        self.connectionCounter = counter
    }

    private let connectionCounter: ConnectionCounter

    /// Connections open now.
    public var openConnections: Int { connectionCounter.count }

    /// Stops accepting, waits up to `grace` for open connections to finish,
    /// writes the checkpoint, and releases the threads.
    public func shutdown(grace: TimeAmount = .seconds(5)) throws {
        try? channel.close().wait()
        let deadline = NIODeadline.now() + grace
        while connectionCounter.count > 0 && NIODeadline.now() < deadline {
            usleep(10_000)
        }
        try committer.flush()
        logger.info("checkpoint written: version \(store.snapshot().version)")
        try group.syncShutdownGracefully()
    }
}

/// What every connection handler needs.
struct ServerContext: Sendable {
    let configuration: ServerConfiguration
    let store: ModelStore
    let committer: GroupCommitter
    let logger: Logger
}

/// Counts connections against a limit.
final class ConnectionCounter: Sendable {
    private let value = Atomic<Int>(0)
    let limit: Int
    init(limit: Int) { self.limit = limit }
    var count: Int { value.load(ordering: .relaxed) }
    func acquire() -> Bool {
        let now = value.add(1, ordering: .relaxed).newValue
        if now > limit {
            value.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }
    func release() { value.subtract(1, ordering: .relaxed) }
}
