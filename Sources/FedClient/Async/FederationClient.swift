import FedCodec
import NIOCore
import NIOPosix
import NIOSSL

/// A client of a federated server, for any program: `async` calls over one
/// persistent connection (opened on first use, reopened after a failure),
/// retried by the configured `RetryPolicy`. A cancelled task stops at once,
/// whether it waits for a connection, an answer or a retry, and gets
/// `ClientError` `.cancelled`.
///
/// This is the package's one client of the binary protocol: connecting and
/// `HELLO`, resending a delta the server cannot place (`unknown_base`) as
/// full weights, byte counting and retries live here; `BinaryTransport` is
/// its blocking face.
///
/// The actor runs on one event loop of its group (its executor is that loop),
/// the loop its connections use: its I/O, timers, retry waits and
/// bookkeeping never wait for a thread of Swift's concurrency pool. A task
/// started with `Task(executorPreference: client.taskExecutor)` runs on that
/// loop too, so it resumes as soon as its call ends however busy the pool is.
/// Messages are encoded and decoded on the loop.
///
/// The server is named by host name or address (IPv4, IPv6); an address is
/// connected to directly, a name is resolved on every connect and every
/// address it resolves to is tried (SwiftNIO's Happy Eyeballs, which resolves
/// on Dispatch's global queue). Calls on one client run one at a time, in
/// order; use several clients for parallel traffic. Every failure is a
/// `ClientError`. Releasing the client closes its connection.
///
/// ```swift
/// let client = FederationClient(host: "fed.example.org", port: 5000,
///                               configuration: .init(clientID: "device-17"))
/// if case .model(let version, _, let weights) = try await client.fetch(held: 0) { ... }
/// let ack = try await client.push(weights, datasets: 600, baseVersion: version)
/// await client.close()
/// ```
public actor FederationClient {
    /// Everything a client can be told; every field has a default but `clientID`.
    public struct Configuration: Sendable {
        /// The client's id (`HELLO`): the server's key for its pushes.
        public var clientID: String
        /// The token the server asks for; empty: none.
        public var authToken: String
        /// How failed calls are retried (default: 8 attempts, 0.25 s doubling to 10 s, jittered, 120 s in all).
        public var retryPolicy: RetryPolicy
        /// Longest wait for a connection. Default 10 s.
        public var connectTimeout: Duration
        /// Longest wait for one answer. Default 60 s.
        public var requestTimeout: Duration
        /// Compression of pushes and asked of fetches (when the server offers it). Default shuffle-zlib.
        public var compression: Compression
        /// How pushes travel (version 3): lossless by default.
        public var encoding: WireEncoding
        /// Ask for fetch deltas (`MODEL_DELTA`) when holding a model. Default false.
        public var acceptDeltas: Bool
        /// Largest frame and model the client accepts from the server.
        public var limits: Limits
        /// TLS; nil (default): clear text.
        public var tls: TLS?

        public init(
            clientID: String, authToken: String = "", retryPolicy: RetryPolicy = RetryPolicy(),
            connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(60),
            compression: Compression = .shuffleZlib, encoding: WireEncoding = .lossless, acceptDeltas: Bool = false,
            limits: Limits = .default, tls: TLS? = nil
        ) {
            self.tls = tls
            self.clientID = clientID
            self.authToken = authToken
            self.retryPolicy = retryPolicy
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
            self.compression = compression
            self.encoding = encoding
            self.acceptDeltas = acceptDeltas
            self.limits = limits
        }
    }

    /// A push's acknowledgement: the model's version and sample count after it.
    public struct Acknowledgement: Sendable, Hashable {
        public var version: UInt64
        public var datasets: UInt64
    }

    public let host: String
    public let port: Int
    public let configuration: Configuration
    /// The event loop the actor, its connections, timers and retry waits run on.
    public nonisolated let eventLoop: any EventLoop
    /// Runs on `eventLoop` the jobs of tasks that prefer it (`Task(executorPreference:)`).
    public nonisolated let taskExecutor: any TaskExecutor
    /// `eventLoop` as the actor's executor (kept: an unowned executor must outlive its uses).
    private nonisolated let serialExecutor: any SerialExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { serialExecutor.asUnownedSerialExecutor() }
    var session: ClientSession
    private var connection: Connection?
    /// Made at the first connection with TLS.
    private var tlsContext: NIOSSLContext?
    private var nextRequestID: UInt32 = 1
    private var busy = false
    private var turn: [CheckedContinuation<Void, Never>] = []
    /// Bytes sent and received on every connection, readable from any thread.
    nonisolated let traffic = Traffic()
    /// Retries made so far (every call).
    public private(set) var retries = 0
    /// How long one call may take in all (connecting, handshake, answer, every
    /// retry); nil: only the configured timeouts bound it.
    private let callTimeout: Duration?
    /// Ends calls at the time it holds, from any thread.
    private let cutoff: RequestCutoff?
    /// When the call under way must end.
    private var callDeadline = NIODeadline.distantFuture

    /// A client of `host:port` (a host name, an IPv4 or an IPv6 address),
    /// on one event loop of `eventLoopGroup` (default: SwiftNIO's shared
    /// singleton group). Nothing connects until the first call.
    public init(
        host: String, port: Int, configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.init(
            host: host, port: port, configuration: configuration, eventLoopGroup: eventLoopGroup, callTimeout: nil)
    }

    /// A client whose every call also ends within `callTimeout` and by the
    /// time `cutoff` holds (`BinaryTransport`'s bounds).
    init(
        host: String, port: Int, configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, callTimeout: Duration?,
        cutoff: RequestCutoff? = nil
    ) {
        self.host = host
        self.port = port
        self.configuration = configuration
        eventLoop = eventLoopGroup.next()
        serialExecutor = eventLoop.executor
        taskExecutor = EventLoopTaskExecutor(eventLoop)
        self.callTimeout = callTimeout
        self.cutoff = cutoff
        session = ClientSession(
            clientID: configuration.clientID, authToken: configuration.authToken,
            compression: configuration.compression, encoding: configuration.encoding,
            acceptDeltas: configuration.acceptDeltas)
    }

    deinit {
        connection?.channel.close(promise: nil)
    }

    /// Full models fetched and `MODEL_DELTA` answers applied so far.
    var fetchCounts: (full: Int, delta: Int) { (session.fullFetches, session.deltaFetches) }

    /// The server's model, or `.unchanged` when it is still version `held` (0: none held).
    public func fetch(held: UInt64 = 0) async throws(ClientError) -> FetchResult {
        try await call { () async throws(ClientError) -> FetchResult in
            let c = try await self.connected()
            let (message, pending) = self.session.fetch(heldVersion: held)
            return try self.session.fetched(await self.request(message, on: c), pending)
        }
    }

    /// Pushes `tensors`, trained from version `baseVersion`. `pushID`
    /// (default: a new random one) is the push's idempotency key, the same on
    /// every retry: a push whose answer was lost is not applied twice.
    ///
    /// `datasets` is read as the original demo's clients send it, in every
    /// protocol version (SPEC 4.2): a claim above the model's sample count at
    /// `baseVersion` is a running total (the server's count plus the
    /// client's), so the update counts for the difference; a claim at most
    /// that count is the update's own samples. A round's `report` states a
    /// count whatever the model's.
    public func push(
        _ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64 = .random(in: 1...UInt64.max)
    ) async throws(ClientError) -> Acknowledgement {
        try await call { () async throws(ClientError) -> Acknowledgement in
            let c = try await self.connected()
            let (message, pending) = self.session.push(
                tensors, datasets: datasets, baseVersion: baseVersion, pushID: pushID)
            do throws(ClientError) {
                let (v, d) = try self.session.pushed(await self.request(message, on: c), pending)
                return Acknowledgement(version: v, datasets: d)
            } catch  where error.code == .server(.unknownBase) {
                let full = self.session.fullPush(tensors, datasets: datasets, baseVersion: baseVersion, pushID: pushID)
                let (v, d) = try self.session.pushed(await self.request(full, on: c), .lossless)
                return Acknowledgement(version: v, datasets: d)
            }
        }
    }

    /// One `PING` round trip; returns how long it took.
    public func ping() async throws(ClientError) -> Duration {
        try await call { () async throws(ClientError) -> Duration in
            let c = try await self.connected()
            let nonce = UInt64.random(in: 0...UInt64.max)
            let start = ContinuousClock.now
            switch try await self.request(.ping(nonce: nonce), on: c) {
            case .pong(nonce): return ContinuousClock.now - start
            case .error(let e): throw ClientError(e)
            case let other: throw ClientError.violation("PING answered with \(other.type)")
            }
        }
    }

    /// Closes the connection (the next call opens a new one).
    public func close() async {
        guard let c = connection else { return }
        connection = nil
        let closed = eventLoop.makePromise(of: Void.self)
        c.channel.close(promise: closed)
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            closed.futureResult.whenComplete { _ in done.resume() }
        }
    }

    /// Bytes sent and received so far, frames included.
    public var bytesSent: Int { traffic.sent.load(ordering: .relaxed) }
    public var bytesReceived: Int { traffic.received.load(ordering: .relaxed) }

    // MARK: Calls

    /// One open, handshaken channel.
    struct Connection: Sendable {
        let channel: any Channel
        /// Why the channel failed, once it has.
        let failure: ChannelFailure
        let version: UInt8
        /// `host:port`, for messages.
        let peer: String
    }

    /// `host:port`, for messages.
    private var peer: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Runs `body` alone (calls take turns), retried by the policy, waiting
    /// between attempts on the event loop; the whole call ends by
    /// `callTimeout` and the cutoff.
    func call<T: Sendable>(_ body: () async throws(ClientError) -> T) async throws(ClientError) -> T {
        await waitForTurn()
        defer { endTurn() }
        callDeadline = callTimeout.map { .now() + TimeAmount($0) } ?? .distantFuture
        if let cutoff, cutoff.time <= .now() {
            throw ClientError(code: .cancelled, message: "cut off before the call to \(peer)")
        }
        return try await configuration.retryPolicy.run(
            onRetry: { _, _, _ in self.retries += 1 },
            sleep: { (wait: Duration) async throws(ClientError) in try await self.pause(wait) },
            { () async throws(ClientError) -> T in
                do throws(ClientError) {
                    return try await body()
                } catch {
                    // A failure of the connection (not a refusal by the server) drops it.
                    if error.code.serverCode == nil { self.dropConnection() }
                    throw error
                }
            })
    }

    private func waitForTurn() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { turn.append($0) }
    }

    private func endTurn() {
        if turn.isEmpty { busy = false } else { turn.removeFirst().resume() }
    }

    private func dropConnection() {
        guard let c = connection else { return }
        connection = nil
        c.channel.close(promise: nil)
    }

    /// Waits `wait` before a retry, on the event loop; a cancelled task or
    /// the cutoff ends the wait (`cancelled`).
    private func pause(_ wait: Duration) async throws(ClientError) {
        let woken = eventLoop.makePromise(of: Void.self)
        let timer = eventLoop.scheduleTask(in: TimeAmount(wait)) { woken.succeed() }
        do throws(ClientError) {
            try await bounded(
                woken.futureResult, until: .distantFuture, peer: peer, timedOut: "", ended: { timer.cancel() })
        } catch  where error.code == .cancelled {
            throw ClientError(code: .cancelled, message: "cancelled while waiting \(wait) to retry")
        }
    }

    /// The open connection, or a new one: connect, then `HELLO`.
    func connected() async throws(ClientError) -> Connection {
        if let c = connection, c.channel.isActive { return c }
        connection = nil
        let limits = configuration.limits
        let (traffic, failure) = (self.traffic, ChannelFailure())
        var settingsTLS: (NIOSSLContext, String?)? = nil
        if let settings = configuration.tls {
            let context: NIOSSLContext
            if let made = tlsContext {
                context = made
            } else {
                context = try settings.makeContext()
                tlsContext = context
            }
            settingsTLS = (context, settings.hostname(for: host))
        }
        let tls = settingsTLS
        let peer = self.peer
        let end = min(callDeadline, .now() + TimeAmount(configuration.connectTimeout))
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(max(end - .now(), .nanoseconds(1)))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            // Models arrive in hundreds of kilobytes: read them 64 KiB at a time from the start.
            .channelOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 64 << 10, maximum: 256 << 10)
            )
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let (context, name) = tls {
                        try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: name))
                    }
                    try sync.addHandler(
                        FrameChannelHandler(limits: limits, traffic: traffic, failure: failure, peer: peer))
                }
            }
        // An address needs no resolver (whose lookups run on Dispatch's global queue).
        let connecting =
            if let address = try? SocketAddress(ipAddress: host, port: port) {
                bootstrap.connect(to: address)
            } else {
                bootstrap.connect(host: host, port: port)
            }
        let channel = try await bounded(
            connecting, until: end, peer: peer,
            timedOut: "no connection to \(peer) within \(configuration.connectTimeout)",
            late: { $0.close(promise: nil) })
        var c = Connection(channel: channel, failure: failure, version: 1, peer: peer)
        do throws(ClientError) {
            let version = try session.welcomed(await request(session.hello, on: c))
            c = Connection(channel: channel, failure: failure, version: version, peer: peer)
        } catch {
            channel.close(promise: nil)
            throw error
        }
        connection = c
        return c
    }

    /// Sends `message` on `c` and waits (at most `timeout`, default
    /// `requestTimeout`, and not past the call's end) for its answer.
    func request(_ message: Message, on c: Connection, timeout: Duration? = nil) async throws(ClientError) -> Message {
        let id = nextRequestID
        nextRequestID &+= 1
        if nextRequestID == 0 { nextRequestID = 1 }
        let bytes = MessageCodec.encode(message, requestID: id, level: 1, version: c.version)
        let answer = c.channel.eventLoop.makePromise(of: Frame.self)
        // A write that never reaches the handler (the channel closed meanwhile) fails the answer too.
        let written = c.channel.eventLoop.makePromise(of: Void.self)
        let (peer, failure) = (c.peer, c.failure)
        written.futureResult.whenFailure { error in
            answer.fail(failure.error.withLock { $0 } ?? ClientError.from(error, peer: peer))
        }
        c.channel.writeAndFlush(
            FrameRequest(id: id, bytes: c.channel.allocator.buffer(bytes: bytes), answer: answer), promise: written)
        let timeout = timeout ?? configuration.requestTimeout
        let channel = c.channel
        // A request that ends unanswered closes its connection (the answer may still come).
        let frame = try await bounded(
            answer.futureResult, until: min(callDeadline, .now() + TimeAmount(timeout)), peer: peer,
            timedOut: "no answer from \(peer) within \(timeout)", ended: { channel.close(promise: nil) })
        do throws(CodecError) {
            var limits = configuration.limits
            if c.version >= 3 { limits.valueEncodings = 0b1_1111 }
            return try MessageCodec.decode(frame, limits: limits)
        } catch {
            throw ClientError.undecodable(error)
        }
    }

    /// `future`'s value (a future of `eventLoop`), unless first `deadline`
    /// passes (`timedOut` with the message `timedOut`), the cutoff's time
    /// comes or the task is cancelled (`cancelled`); then `ended` runs, and
    /// `late` takes a value that arrives afterwards. The waiting task
    /// resumes on the actor, that is on `eventLoop`.
    private func bounded<T: Sendable>(
        _ future: EventLoopFuture<T>, until deadline: NIODeadline, peer: String, timedOut: String,
        ended: @escaping @Sendable () -> Void = {}, late: @escaping @Sendable (T) -> Void = { _ in }
    ) async throws(ClientError) -> T {
        let loop = eventLoop
        let outcome = loop.makePromise(of: T.self)
        // Read and written only on `loop` (the actor runs there).
        let settled = NIOLoopBoundBox(false, eventLoop: loop)
        /// Ends the wait with `error` (on `loop`), unless it has ended.
        let end: @Sendable (ClientError) -> Void = { error in
            guard !settled.value else { return }
            settled.value = true
            outcome.fail(error)
            ended()
        }
        future.whenComplete { result in
            guard !settled.value else {
                if case .success(let value) = result { late(value) }
                return
            }
            settled.value = true
            outcome.completeWith(result)
        }
        let timer =
            deadline == .distantFuture
            ? nil : loop.scheduleTask(deadline: deadline) { end(ClientError(code: .timedOut, message: timedOut)) }
        let watch = cutoff?.watch { time in
            loop.execute {
                loop.scheduleTask(deadline: .uptimeNanoseconds(time.uptimeNanoseconds)) {
                    end(ClientError(code: .cancelled, message: "cut off before \(peer) answered"))
                }
            }
        }
        // Stopped on the event loop as soon as the wait ends (a timer left
        // running would close a connection whose answer had arrived).
        outcome.futureResult.whenComplete { [cutoff] _ in
            timer?.cancel()
            if let watch { cutoff?.unwatch(watch) }
        }
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (resume: CheckedContinuation<T, any Error>) in
                    outcome.futureResult.whenComplete { resume.resume(with: $0) }
                }
            } onCancel: {
                loop.execute {
                    end(ClientError(code: .cancelled, message: "the task was cancelled before \(peer) answered"))
                }
            }
        } catch {
            throw ClientError.from(error, peer: peer)
        }
    }
}

/// A task executor that runs its jobs on one event loop.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
