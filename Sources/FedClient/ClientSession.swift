import FedCodec

/// The client's side of the binary protocol without I/O: the messages to
/// send and what the answers mean, for one client over any number of
/// connections. `FederationClient` drives it over its connections (and so
/// does its blocking face, `BinaryTransport`).
///
/// State: what the last handshake agreed (version, compressions, value
/// encodings), and with version 3 the last model fetched (the base of
/// `MODEL_DELTA` answers and delta pushes), the error-feedback residual of
/// lossy delta pushes, and the last push built (a retry of the same push id
/// resends the same bytes, so its residual is taken once).
struct ClientSession: Sendable {
    let clientID: String
    let authToken: String
    let compression: Compression
    let encoding: WireEncoding
    let acceptDeltas: Bool

    /// The protocol version of the current connection (1 until a handshake).
    private(set) var version: UInt8 = 1
    private var agreed: UInt8 = 1
    private var serverEncodings: UInt8 = 1
    /// The last model fetched (version, weights), the base of delta pushes and fetches.
    private var held: (version: UInt64, datasets: UInt64, tensors: [Tensor])?
    /// Error feedback: what lossy delta pushes have not delivered yet.
    private var residual: [Tensor]?
    /// The last push built, reused unchanged when the same push is retried.
    private var lastPush: (id: UInt64, message: Message, residual: [Tensor]?)?

    /// Full models fetched and `MODEL_DELTA` answers applied.
    private(set) var fullFetches = 0
    private(set) var deltaFetches = 0

    init(clientID: String, authToken: String, compression: Compression, encoding: WireEncoding, acceptDeltas: Bool) {
        self.clientID = clientID
        self.authToken = authToken
        self.compression = compression
        self.encoding = encoding
        self.acceptDeltas = acceptDeltas
    }

    /// The `HELLO` that opens every connection.
    var hello: Message {
        .hello(
            Hello(
                minVersion: FrameHeader.supportedVersions.lowerBound,
                maxVersion: FrameHeader.supportedVersions.upperBound, compressions: 0b111, clientID: clientID,
                authToken: authToken))
    }

    /// Takes the answer to `HELLO`; returns the agreed version (frames after it use it).
    mutating func welcomed(_ answer: Message) throws(ClientError) -> UInt8 {
        switch answer {
        case .welcome(let w):
            agreed = w.compressions | 1
            version = w.version
            serverEncodings = w.version >= 3 ? w.encodings | 1 : 1
            return w.version
        case .error(let e): throw ClientError(e)
        default: throw ClientError.violation("HELLO answered with \(answer.type)")
        }
    }

    var wireCompression: Compression { agreed & compression.bit != 0 ? compression : .none }

    /// What a fetch asked, to read its answer by.
    struct PendingFetch {
        fileprivate let heldVersion: UInt64
        fileprivate let mine: (version: UInt64, datasets: UInt64, tensors: [Tensor])?
    }

    /// The `FETCH` for a caller holding `heldVersion` (with deltas, the
    /// session's own copy is the version asked about; the caller still gets
    /// full weights back).
    func fetch(heldVersion: UInt64) -> (Message, PendingFetch) {
        let deltas = acceptDeltas && version >= 3
        let mine = deltas ? held : nil
        let ask = mine?.version ?? heldVersion
        return (
            .fetch(heldVersion: ask, compression: wireCompression, deltaEncodings: deltas ? 0b1_1111 : 0),
            PendingFetch(heldVersion: heldVersion, mine: mine)
        )
    }

    /// The fetch's result from its answer.
    mutating func fetched(_ answer: Message, _ pending: PendingFetch) throws(ClientError) -> FetchResult {
        switch answer {
        case .model(let m):
            remember(m.version, m.datasets, m.tensors)
            fullFetches += 1
            return .model(version: m.version, datasets: m.datasets, tensors: m.tensors)
        case .modelDelta(let d):
            guard let base = pending.mine, d.fromVersion == base.version,
                d.steps.allSatisfy({ $0.map(\.shape) == base.tensors.map(\.shape) })
            else {
                held = nil
                throw ClientError.violation("MODEL_DELTA from version \(d.fromVersion) does not fit the version held")
            }
            let tensors = d.apply(to: base.tensors)
            remember(d.version, d.datasets, tensors)
            deltaFetches += 1
            return .model(version: d.version, datasets: d.datasets, tensors: tensors)
        case .modelUnchanged(let v, let d):
            if let mine = pending.mine, mine.version == v, pending.heldVersion != v {
                return .model(version: v, datasets: d, tensors: mine.tensors)
            }
            return .unchanged(version: v, datasets: d)
        case .error(let e): throw ClientError(e)
        case let other: throw ClientError.violation("FETCH answered with \(other.type)")
        }
    }

    private mutating func remember(_ version: UInt64, _ datasets: UInt64, _ tensors: [Tensor]) {
        guard acceptDeltas || encoding.delta else { return }
        held = (version, datasets, tensors)
    }

    /// What a push sent, to read its answer by.
    struct PendingPush {
        fileprivate let residual: [Tensor]?
        /// A push that leaves no residual (`fullPush`).
        static let lossless = PendingPush(residual: nil)
    }

    /// The `PUSH` of `tensors` in the session's encoding (the same message
    /// again when `pushID` repeats the last push).
    mutating func push(_ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64) -> (
        Message, PendingPush
    ) {
        if let last = lastPush, last.id == pushID, pushID != 0 {
            return (last.message, PendingPush(residual: last.residual))
        }
        let (message, leftover) = build(tensors, datasets: datasets, baseVersion: baseVersion, pushID: pushID)
        lastPush = (pushID, message, leftover)
        return (message, PendingPush(residual: leftover))
    }

    /// The push's acknowledgement (version, datasets) from its answer.
    /// Throws `ClientError` with the server's code when refused; for
    /// `unknown_base`, resend `fullPush(...)`.
    mutating func pushed(_ answer: Message, _ pending: PendingPush) throws(ClientError) -> (
        version: UInt64, datasets: UInt64
    ) {
        switch answer {
        case .ack(let v, let d):
            residual = pending.residual
            return (v, d)
        case .error(let e):
            if e.code == .unknownBase {
                lastPush = nil
                residual = nil
            }
            throw ClientError(e)
        case let other: throw ClientError.violation("PUSH answered with \(other.type)")
        }
    }

    /// The server no longer holds a delta's base: full weights, lossless, and no error carried.
    func fullPush(_ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64) -> Message {
        .push(
            Push(
                clientID: clientID, datasets: datasets, baseVersion: baseVersion, tensors: tensors,
                compression: wireCompression, pushID: pushID))
    }

    /// The push message for `tensors` in the session's encoding, and the
    /// error-feedback residual it leaves if acknowledged.
    private func build(_ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64) -> (
        Message, [Tensor]?
    ) {
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
