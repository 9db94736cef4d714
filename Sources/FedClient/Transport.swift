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
/// handshake) after any failure.
///
/// With version 3 (`encoding` other than lossless, or `acceptDeltas`) the
/// transport keeps the last model it fetched: fetches then ask for the steps
/// from that version (`MODEL_DELTA`, applied here bit for bit), and delta
/// pushes are formed against it. A delta the server cannot place
/// (`unknown_base`) is sent again as full weights.
public final class BinaryTransport: ModelTransport {
    public let host: String
    public let port: Int
    public let clientID: String
    public let compression: Compression
    public let timeout: Double
    public let authToken: String
    public let encoding: WireEncoding
    /// Ask for `MODEL_DELTA` answers (version 3) when holding a model.
    public let acceptDeltas: Bool
    private var connection: Connection?
    private var closedBytes = (sent: 0, received: 0)
    private var agreed: UInt8 = 1
    private var serverEncodings: UInt8 = 1
    /// The last model fetched (version, weights), the base of delta pushes and fetches.
    private var held: (version: UInt64, datasets: UInt64, tensors: [Tensor])?
    /// Error feedback: what lossy delta pushes have not delivered yet.
    private var residual: [Tensor]?
    /// The last push built, reused unchanged when the same push is retried.
    private var lastPush: (id: UInt64, message: Message, residual: [Tensor]?)?

    /// Full models fetched and `MODEL_DELTA` answers applied.
    public private(set) var fullFetches = 0
    public private(set) var deltaFetches = 0

