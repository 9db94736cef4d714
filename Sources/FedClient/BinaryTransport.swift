import Dispatch
import FedCodec
import Synchronization

/// The blocking face of `FederationClient`, for loops that run on a thread of
/// their own: each call runs the client's call and blocks the calling thread
/// until it ends. One persistent connection, reopened (with a new handshake)
/// on the next call after a failure; a delta the server cannot place
/// (`unknown_base`) is sent again as full weights, by the client.
///
/// Made from an address (`init(host:port:...)`), each `fetch` and `push`
/// makes one attempt (the caller retries, as `FederatedLoop` does) and ends
/// within `timeout` seconds, connecting and handshaking included, and by the
/// time `cutoff` holds (`ClientError` `.timedOut`, `.cancelled`).
///
/// With version 3 (`encoding` other than lossless, or `acceptDeltas`) the
/// client keeps the last model it fetched: fetches then ask for the steps
/// from that version (`MODEL_DELTA`, applied bit for bit), and delta pushes
/// are formed against it.
///
/// A call runs as a task on the client's event loop (its task executor) and
/// the calling thread waits for it, so any thread but that loop's may call,
/// a thread of Swift's concurrency pool included: the call needs no thread
/// of the pool, however many are blocked in calls. Calling on the client's
/// event loop is a programming error (it would wait for itself) and stops
/// the program. Not thread-safe: one caller at a time.
public final class BinaryTransport: ModelTransport {
    /// The async client every call runs on.
    public let client: FederationClient
    public let host: String
    public let port: Int
    /// Seconds a whole call may take (made from a client: its request timeout).
    public let timeout: Double
    /// Ends calls at the time it holds, from any thread (nil: only `timeout` does).
    public let cutoff: RequestCutoff?

    public var clientID: String { client.configuration.clientID }
    public var encoding: WireEncoding { client.configuration.encoding }
    /// Full models fetched and `MODEL_DELTA` answers applied.
    public private(set) var fullFetches = 0
    public private(set) var deltaFetches = 0

    public init(
        host: String, port: Int, clientID: String, compression: Compression = .shuffleZlib, timeout: Double = 30,
        authToken: String = "", encoding: WireEncoding = .lossless, acceptDeltas: Bool = false,
        cutoff: RequestCutoff? = nil
    ) {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.cutoff = cutoff
        let bound = Duration.nanoseconds(Int64(min(max(timeout, 0), 1e9) * 1e9))
        client = FederationClient(
            host: host, port: port,
            configuration: .init(
                clientID: clientID, authToken: authToken, retryPolicy: RetryPolicy(maxAttempts: 1),
                connectTimeout: bound, requestTimeout: bound, compression: compression, encoding: encoding,
                acceptDeltas: acceptDeltas),
            callTimeout: bound, cutoff: cutoff)
    }

    /// The blocking face of `client`, whose configuration bounds and retries
    /// each call: give it `RetryPolicy(maxAttempts: 1)` when the caller
    /// retries (as `FederatedLoop` does), or attempts multiply.
    public init(client: FederationClient) {
        self.client = client
        host = client.host
        port = client.port
        let t = client.configuration.requestTimeout.components
        timeout = Double(t.seconds) + Double(t.attoseconds) * 1e-18
        cutoff = nil
    }

    public var bytesSent: Int { client.traffic.sent.load(ordering: .relaxed) }
    public var bytesReceived: Int { client.traffic.received.load(ordering: .relaxed) }

    /// Closes the connection, so the next call reconnects.
    public func reset() {
        let client = self.client
        _ = try? wait { () async throws(ClientError) in await client.close() }
    }

    public func fetch(heldVersion: UInt64) throws -> FetchResult {
        let client = self.client
        let (result, counts) = try wait { () async throws(ClientError) in
            let result = try await client.fetch(held: heldVersion)
            return (result, await client.fetchCounts)
        }
        (fullFetches, deltaFetches) = counts
        return result
    }

    public func push(_ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> (
        version: UInt64, datasets: UInt64
    ) {
        let client = self.client
        let ack = try wait { () async throws(ClientError) in
            try await client.push(tensors, datasets: datasets, baseVersion: baseVersion, pushID: pushID)
        }
        return (ack.version, ack.datasets)
    }

    /// Runs `body` as a task on the client's event loop and blocks the thread until it ends.
    private func wait<T: Sendable>(_ body: @escaping @Sendable () async throws(ClientError) -> T) throws(ClientError)
        -> T
    {
        precondition(!client.eventLoop.inEventLoop, "BinaryTransport called on its client's event loop")
        let done = Done<T>()
        Task(executorPreference: client.taskExecutor) {
            do throws(ClientError) {
                done.finish(.success(try await body()))
            } catch {
                done.finish(.failure(error))
            }
        }
        return try done.wait().get()
    }
}

/// `BinaryTransport` over a client of one's own (TLS, a retry policy):
/// `FederationClientTransport(client:)` is `BinaryTransport(client:)`.
public typealias FederationClientTransport = BinaryTransport

/// A result handed from a task to a thread blocked waiting for it.
private final class Done<T: Sendable>: Sendable {
    private let result = Mutex<Result<T, ClientError>?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    func finish(_ r: Result<T, ClientError>) {
        result.withLock { $0 = r }
        ready.signal()
    }

    func wait() -> Result<T, ClientError> {
        ready.wait()
        return result.withLock { $0! }
    }
}
