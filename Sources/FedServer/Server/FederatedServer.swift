import FedCodec
import FedStorage
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The server: one TCP port speaking the binary protocol and the original
/// demo's HTTP, in front of a `ModelStore` whose updates are made durable by
/// a `GroupCommitter`.
///
/// Lifecycle: `init` resumes from the checkpoint store (or starts from
/// `initial`) without binding; `run` (a swift-service-lifecycle `Service`)
/// binds, serves until a graceful shutdown, and `boundAddress` tells where it
/// listens once it does. `start` is `init` and a bind, for callers that stop
/// the server with `shutdown` instead of running it. `shutdown` stops
/// accepting connections and new pushes, lets pushes in flight finish (at
/// most `configuration.network.shutdownGrace`), writes the checkpoint,
/// closes every connection and returns.
public final class FederatedServer: Sendable {
    public let configuration: ServerConfiguration
    /// The limits in force (configured, or derived from the model).
    public let limits: ResolvedLimits
    public let store: ModelStore
    public let committer: GroupCommitter
    /// The rounds run for version-4 clients (nil without `configuration.rounds`).
    let rounds: (any TaskCoordinator)?
    /// The federation's rules, which every connection handler calls.
    let service: FederationService
    public let logger: Logger
    /// Bytes held for clients now, against `configuration.limits.memoryBudget`.
    public let budget: MemoryBudget
    /// What `GET /metrics` reports.
    public let metrics: ServerMetrics
    /// An edge server's link to its upstream (`configuration.edge`).
    public let uplink: EdgeUplink?
    private let group: any EventLoopGroup
    /// Whether `group` was made by the server (and is shut down with it).
    private let ownsGroup: Bool
    /// Binds the configured address with every connection's pipeline.
    private let bind: @Sendable () -> EventLoopFuture<any Channel>
    private let listener: Listener
    private let registry: ConnectionRegistry
    private let lifecycle: ServerLifecycle

    /// The port bound (the real one when 0 was asked for) once listening;
    /// before, the configured one.
    public var localPort: Int { listener.channel?.localAddress?.port ?? configuration.network.port }

    /// The address the server listens on: at once when it does, else once
    /// `run` has bound it. Throws the bind's error, or `ServerStopped` if the
    /// server stopped without listening.
    public var boundAddress: SocketAddress {
        get async throws { try await listener.address() }
    }

    /// Resumes or creates the model and starts listening: `init`, then a bind.
    /// Throws as `init` does, or if the address cannot be bound.
    public static func start(
        configuration: ServerConfiguration, initial: @autoclosure () -> [Tensor],
        logger: Logger = Logger(label: "fed.server"),
        threads: Int = System.coreCount, eventLoopGroup: (any EventLoopGroup)? = nil
    ) throws -> FederatedServer {
        let server = try FederatedServer(
            configuration: configuration, initial: initial(), logger: logger, threads: threads,
            eventLoopGroup: eventLoopGroup)
        do {
            if server.listener.beginBinding() { try server.listening(on: server.bind().wait()) }
        } catch {
            server.failedToBind(error)
            if server.ownsGroup { try? server.group.syncShutdownGracefully() }
            throw error
        }
        return server
    }

