import Dispatch
import FedCodec

/// What a fetch returned.
public enum FetchResult: Sendable {
    case model(version: UInt64, datasets: UInt64, tensors: [Tensor])
    /// The server still has the version the client holds.
    case unchanged(version: UInt64, datasets: UInt64)
}

/// How a client reaches the server: the binary protocol or the original's HTTP.
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

/// The binary protocol over one connection, reconnecting (with a new
/// handshake) after any failure. Each `fetch` and `push` ends within
/// `timeout` seconds, connecting and handshaking included, and by the time
/// `cutoff` holds.
///
/// With version 3 (`encoding` other than lossless, or `acceptDeltas`) the
/// transport keeps the last model it fetched: fetches then ask for the steps
/// from that version (`MODEL_DELTA`, applied here bit for bit), and delta
/// pushes are formed against it. A delta the server cannot place
/// (`unknown_base`) is sent again as full weights.
public final class BinaryTransport: ModelTransport {
    public let host: String
    public let port: Int
    public let timeout: Double
    /// Ends calls at the time it holds, from any thread (nil: only `timeout` does).
    public let cutoff: RequestCutoff?
    private var session: ClientSession
    private var connection: Connection?
    private var closedBytes = (sent: 0, received: 0)

    public var clientID: String { session.clientID }
    public var encoding: WireEncoding { session.encoding }
    /// Full models fetched and `MODEL_DELTA` answers applied.
    public var fullFetches: Int { session.fullFetches }
    public var deltaFetches: Int { session.deltaFetches }

    public init(
        host: String, port: Int, clientID: String, compression: Compression = .shuffleZlib, timeout: Double = 30,
        authToken: String = "", encoding: WireEncoding = .lossless, acceptDeltas: Bool = false,
        cutoff: RequestCutoff? = nil
    ) {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.cutoff = cutoff
        session = ClientSession(
            clientID: clientID, authToken: authToken, compression: compression, encoding: encoding,
            acceptDeltas: acceptDeltas)
    }

    public var bytesSent: Int { closedBytes.sent + (connection?.bytesSent ?? 0) }
    public var bytesReceived: Int { closedBytes.received + (connection?.bytesReceived ?? 0) }

    public func reset() {
        if let c = connection {
            closedBytes.sent += c.bytesSent
            closedBytes.received += c.bytesReceived
        }
        connection = nil
    }

    /// The open, handshaken connection, opening one if needed, with
    /// `deadline` for everything it does until the next call. A connection
    /// whose handshake fails is dropped, so the next call starts afresh.
    private func connected(by deadline: DispatchTime) throws -> Connection {
        if let c = connection {
            c.deadline = deadline
            return c
        }
        let c = try Connection(host: host, port: port, timeout: timeout, deadline: deadline, cutoff: cutoff)
        connection = c
        do {
            c.version = try session.welcomed(c.request(session.hello))
        } catch {
            reset()
            throw error
        }
        return c
    }

    /// Sends `message` and returns the answer; a failure other than the
    /// server's answer drops the connection.
    private func call(_ message: Message, by deadline: DispatchTime) throws -> Message {
        do {
            return try connected(by: deadline).request(message, level: 1)
        } catch {
            reset()
            throw error
        }
    }

    /// `timeout` seconds from now: the end of one call.
    private func callDeadline() -> DispatchTime { DispatchTime.now() + .nanoseconds(Int(min(timeout, 1e9) * 1e9)) }

    public func fetch(heldVersion: UInt64) throws -> FetchResult {
        let deadline = callDeadline()
        _ = try connected(by: deadline)
        let (message, pending) = session.fetch(heldVersion: heldVersion)
        return try session.fetched(call(message, by: deadline), pending)
    }

