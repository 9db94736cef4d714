import FedCodec
import NIOCore
import NIOPosix
import NIOSSL

/// A client of a federated server, for any program: `async` calls over one
/// persistent connection (opened on first use, reopened after a failure),
/// retried by the configured `RetryPolicy` with `Task.sleep` (a cancelled
/// task stops waiting at once and gets `ClientError` `.cancelled`).
///
/// The server is named by host name or address (IPv4, IPv6); a name is
/// resolved on every connect and every address it resolves to is tried
/// (SwiftNIO's Happy Eyeballs). Calls on one client run one at a time, in
/// order; use several clients for parallel traffic. Every failure is a
/// `ClientError`.
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
    private let group: any EventLoopGroup
    var session: ClientSession
    private var connection: Connection?
    /// Made at the first connection with TLS.
    private var tlsContext: NIOSSLContext?
    private var nextRequestID: UInt32 = 1
    private var busy = false
    private var turn: [CheckedContinuation<Void, Never>] = []
    /// Bytes sent and received on connections that have closed.
    private var closedBytes = (sent: 0, received: 0)
    /// Retries made so far (every call).
    public private(set) var retries = 0

    /// A client of `host:port` (a host name, an IPv4 or an IPv6 address),
    /// on `eventLoopGroup` (default: SwiftNIO's shared singleton group).
    /// Nothing connects until the first call.
    public init(
        host: String, port: Int, configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.host = host
        self.port = port
        self.configuration = configuration
        self.group = eventLoopGroup
        session = ClientSession(
            clientID: configuration.clientID, authToken: configuration.authToken,
            compression: configuration.compression, encoding: configuration.encoding,
            acceptDeltas: configuration.acceptDeltas)
    }

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
        count(c)
        try? await c.channel.close().get()
    }

    /// Bytes sent and received so far, frames included.
    public var bytesSent: Int { closedBytes.sent + (connection?.traffic.sent.load(ordering: .relaxed) ?? 0) }
    public var bytesReceived: Int {
        closedBytes.received + (connection?.traffic.received.load(ordering: .relaxed) ?? 0)
    }

    // MARK: Calls

    /// One open, handshaken channel.
    struct Connection: Sendable {
        let channel: any Channel
        let traffic: Traffic
        let version: UInt8
        /// `host:port`, for messages.
        let peer: String
    }

    /// Runs `body` alone (calls take turns), retried by the policy.
    func call<T: Sendable>(_ body: () async throws(ClientError) -> T) async throws(ClientError) -> T {
        await waitForTurn()
        defer { endTurn() }
        return try await configuration.retryPolicy.run(
            onRetry: { _, _, _ in self.retries += 1 },
            { () async throws(ClientError) -> T in
                do throws(ClientError) {
                    return try await body()
                } catch {
                    // A failure of the connection (not a refusal by the server) drops it.
                    if error.code.serverCode == nil { await self.dropConnection() }
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

    private func dropConnection() async {
        guard let c = connection else { return }
        connection = nil
        count(c)
        c.channel.close(promise: nil)
    }

    private func count(_ c: Connection) {
        closedBytes.sent += c.traffic.sent.load(ordering: .relaxed)
        closedBytes.received += c.traffic.received.load(ordering: .relaxed)
    }

    /// The open connection, or a new one: connect, then `HELLO`.
    func connected() async throws(ClientError) -> Connection {
        if let c = connection, c.channel.isActive { return c }
        if let c = connection { count(c) }
        connection = nil
        let limits = configuration.limits
        let traffic = Traffic()
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
        let peer = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(TimeAmount(configuration.connectTimeout))
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
                        try sync.addHandler(FrameChannelHandler(limits: limits, traffic: traffic, peer: peer))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw ClientError.from(error, peer: peer)
        }
        var c = Connection(channel: channel, traffic: traffic, version: 1, peer: peer)
        do throws(ClientError) {
            let version = try session.welcomed(await request(session.hello, on: c))
            c = Connection(channel: channel, traffic: traffic, version: version, peer: peer)
        } catch {
            channel.close(promise: nil)
            throw error
        }
        connection = c
        return c
    }

    /// Sends `message` on `c` and waits (at most `timeout`, default
    /// `requestTimeout`) for its answer.
    func request(_ message: Message, on c: Connection, timeout: Duration? = nil) async throws(ClientError) -> Message {
        let id = nextRequestID
        nextRequestID &+= 1
        if nextRequestID == 0 { nextRequestID = 1 }
        let bytes = MessageCodec.encode(message, requestID: id, level: 1, version: c.version)
        let loop = c.channel.eventLoop
        let answer = loop.makePromise(of: Frame.self)
        let timeout = timeout ?? configuration.requestTimeout
        let timer = loop.scheduleTask(in: TimeAmount(timeout)) {
            answer.fail(ClientError(code: .timedOut, message: "no answer within \(timeout)"))
            c.channel.close(promise: nil)
        }
        // Cancelled on the event loop as soon as the answer is in, not when the
        // awaiting task next runs (on a busy machine that can be later than the timeout,
        // and the timer would close a connection whose answer had arrived).
        answer.futureResult.whenComplete { _ in timer.cancel() }
        // A write that never reaches the handler (the channel closed meanwhile) fails the answer too.
        let written = loop.makePromise(of: Void.self)
        let (peer, traffic) = (c.peer, c.traffic)
        written.futureResult.whenFailure { error in
            answer.fail(traffic.failure.withLock { $0 } ?? ClientError.from(error, peer: peer))
        }
        c.channel.writeAndFlush(
            FrameRequest(id: id, bytes: c.channel.allocator.buffer(bytes: bytes), answer: answer), promise: written)
        let frame: Frame
        do {
            // A cancelled task stops waiting at once: the answer fails with
            // `cancelled` and the connection (whose answer may still come) is closed.
            frame = try await withTaskCancellationHandler {
                try await answer.futureResult.get()
            } onCancel: {
                answer.fail(ClientError(code: .cancelled, message: "the task was cancelled during a request"))
                c.channel.close(promise: nil)
            }
        } catch {
            throw ClientError.from(error)
        }
        do throws(CodecError) {
            var limits = configuration.limits
            if c.version >= 3 { limits.valueEncodings = 0b1_1111 }
            return try MessageCodec.decode(frame, limits: limits)
        } catch {
            throw ClientError.undecodable(error)
        }
    }
}
