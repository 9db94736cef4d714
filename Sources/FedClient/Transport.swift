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