    /// Resumes or creates the model, ready to listen (`run` binds).
    ///
    /// Throws if the checkpoint exists but cannot be read (never starts fresh
    /// over it), if its tensor shapes differ from `initial`'s (the shapes this
    /// server was asked to serve), if the retained versions do not fit the
    /// memory budget, or if the TLS files cannot be used.
    ///
    /// `eventLoopGroup`: the group to serve on (left running at shutdown);
    /// nil: a group of `threads` threads of the server's own.
    public convenience init(
        configuration: ServerConfiguration, initial: @autoclosure () -> [Tensor],
        logger: Logger = Logger(label: "fed.server"),
        threads: Int = System.coreCount, eventLoopGroup: (any EventLoopGroup)? = nil
    ) throws {
        let fresh = initial()
        let aggregation = configuration.aggregation
        let snapshot: ModelSnapshot
        var durable = ModelStore.Durable()
        let checkpoints = configuration.storage.resolvedStore
        if let (resumed, state) = try checkpoints.loadState() {
            let served = fresh.map(\.shape)
            let stored = resumed.tensors.map(\.shape)
            guard served == stored else {
                throw FileError(
                    "checkpoint \(checkpoints) holds tensors of shapes \(stored), but this server serves \(served); give a checkpoint of this model or another --checkpoint path"
                )
            }
            if let bad = Limits.firstOutOfRange(resumed.tensors) {
                throw FileError(
                    "checkpoint \(checkpoints) holds \(bad.value) at tensor \(bad.tensor) index \(bad.index), beyond the weights a server publishes (finite, within ±\(Limits.maxMagnitude)); restore an earlier checkpoint or give another --checkpoint path"
                )
            }
            if let rounds = state.scalars[PrivacyLedger.roundsKey], configuration.rounds?.privacy == nil {
                throw FileError(
                    "checkpoint \(checkpoints) was trained with differential privacy (\(Int(rounds)) private rounds accounted for); start with --rounds and --dp to continue its budget, or give another --checkpoint path: without them updates would be published without noise"
                )
            }
            snapshot = resumed
            durable = state
            logger.info(
                "resumed version \(resumed.version) (\(resumed.datasets) samples, \(state.buffer.count) buffered updates) from \(checkpoints)"
            )
        } else {
            if let bad = Limits.firstOutOfRange(fresh) {
                throw FileError(
                    "the initial model holds \(bad.value) at tensor \(bad.tensor) index \(bad.index), beyond the weights a server publishes (finite, within ±\(Limits.maxMagnitude))"
                )
            }
            snapshot = ModelSnapshot(version: 0, datasets: 0, tensors: fresh)
            logger.info("no checkpoint in \(checkpoints): starting from fresh weights")
        }
        if let rounds = configuration.rounds {
            if let problem = rounds.problem() { throw FileError("rounds: \(problem)") }
            if case .cohorts(let n) = rounds.admission, configuration.aggregation.maxStaleness < n - 1 {
                // A cohort that closes after the others open with it published would always be abandoned.
                throw FileError(
                    "rounds: \(n) cohorts in flight need a staleness window of at least \(n - 1) versions (the server's is \(configuration.aggregation.maxStaleness))"
                )
            }
            if configuration.edge != nil {
                throw FileError("an edge server runs no rounds: give rounds to the root server")
            }
            // A held check-in or report sends nothing: the idle timeout would close it first.
            let idle = configuration.network.idleTimeout
            if rounds.deadline >= idle || rounds.maxWait >= idle {
                throw FileError(
                    "rounds: the round deadline (\(rounds.deadline)) and the longest check-in wait (\(rounds.maxWait)) must be shorter than the idle timeout (\(idle)), which closes a connection whose request is held; raise --idle-timeout"
                )
            }
        }
        if let problem = configuration.evaluation.problem() { throw FileError("evaluation: \(problem)") }
        if configuration.evaluation.fraction > 0 && configuration.rounds == nil {
            throw FileError("evaluate tasks are handed out at check-in: an evaluate fraction needs rounds")
        }
        let retention = RetainedVersions(
            shapes: snapshot.tensors.map(\.shape), deltaEncoding: aggregation.deltaEncoding,
            memoryBudget: configuration.limits.memoryBudget)
        guard (0...retention.maxStaleness).contains(aggregation.maxStaleness) else {
            throw FileError(
                "max staleness \(aggregation.maxStaleness) keeps \(aggregation.maxStaleness) older versions of \(retention.versionBytes) B each; the memory budget of \(configuration.limits.memoryBudget) B holds at most \(retention.maxStaleness) (half of it); lower the staleness (--max-staleness) or raise the budget (--memory-budget)"
            )
        }
        let store = ModelStore(
            initial: snapshot, durable: durable,
            configuration: .init(
                maxDatasets: configuration.limits.maxDatasets,
                strategy: configuration.edge == nil ? aggregation.strategy : EdgeAccumulator(),
                maxStaleness: aggregation.maxStaleness, maxUpdateSamples: aggregation.maxUpdateSamples,
                deltaEncoding: aggregation.deltaEncoding))
        let metrics = ServerMetrics(factory: configuration.metricsFactory, edge: configuration.edge != nil)
        let committer = GroupCommitter(
            store: store, checkpoints: checkpoints, saveEvery: configuration.storage.saveEvery, metrics: metrics)
        committer.onWriteFailure = { error in logger.error("checkpoint write failed: \(error)") }
        if configuration.storage.saveEvery > 1 {
            logger.warning(
                "--save-every \(configuration.storage.saveEvery): updates are acknowledged before they are durable")
        }
        try self.init(
            configuration: configuration, store: store, committer: committer, metrics: metrics, logger: logger,
            threads: threads, eventLoopGroup: eventLoopGroup)
    }