    public func push(_ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> (
        version: UInt64, datasets: UInt64
    ) {
        let deadline = callDeadline()
        _ = try connected(by: deadline)
        let (message, pending) = session.push(tensors, datasets: datasets, baseVersion: baseVersion, pushID: pushID)
        do {
            return try session.pushed(call(message, by: deadline), pending)
        } catch let e as ClientError where e.code == .server(.unknownBase) {
            let full = session.fullPush(tensors, datasets: datasets, baseVersion: baseVersion, pushID: pushID)
            return try session.pushed(call(full, by: deadline), .lossless)
        }
    }
}

/// The original demo's HTTP form protocol: a new connection per request,
/// JSON weights. Compatible with the original Flask server and `fed server`.
/// Each request, its answer included, ends within `timeout` seconds.
public final class HTTPTransport: ModelTransport {
    public let host: String
    public let port: Int
    public let clientID: String
    public let timeout: Double
    public private(set) var bytesSent = 0
    public private(set) var bytesReceived = 0

    public init(host: String, port: Int, clientID: String, timeout: Double = 60) {
        self.host = host
        self.port = port
        self.clientID = clientID
        self.timeout = timeout
    }

    public func reset() {}

    /// POSTs form fields to `/`; returns status and body.
    func post(_ fields: [(String, [UInt8])]) throws -> (Int, [UInt8]) {
        var body: [UInt8] = []
        for (i, (k, v)) in fields.enumerated() {
            if i > 0 { body.append(UInt8(ascii: "&")) }
            body += percentEncode(Array(k.utf8)) + [UInt8(ascii: "=")] + percentEncode(v)
        }
        let head =
            "POST / HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        // One deadline for the whole exchange: connecting, sending, and the answer to its last byte.
        let c = try Connection(
            host: host, port: port, timeout: timeout,
            deadline: DispatchTime.now() + .nanoseconds(Int(min(timeout, 1e9) * 1e9)))
        try c.write(Array(head.utf8) + body)
        let answer = try c.readToEnd(limit: 64 << 20)
        bytesSent += c.bytesSent
        bytesReceived += c.bytesReceived
        guard let split = findHeaderEnd(answer) else {
            throw ClientError.violation("no HTTP header in answer")
        }
        let headText = String(decoding: answer[0..<split], as: UTF8.self)
        let parts = headText.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else {
            throw ClientError.violation("bad HTTP status line")
        }
        return (status, Array(answer[(split + 4)...]))
    }

    private func findHeaderEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
        return nil
    }

    private func percentEncode(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in bytes {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(b)
            case UInt8(ascii: " "): out.append(UInt8(ascii: "+"))
            default: out += [UInt8(ascii: "%"), hex[Int(b >> 4)], hex[Int(b & 15)]]
            }
        }
        return out
    }

    private func check(_ status: Int, _ body: [UInt8]) throws {
        guard status != 200 else { return }
        let text = String(decoding: body.prefix(2000), as: UTF8.self)
        let code = text.split(separator: "\"code\": ").dropFirst().first.flatMap { UInt16($0.prefix { $0.isNumber }) }
        throw ClientError(
            code: .server(code.map(ErrorCode.init(rawValue:)) ?? .internalError), message: "HTTP \(status): \(text)",
            isRetryable: status >= 500)
    }

    public func fetch(heldVersion: UInt64) throws -> FetchResult {
        let (status, body) = try post([("id", Array(clientID.utf8)), ("send", Array("False".utf8))])
        try check(status, body)
        do throws(WeightsJSONParser.Failure) {
            let (datasets, tensors) = try LegacyJSON.parseModelAnswer(body)
            return .model(version: 0, datasets: datasets, tensors: tensors)
        } catch {
            throw ClientError.violation(error.description)
        }
    }

    /// The original's form protocol has no idempotency key: `pushID` is not sent.
    public func push(_ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> (
        version: UInt64, datasets: UInt64
    ) {
        var weights: [UInt8] = []
        LegacyJSON.appendWeights(tensors, to: &weights)
        let (status, body) = try post([
            ("id", Array(clientID.utf8)), ("send", Array("True".utf8)), ("datasets", Array(String(datasets).utf8)),
            ("weights", weights),
        ])
        try check(status, body)
        return (0, datasets)
    }
}