    public init(
        host: String, port: Int, clientID: String, compression: Compression = .shuffleZlib, timeout: Double = 30,
        authToken: String = "", encoding: WireEncoding = .lossless, acceptDeltas: Bool = false
    ) {
        self.encoding = encoding
        self.acceptDeltas = acceptDeltas
        self.authToken = authToken
        self.host = host
        self.port = port
        self.clientID = clientID
        self.compression = compression
        self.timeout = timeout
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

    /// The open, handshaken connection, opening one if needed. A connection
    /// whose handshake fails is dropped, so the next call starts afresh.
    private func connected() throws -> Connection {
        if let c = connection { return c }
        let c = try Connection(host: host, port: port, timeout: timeout)
        connection = c
        do {
            let answer = try c.request(
                .hello(
                    Hello(
                        minVersion: FrameHeader.supportedVersions.lowerBound,
                        maxVersion: FrameHeader.supportedVersions.upperBound, compressions: 0b111, clientID: clientID,
                        authToken: authToken)))
            switch answer {
            case .welcome(let w):
                agreed = w.compressions | 1
                c.version = w.version
                serverEncodings = w.version >= 3 ? w.encodings | 1 : 1
            case .error(let e): throw ClientError(e)
            default: throw ClientError.violation("HELLO answered with \(answer.type)")
            }
        } catch {
            reset()
            throw error
        }
        return c
    }

    private func call(_ message: Message) throws -> Message {
        do {
            let answer = try connected().request(message, level: 1)
            if case .error(let e) = answer {
                throw ClientError(e)
            }
            return answer
        } catch let e as ClientError where e.code.serverCode != nil {
            throw e
        } catch {
            reset()
            throw error
        }
    }

    private var wireCompression: Compression { agreed & compression.bit != 0 ? compression : .none }

    public func fetch(heldVersion: UInt64) throws -> FetchResult {
        let c = try connected()
        let deltas = acceptDeltas && c.version >= 3
        // With deltas the transport's own copy is the version held (the caller gets full weights back).
        let mine = deltas ? held : nil
        let ask = mine?.version ?? heldVersion
        switch try call(.fetch(heldVersion: ask, compression: wireCompression, deltaEncodings: deltas ? 0b1_1111 : 0)) {
        case .model(let m):
            remember(m.version, m.datasets, m.tensors)
            fullFetches += 1
            return .model(version: m.version, datasets: m.datasets, tensors: m.tensors)
        case .modelDelta(let d):
            guard let base = mine, d.fromVersion == base.version,
                d.steps.allSatisfy({ $0.map(\.shape) == base.tensors.map(\.shape) })
            else {
                held = nil
                throw ClientError.violation(
                    "MODEL_DELTA from version \(d.fromVersion) does not fit the version held")
            }
            let tensors = d.apply(to: base.tensors)
            remember(d.version, d.datasets, tensors)
            deltaFetches += 1
            return .model(version: d.version, datasets: d.datasets, tensors: tensors)
        case .modelUnchanged(let v, let d):
            if let mine, mine.version == v, heldVersion != v {
                return .model(version: v, datasets: d, tensors: mine.tensors)
            }
            return .unchanged(version: v, datasets: d)
        case let other: throw ClientError.violation("FETCH answered with \(other.type)")
        }
    }

    private func remember(_ version: UInt64, _ datasets: UInt64, _ tensors: [Tensor]) {
        guard acceptDeltas || encoding.delta else { return }
        held = (version, datasets, tensors)
    }

    public func push(_ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> (
        version: UInt64, datasets: UInt64
    ) {
        let c = try connected()
        let message: Message
        var newResidual: [Tensor]? = residual
        if let last = lastPush, last.id == pushID, pushID != 0 {
            (message, newResidual) = (last.message, last.residual)
        } else {
            (message, newResidual) = buildPush(
                tensors, datasets: datasets, baseVersion: baseVersion, pushID: pushID, version: c.version)
            lastPush = (pushID, message, newResidual)
        }
        do {
            switch try call(message) {
            case .ack(let v, let d):
                residual = newResidual
                return (v, d)
            case let other: throw ClientError.violation("PUSH answered with \(other.type)")
            }
        } catch let e as ClientError where e.code == .server(.unknownBase) {
            // The server no longer holds the base: full weights, lossless, and no error carried.
            lastPush = nil
            residual = nil
            let full = Message.push(
                Push(
                    clientID: clientID, datasets: datasets, baseVersion: baseVersion, tensors: tensors,
                    compression: wireCompression, pushID: pushID))
            switch try call(full) {
            case .ack(let v, let d): return (v, d)
            case let other: throw ClientError.violation("PUSH answered with \(other.type)")
            }
        }
    }

    /// The push message for `tensors` in the transport's encoding, and the
    /// error-feedback residual it leaves if acknowledged.
    private func buildPush(
        _ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64, version: UInt8
    ) -> (Message, [Tensor]?) {
        let values = version >= 3 && serverEncodings & encoding.values.bit != 0 ? encoding.values : .float32
        // FNV-1a of the client id: the same rounding for the same push in every run.
        let idHash = clientID.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        let seed = pushID &* 0x9E37_79B9_7F4A_7C15 &+ idHash
        let rounding: ValueEncoding.Rounding = .stochastic(seed: seed)
        guard version >= 3, encoding.delta, baseVersion != 0, let base = held, base.version == baseVersion,
            base.tensors.map(\.shape) == tensors.map(\.shape)
        else {
            // A delta encoding whose delta cannot be formed (no base held, base 0) sends full
            // weights losslessly: quantizing whole weights that coarsely would wreck the model.
            let full: ValueEncoding = encoding.delta ? .float32 : values
            return (
                .push(
                    Push(
                        clientID: clientID, datasets: datasets, baseVersion: baseVersion, tensors: tensors,
                        compression: wireCompression, pushID: pushID, encoding: full, rounding: rounding)),
                residual
            )
        }
        var delta = tensors
        for t in delta.indices {
            let r = residual?[t].values
            for i in delta[t].values.indices {
                delta[t].values[i] = tensors[t].values[i] - base.tensors[t].values[i] + (r?[i] ?? 0)
            }
        }
        var leftover: [Tensor]? = nil
        if !values.isLossless {
            var sent: [Tensor] = []
            for (t, d) in delta.enumerated() {
                // The blob encoder's rounding for this tensor: `sent` is what the server decodes.
                sent.append(
                    (try? Tensor(shape: d.shape, values: values.roundTrip(d.values, rounding: rounding.forTensor(t))))
                        ?? d)
            }
            leftover = zip(delta, sent).map { d, s in
                (try? Tensor(shape: d.shape, values: zip(d.values, s.values).map { $0 - $1 })) ?? d
            }
        }
        return (
            .push(
                Push(
                    clientID: clientID, datasets: datasets, baseVersion: baseVersion, tensors: delta,
                    compression: wireCompression, pushID: pushID, encoding: values, isDelta: true, rounding: rounding)),
            leftover
        )
    }
}

/// The original demo's HTTP form protocol: a new connection per request,
/// JSON weights. Compatible with the original Flask server and `fed server`.
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
        let c = try Connection(host: host, port: port, timeout: timeout)
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