    private init(
        configuration: ServerConfiguration, store: ModelStore, committer: GroupCommitter, metrics: ServerMetrics,
        logger: Logger, threads: Int, eventLoopGroup: (any EventLoopGroup)?
    ) throws {
        var configuration = configuration
        if configuration.evaluation.fraction > 0 { configuration.rounds?.features.insert(.evaluation) }
        self.metrics = metrics
        self.configuration = configuration
        self.uplink = configuration.edge.map {
            EdgeUplink(configuration: $0, committer: committer, logger: logger, metrics: metrics)
        }
        self.store = store
        self.committer = committer
        self.logger = logger
        let rounds = try configuration.rounds.map { r -> any TaskCoordinator in
            switch r.admission {
            case .rounds, .cohorts:
                do {
                    return try RoundCoordinator(
                        configuration: r, store: store, committer: committer, logger: logger, metrics: metrics)
                } catch {
                    throw FileError("differential privacy: \(error)")
                }
            case .continuous:
                return ContinuousAdmission(
                    configuration: r, store: store, committer: committer, logger: logger, metrics: metrics)
            }
        }
        self.rounds = rounds
        let shapes = store.snapshot().tensors.map(\.shape)
        let limits = ResolvedLimits(configuration: configuration, modelShapes: shapes)
        self.limits = limits
        let retention = RetainedVersions(
            shapes: shapes, deltaEncoding: configuration.aggregation.deltaEncoding,
            memoryBudget: configuration.limits.memoryBudget)
        let retainedBytes = retention.bytes(maxStaleness: configuration.aggregation.maxStaleness)
        let budget = MemoryBudget(limit: configuration.limits.memoryBudget - retainedBytes)
        self.budget = budget
        let lifecycle = ServerLifecycle()
        self.lifecycle = lifecycle
        let group = eventLoopGroup ?? MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        self.group = group
        self.ownsGroup = eventLoopGroup == nil
        let tls = try configuration.security.tls?.makeContext()
        if let warning = configuration.security.tls?.validityWarning() { logger.warning("\(warning)") }
        let registry = ConnectionRegistry(
            limit: configuration.limits.maxConnections, perAddressLimit: configuration.limits.maxConnectionsPerAddress)
        self.registry = registry
        let service = FederationService(
            configuration: configuration, limits: limits, modelShapes: shapes, store: store, committer: committer,
            budget: budget, lifecycle: lifecycle, metrics: metrics, logger: logger, rounds: rounds,
            evaluation: EvaluationDesk(
                configuration: configuration.evaluation, store: store, maxExamples: configuration.limits.maxDatasets,
                logger: logger, metrics: metrics, seed: configuration.rounds?.seed))
        self.service = service
        let context = ServerContext(
            configuration: configuration, limits: limits, modelShapes: shapes, store: store, committer: committer,
            budget: budget, lifecycle: lifecycle, metrics: metrics, registry: registry, logger: logger, tls: tls,
            handshakes: HandshakeLimiter(limits: configuration.security.tls?.handshakeLimits ?? TLSHandshakeLimits()),
            service: service)
        let (host, port) = (configuration.network.host, configuration.network.port)
        self.listener = Listener()
        self.bind = { FederatedServer.bootstrap(group: group, context: context).bind(host: host, port: port) }
        logger.info(
            "limits: frame payload \(limits.frame.maxPayloadBytes) B, decompressed \(limits.frame.maxDecompressedBytes) B, HTTP body \(limits.maxHTTPBodyBytes) B, memory budget \(configuration.limits.memoryBudget) B, \(configuration.limits.maxConnections) connections"
        )
        logger.info(
            "retained versions: \(configuration.aggregation.maxStaleness) older versions of \(retention.versionBytes) B take \(retainedBytes) B of the memory budget, \(budget.limit) B left for requests and answers; max staleness at most \(retention.maxStaleness) with this budget and model"
        )
    }

    /// The listening socket's bootstrap: options, and every accepted
    /// connection's pipeline (admission by the registry, traffic counting,
    /// the idle timeout, then the protocol sniffer).
    private static func bootstrap(group: any EventLoopGroup, context: ServerContext) -> ServerBootstrap {
        let (registry, metrics, logger) = (context.registry, context.metrics, context.logger)
        let idleTimeout = TimeAmount(context.configuration.network.idleTimeout)
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            // NIO keeps each connection's receive buffers for reuse (up to one per read of a
            // cycle): after one push at its defaults (64 KiB reads, 4 a cycle) 10,000 connections
            // held 640 MB. One buffer of at most 16 KiB a connection.
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(
                .recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 8 << 10)
            )
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let refusal: String?
                    switch registry.admit(channel) {
                    case .served:
                        refusal = nil
                        metrics.connectionsAccepted.add(1, ordering: .relaxed)
                    case .refused(let reason):
                        refusal = reason
                        metrics.connectionsRefused.add(1, ordering: .relaxed)
                    case .dropped:
                        metrics.connectionsRefused.add(1, ordering: .relaxed)
                        logger.warning(
                            "connection from \(channel.remoteAddress?.description ?? "?") dropped: over the connection limit"
                        )
                        channel.close(promise: nil)
                        return
                    }
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(TrafficCounter(metrics: metrics))
                    try sync.addHandler(IdleStateHandler(allTimeout: idleTimeout))
                    try sync.addHandler(IdleConnectionCloser(logger: logger))
                    try sync.addHandler(ProtocolSniffer(context: context, refusal: refusal))
                }
            }
    }

    /// Records the bound `channel` and starts an edge's uplink; closes the
    /// channel instead if the server was shut down meanwhile.
    private func listening(on channel: any Channel) throws {
        guard listener.bound(channel) else {
            channel.close(promise: nil)
            throw ServerStopped()
        }
        uplink?.start()
    }

    /// Records that the bind failed (`boundAddress` throws `error`) and that the server is stopped.
    private func failedToBind(_ error: any Error) {
        listener.failed(error)
        if lifecycle.beginShutdown() { lifecycle.markStopped(error) }
    }

    /// Connections being served now.
    public var openConnections: Int { registry.count }

    /// Whether `shutdown` has begun (new pushes are refused with `shutting_down`).
    public var isDraining: Bool { lifecycle.isDraining }

    /// Stops the server and returns once the checkpoint is written:
    /// 1. stop accepting connections; refuse new pushes (`shutting_down`, HTTP 503);
    ///    an edge starts no more upstream rounds;
    /// 2. wait until pushes in flight are committed, at most `grace`;
    /// 3. an edge server pushes what it gathered upstream (one try), its
    ///    upstream calls, the round in flight's included, cut off when `grace`
    ///    from the start of the shutdown has passed;
    /// 4. write the checkpoint (every acknowledged update is in it);
    /// 5. close every connection and stop the event loops.
    ///
    /// Steps 1-3 end within `grace` (default `configuration.network.shutdownGrace`),
    /// or 0.5 s later for an edge whose `UpstreamLink` cannot be cut off.
    public func shutdown(grace: Duration? = nil) throws {
        // One shutdown: a second caller waits for the first to finish.
        guard lifecycle.beginShutdown() else {
            lifecycle.waitUntilStoppedBlocking()
            return
        }
        do {
            try drainAndStop(grace: grace)
            lifecycle.markStopped(nil)
        } catch {
            lifecycle.markStopped(error)
            throw error
        }
    }

    private func drainAndStop(grace: Duration?) throws {
        let deadline = NIODeadline.now() + TimeAmount(grace ?? configuration.network.shutdownGrace)
        let upstreamDeadline = DispatchTime(uptimeNanoseconds: deadline.uptimeNanoseconds)
        lifecycle.startDraining()
        // Check-ins waiting are told to come back; a round in progress is abandoned.
        rounds?.shutdown()
        uplink?.stopRounds(by: upstreamDeadline)
        if let channel = listener.close() { try? channel.close().wait() }
        if committer.waitUntilIdle(until: upstreamDeadline) {
            // Every commit has answered, and each answer was handed to its connection's event
            // loop before that: a task queued on every loop now runs after those writes.
            let writes = group.makeIterator().filter { !$0.inEventLoop }.map { $0.submit {} }
            for w in writes { _ = try? w.wait() }
        }
        uplink?.stop(finalSync: true, by: upstreamDeadline)
        try committer.flush()
        logger.info("checkpoint written: version \(store.snapshot().version)")
        for child in registry.channels() { child.close(promise: nil) }
        if ownsGroup { try group.syncShutdownGracefully() }
    }

    /// `shutdown` from async code: runs it on a thread of its own (it waits
    /// for pushes in flight) and returns when it has finished.
    public func shutdownGracefully(grace: Duration? = nil) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            Thread { c.resume(with: Result { try self.shutdown(grace: grace) }) }.start()
        }
    }
}

extension FederatedServer: Service {
    /// Binds (unless `start` did), then serves until the server stops:
    /// `shutdown`, a graceful shutdown of the `ServiceGroup` it runs in
    /// (SIGTERM, for one), or cancellation of the calling task, the last two
    /// starting `shutdown` (drain, checkpoint). Throws the bind's error (the
    /// server is then stopped) or the shutdown's.
    public func run() async throws {
        if listener.beginBinding() {
            do {
                try listening(on: try await bind().get())
            } catch is ServerStopped {
                // Shut down while binding: `shutdown` stops the rest.
            } catch {
                failedToBind(error)
                if ownsGroup { try? await group.shutdownGracefully() }
                throw error
            }
        }
        await withTaskCancellationOrGracefulShutdownHandler {
            await lifecycle.waitUntilStopped()
        } onCancelOrGracefulShutdown: {
            self.logger.info("stopping: no new connections or pushes; draining")
            Thread { try? self.shutdown() }.start()
        }
        if let error = lifecycle.stopError { throw error }
    }
}

/// Thrown by `FederatedServer.boundAddress` when the server stopped without listening.
public struct ServerStopped: Error, CustomStringConvertible {
    public var description: String { "the server stopped before it listened" }
}

/// The listening socket: not bound yet, binding, bound, failed to bind or
/// closed; and the callers of `address()` waiting for the bind.
final class Listener: Sendable {
    private enum Phase {
        case idle, binding
        case bound(any Channel)
        case failed(any Error)
        case closed
    }
    private struct State {
        var phase = Phase.idle
        var waiters: [CheckedContinuation<SocketAddress, any Error>] = []
    }
    private let state = Mutex(State())

    /// The bound channel, while listening.
    var channel: (any Channel)? {
        state.withLock { s in
            if case .bound(let channel) = s.phase { return channel }
            return nil
        }
    }

    /// True for the first caller while nothing is bound: it binds.
    func beginBinding() -> Bool {
        state.withLock { s in
            guard case .idle = s.phase else { return false }
            s.phase = .binding
            return true
        }
    }

    /// Records the bound channel; false (the channel is not kept) when closed meanwhile.
    func bound(_ channel: any Channel) -> Bool {
        let address = channel.localAddress
        let (kept, waiters) = state.withLock { s -> (Bool, [CheckedContinuation<SocketAddress, any Error>]) in
            guard case .binding = s.phase else { return (false, []) }
            s.phase = .bound(channel)
            defer { s.waiters = [] }
            return (true, s.waiters)
        }
        for w in waiters {
            if let address { w.resume(returning: address) } else { w.resume(throwing: ServerStopped()) }
        }
        return kept
    }

    func failed(_ error: any Error) { finish(.failed(error), error) }

    /// Stops listening: returns the channel to close, if one was bound.
    func close() -> (any Channel)? {
        let channel = self.channel
        finish(.closed, ServerStopped())
        return channel
    }

    private func finish(_ phase: Phase, _ error: any Error) {
        let waiters = state.withLock { s -> [CheckedContinuation<SocketAddress, any Error>] in
            if case .failed = s.phase { return [] }
            s.phase = phase
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(throwing: error) }
    }

    /// The bound address: at once when bound, else once bound; throws the
    /// bind's error, or `ServerStopped` when closed without an address.
    func address() async throws -> SocketAddress {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<SocketAddress, any Error>) in
            let now = state.withLock { s -> Result<SocketAddress, any Error>? in
                switch s.phase {
                case .idle, .binding:
                    s.waiters.append(c)
                    return nil
                case .bound(let channel):
                    return channel.localAddress.map { .success($0) } ?? .failure(ServerStopped())
                case .failed(let error): return .failure(error)
                case .closed: return .failure(ServerStopped())
                }
            }
            if let now { c.resume(with: now) }
        }
    }
}

/// Whether the server is shutting down (read by every connection), and
/// whether it has stopped (awaited by `run`).
final class ServerLifecycle: Sendable {
    private let draining = Atomic<Bool>(false)
    private struct Stop {
        var begun = false
        var stopped = false
        var error: (any Error)?
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let stop = Mutex(Stop())
    private let stoppedSignal = DispatchSemaphore(value: 0)

    var isDraining: Bool { draining.load(ordering: .acquiring) }
    func startDraining() { draining.store(true, ordering: .releasing) }

    /// True for the first caller only.
    func beginShutdown() -> Bool {
        stop.withLock { s in
            defer { s.begun = true }
            return !s.begun
        }
    }

    func markStopped(_ error: (any Error)?) {
        let waiters = stop.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.stopped = true
            s.error = error
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
        stoppedSignal.signal()
    }

    var stopError: (any Error)? { stop.withLock { $0.error } }

    func waitUntilStopped() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = stop.withLock { s -> Bool in
                if s.stopped { return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func waitUntilStoppedBlocking() {
        if stop.withLock({ $0.stopped }) { return }
        stoppedSignal.wait()
        stoppedSignal.signal()  // for any other waiter
    }
}

/// What every connection handler needs.
struct ServerContext: Sendable {
    let configuration: ServerConfiguration
    let limits: ResolvedLimits
    /// The served model's tensor shapes (they never change while it runs).
    let modelShapes: [[Int]]
    let store: ModelStore
    let committer: GroupCommitter
    let budget: MemoryBudget
    let lifecycle: ServerLifecycle
    let metrics: ServerMetrics
    let registry: ConnectionRegistry
    let logger: Logger
    /// The TLS context when `configuration.security.tls` is set.
    let tls: NIOSSLContext?
    /// Admits TLS handshakes within `configuration.security.tls.handshakeLimits`.
    let handshakes: HandshakeLimiter
    /// The federation's rules, which every connection handler calls.
    let service: FederationService

    /// The exposition text of `GET /metrics` now.
    func renderMetrics() -> String {
        let model = store.snapshot()
        return metrics.render(
            modelVersion: model.version, modelSamples: model.datasets, bufferedUpdates: store.bufferedUpdates,
            discardedUpdates: store.discardedUpdates.load(ordering: .relaxed),
            openConnections: registry.count, budgetUsed: budget.used, budgetLimit: budget.limit,
            edge: configuration.edge == nil ? nil : edgeGauges())
    }

    private func edgeGauges() -> ServerMetrics.EdgeGauges {
        let durable = store.durable()
        return ServerMetrics.EdgeGauges(
            pending: durable.edgePendingUpdates, outbox: durable.edgeOutboxUpdates,
            upstreamVersion: durable.edgeUpstreamVersion ?? 0)
    }
}
