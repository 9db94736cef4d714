import FedCodec
import Logging

/// The federation's rules, whatever the transport: authentication, the
/// handshake, what a fetch is answered with, how a push is admitted and
/// committed, the memory budget for pushes and answers, draining,
/// idempotency keys and the metrics of all of it.
///
/// Transports (the binary protocol's and HTTP's connection handlers) are
/// adapters: they decode a request, call the service, and encode what it
/// returns. They hold no policy: every check named above has its one call
/// site here, so a new transport is one more adapter.
///
/// Thread safety: every method may be called from any thread (an event loop)
/// and never blocks on an aggregation or a checkpoint write; a push's
/// completion runs on the committer's thread.
final class FederationService: Sendable {
    let configuration: ServerConfiguration
    let limits: ResolvedLimits
    /// The served model's tensor shapes (they never change while it runs).
    let modelShapes: [[Int]]
    let store: ModelStore
    let committer: GroupCommitter
    let budget: MemoryBudget
    let lifecycle: ServerLifecycle
    let metrics: ServerMetrics
    let logger: Logger
    /// The rounds of version 4, when the server runs them.
    let rounds: (any TaskCoordinator)?
    /// Federated evaluation: evaluate tasks at check-in, the reports' history.
    let evaluation: EvaluationDesk
    /// The configured tokens as bytes, compared in constant time.
    private let tokens: [[UInt8]]

    init(
        configuration: ServerConfiguration, limits: ResolvedLimits, modelShapes: [[Int]], store: ModelStore,
        committer: GroupCommitter, budget: MemoryBudget, lifecycle: ServerLifecycle, metrics: ServerMetrics,
        logger: Logger, rounds: (any TaskCoordinator)? = nil, evaluation: EvaluationDesk? = nil
    ) {
        self.rounds = rounds
        self.evaluation =
            evaluation
            ?? EvaluationDesk(
                configuration: configuration.evaluation, store: store, maxExamples: configuration.limits.maxDatasets,
                logger: logger, metrics: metrics)
        self.configuration = configuration
        self.limits = limits
        self.modelShapes = modelShapes
        self.store = store
        self.committer = committer
        self.budget = budget
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.logger = logger
        self.tokens = configuration.security.authTokens.map { Array($0.utf8) }
    }

    /// Which adapter a request came through (the `protocol` label of the request counter).
    enum Transport: String, Sendable {
        case binary, http
    }

    /// The terms a client and the server agreed on: after HELLO for the
    /// binary protocol, implied (version 1, no compression) for HTTP.
    struct Session: Sendable {
        var clientID: String
        var version: UInt8
        /// The compression modes both sides speak (always including none).
        var compressions: CompressionSet
        var transport: Transport

        /// Whether `blob` (a tensor blob, its first byte the compression mode) travels in an agreed compression.
        func agreed(_ blob: [UInt8]) -> Bool {
            blob.first.flatMap(Compression.init(rawValue:)).map(compressions.contains) ?? false
        }

        /// An HTTP client of the original demo's form protocol.
        static func http(clientID: String) -> Session {
            Session(clientID: clientID, version: 1, compressions: .uncompressed, transport: .http)
        }
    }

    // MARK: Metrics

    /// Something an adapter observed that the metrics count.
    enum Event: Sendable {
        /// A request of `kind` (a message type, an HTTP route) arrived.
        case request(Transport, String)
        /// An ERROR (or an HTTP error answer) was sent with `code`.
        case answeredError(ErrorCode)
    }

    /// Counts `event` (the one place the request and error counters are written).
    func record(_ event: Event) {
        switch event {
        case .request(let transport, let kind): metrics.request(transport.rawValue, kind)
        case .answeredError(let code): metrics.error(code)
        }
    }

    // MARK: Authentication

    /// Whether `token` may use this server: any token when none is
    /// configured; otherwise one of the configured tokens. Every configured
    /// token is compared, each in time independent of where the bytes differ.
    func isAuthorized(token: String?) -> Bool {
        if tokens.isEmpty { return true }
        guard let token else { return false }
        let given = Array(token.utf8)
        var found = false
        for candidate in tokens where ConstantTime.equal(candidate, given) { found = true }
        return found
    }

    /// Whether shared caches may keep the model: no token is configured, or
    /// the model is declared public (`HTTPConfiguration.publicModel`).
    var modelIsPublic: Bool { tokens.isEmpty || configuration.http.publicModel }

    // MARK: Handshake

    /// The answer to HELLO: the session and its WELCOME, or an ERROR after
    /// which the connection closes.
    enum HelloOutcome: Sendable {
        case accepted(Session, Welcome)
        case refused(ErrorMessage)
    }

    /// Negotiates the version and compressions and checks the token.
    func hello(_ hello: Hello) -> HelloOutcome {
        let who = LogSafe.text(hello.clientID)
        let ours = FrameHeader.supportedVersions
        // Not a ClosedRange: building one with lower > upper would trap.
        let (low, high) = (max(hello.minVersion, ours.lowerBound), min(hello.maxVersion, ours.upperBound))
        guard low <= high else {
            logger.warning("client \(who) speaks \(hello.minVersion)...\(hello.maxVersion): no common version")
            return .refused(
                ErrorMessage(
                    code: .unsupportedVersion,
                    message:
                        "client speaks \(hello.minVersion)...\(hello.maxVersion); this server speaks \(ours.lowerBound)...\(ours.upperBound)"
                ))
        }
        guard isAuthorized(token: hello.authToken) else {
            logger.warning("client \(who) refused: \(hello.authToken.isEmpty ? "no" : "unknown") auth token")
            return .refused(ErrorMessage(code: .unauthorized, message: "a valid auth token is required"))
        }
        let compressions = CompressionSet(rawValue: hello.compressions)
            .intersection(configuration.network.compressions).union(.uncompressed)
        let model = store.snapshot()
        let welcome = Welcome(
            version: high, compressions: compressions.rawValue, serverID: configuration.network.serverID,
            modelVersion: model.version, datasets: model.datasets,
            maxPayloadBytes: UInt32(clamping: limits.frame.maxPayloadBytes),
            maxDecompressedBytes: UInt64(limits.frame.maxDecompressedBytes),
            maxDatasets: configuration.limits.maxDatasets,
            encodings: configuration.network.encodings.union(.float32).rawValue,
            deltaEncoding: configuration.aggregation.deltaEncoding?.bit ?? 0)
        return .accepted(
            Session(clientID: hello.clientID, version: high, compressions: compressions, transport: .binary), welcome)
    }

    // MARK: Fetch

    /// What a fetch is answered with.
    enum FetchAnswer: Sendable {
        /// The client holds the current version.
        case unchanged(version: UInt64, datasets: UInt64)
        /// The whole model, its payload in `compression`.
        case model(ModelSnapshot, Compression)
        /// The steps from the client's version to `snapshot`'s (MODEL_DELTA), smaller than the MODEL.
        case steps(ModelSnapshot, from: UInt64, blobs: [[UInt8]])
    }

    /// Decides the answer to a binary FETCH from a client holding `held`
    /// (0: none), wanting `wanted`, accepting the step encodings `deltaEncodings`.
    ///
    /// A version-3 client that holds a retained version and accepts the
    /// steps' encoding and their blobs' compression gets the steps when their
    /// payload is smaller than the MODEL's.
    func fetch(held: UInt64, wanted: Compression, deltaEncodings: ValueEncodingSet, session: Session) -> FetchAnswer {
        let model = store.snapshot()
        store.served(model.version, to: session.clientID)
        if held != 0 && held == model.version {
            return .unchanged(version: model.version, datasets: model.datasets)
        }
        let compression = session.compressions.contains(wanted) ? wanted : .none
        if session.version >= 3, let encoding = configuration.aggregation.deltaEncoding,
            deltaEncodings.contains(encoding), let steps = store.steps(from: held, to: model),
            steps.allSatisfy(session.agreed),
            steps.reduce(0, { $0 + 4 + $1.count }) + 26 < model.modelPayload(compression).bytes.count
        {
            record(.request(session.transport, "modelDelta"))
            return .steps(model, from: held, blobs: steps)
        }
        return .model(model, compression)
    }

    /// The current model for the original demo's fetch (recorded as served to `clientID`).
    func legacyFetch(clientID: String) -> ModelSnapshot {
        let model = store.snapshot()
        store.served(model.version, to: clientID)
        return model
    }

    // MARK: Answers held in the memory budget

    /// An answer's bytes, held in the memory budget until the transport has
    /// written them; `written()` must be called exactly once.
    struct AnswerHold: Sendable {
        fileprivate let bytes: Int
        fileprivate let budget: MemoryBudget
        fileprivate let onWritten: @Sendable () -> Void

        /// The socket has taken the answer (or the connection is gone).
        func written() {
            budget.release(bytes)
            onWritten()
        }
    }

    /// What an answer is (the latency a written fetch answer records).
    enum AnswerKind: Sendable {
        /// A model fetch: its latency is recorded when written.
        case fetch
        /// Anything else (a model resource).
        case other
    }

    /// Holds `bytes` of an answer in the memory budget, or refuses with
    /// `overloaded` when the budget has no room (nothing held).
    func holdAnswer(bytes: Int, kind: AnswerKind) -> Result<AnswerHold, ErrorMessage> {
        guard budget.reserve(bytes) else {
            logger.warning("answer refused: memory budget exhausted (\(budget.used) B held)")
            return .failure(
                ErrorMessage(code: .overloaded, message: "the server is out of memory for answers; try again later"))
        }
        let start = ContinuousClock.now
        let metrics = self.metrics
        return .success(
            AnswerHold(bytes: bytes, budget: budget) {
                if case .fetch = kind { metrics.fetchTook(seconds(since: start)) }
            })
    }

    /// A lease for the bytes of requests still arriving on one connection.
    func requestLease() -> BudgetLease { BudgetLease(budget: budget) }

    /// The ERROR for a request that the memory budget has no room for.
    static let outOfMemoryForRequests = ErrorMessage(
        code: .overloaded, message: "the server is out of memory for requests; try again later")

    // MARK: Push

    /// An update as a transport received it.
    struct PushRequest: Sendable {
        var tensors: [Tensor]
        var datasets: UInt64
        /// The client's idempotency number; 0: none.
        var pushID: UInt64 = 0
        var compression: Compression = .none
        var baseVersion: UInt64 = 0
        var isDelta: Bool = false
    }

    /// Refuses, before its tensors are decoded, a push whose blob headers
    /// declare shapes other than the model's (nil: the shapes are the model's).
    func refuseDeclaredShapes(_ declared: [[Int]]) -> ErrorMessage? {
        guard declared != modelShapes else { return nil }
        return ErrorMessage(
            code: .shapeMismatch, message: "tensor shapes \(declared.prefix(8)) differ from the model's \(modelShapes)")
    }

    /// Admits `request` and submits it to the committer; `completion` runs
    /// (on the committer's thread) once it is durable and applied, replayed
    /// for a repeated idempotency key, or rejected. Returns the ERROR when the
    /// push is refused at once (compression not agreed, draining, no room in
    /// the memory budget); `completion` is then never called.
    func push(
        _ request: PushRequest, session: Session,
        completion: @escaping @Sendable (Result<Acknowledgement, ErrorMessage>) -> Void
    ) -> ErrorMessage? {
        let client = LogSafe.text(session.clientID)
        let via = session.transport == .http ? " (HTTP)" : ""
        if !session.compressions.contains(request.compression) {
            return ErrorMessage(code: .unsupportedCompression, message: "\(request.compression) was not agreed")
        }
        if lifecycle.isDraining {
            return ErrorMessage(code: .shuttingDown, message: "the server is shutting down; push again later")
        }
        if configuration.rounds?.privacy != nil {
            return ErrorMessage(
                code: .unexpectedMessage,
                message:
                    "this server trains with differential privacy: updates arrive only as reports of its sampled rounds (protocol version 4, fed client --rounds); a push would publish an update without noise"
            )
        }
        let key = request.pushID == 0 ? nil : PushKey(clientID: session.clientID, pushID: request.pushID)
        let update = ModelStore.Update(
            tensors: request.tensors, datasets: request.datasets, key: key, clientID: session.clientID,
            baseVersion: request.baseVersion, strictBase: session.version >= 2, isDelta: request.isDelta)
        // The tensors stay in the budget (as a request) until the commit answers, so pushes
        // waiting for a slow disk cannot grow the server past the budget.
        let size = request.tensors.reduce(0) { $0 + $1.values.count * MemoryLayout<Float>.stride }
        guard budget.reserve(size, forRequest: true) else {
            logger.warning("push refused: memory budget exhausted (\(budget.used) B held)")
            return ErrorMessage(
                code: .overloaded,
                message: "the server is out of memory for pushes waiting to be stored; try again later")
        }
        let (budget, metrics, logger) = (self.budget, self.metrics, self.logger)
        let start = ContinuousClock.now
        committer.submit(update) { result in
            budget.release(size)
            metrics.pushTook(seconds(since: start))
            switch result {
            case .success(let ack) where ack.replayed:
                logger.info(
                    "repeated push \(request.pushID) from \(client)\(via): answered with its ACK, version \(ack.version)"
                )
                completion(.success(ack))
            case .success(let ack):
                logger.info(
                    "applied update from \(client)\(via): \(request.datasets) samples, version \(ack.version) (\(ack.datasets) samples)"
                )
                completion(.success(ack))
            case .failure(let rejection):
                logger.warning("rejected update from \(client)\(via): \(rejection)")
                completion(.failure(ErrorMessage(code: rejection.code, message: rejection.message)))
            }
        }
        return nil
    }

    // MARK: Rounds (version 4)

    /// Why a version-4 request of rounds cannot be served here, or nil.
    private func roundsRefusal() -> ErrorMessage? {
        rounds == nil
            ? ErrorMessage(
                code: .unexpectedMessage, message: "this server runs no rounds (start it with --rounds); push instead")
            : nil
    }

    /// A client checks in; `answer` runs once (on the rounds' queue) with its
    /// task or when to come back, or at once (on the caller's thread) with an
    /// evaluate task (`EvaluationDesk`). Returns the ticket to cancel the wait
    /// with (the connection closed; 0 for an evaluate task), or the ERROR to
    /// answer at once.
    func checkIn(
        _ checkIn: CheckIn, session: Session, answer: @escaping @Sendable (Assignment) -> Void
    ) -> Result<UInt64, ErrorMessage> {
        if let refusal = roundsRefusal() { return .failure(refusal) }
        if let bad = KeyValues.check(checkIn.properties) {
            return .failure(ErrorMessage(code: .malformedPayload, message: "properties: \(bad)"))
        }
        if !lifecycle.isDraining,
            let task = evaluation.assignment(
                for: checkIn, clientID: session.clientID, serverFeatures: configuration.rounds?.speaks ?? [])
        {
            // An evaluate task is answered at once, beside the rounds: no ticket to cancel.
            answer(task)
            return .success(0)
        }
        return .success(rounds!.checkIn(checkIn, clientID: session.clientID, answer: answer))
    }

    /// Forgets a check-in whose connection closed.
    func cancelCheckIn(_ ticket: UInt64) { rounds?.cancel(ticket: ticket) }

    /// A train task's result: held (in the memory budget) until its round
    /// closes; `completion` runs once with the ACK or the ERROR (on the
    /// rounds' queue). Returns the ERROR when it is refused at once;
    /// `completion` is then never called.
    func report(
        _ report: Report, session: Session,
        completion: @escaping @Sendable (Result<Acknowledgement, ErrorMessage>) -> Void
    ) -> ErrorMessage? {
        if let refusal = roundsRefusal() { return refusal }
        if !session.compressions.contains(report.compression) {
            return ErrorMessage(code: .unsupportedCompression, message: "\(report.compression) was not agreed")
        }
        if lifecycle.isDraining {
            return ErrorMessage(code: .shuttingDown, message: "the server is shutting down; check in again later")
        }
        if let refusal = refuseDeclaredShapes(report.tensors.map(\.shape)) { return refusal }
        let size = report.tensors.reduce(0) { $0 + $1.values.count * MemoryLayout<Float>.stride }
        guard budget.reserve(size, forRequest: true) else {
            logger.warning("report refused: memory budget exhausted (\(budget.used) B held)")
            return ErrorMessage(
                code: .overloaded, message: "the server is out of memory for reports waiting for their round")
        }
        let (budget, logger, taskID) = (self.budget, self.logger, report.taskID)
        let client = LogSafe.text(session.clientID)
        rounds!.report(report, clientID: session.clientID) { result in
            budget.release(size)
            if case .failure(let e) = result {
                logger.info("report of task \(taskID) from \(client): \(e.code)")
            }
            completion(result)
        }
        return nil
    }

    /// A request of secure aggregation (`SECAGG_KEYS`, `_SHARES`, `_INPUT`,
    /// `_UNMASK`): `completion` runs once, when the request's stage closes
    /// (on the rounds' queue). Returns the ERROR when it is refused at once;
    /// `completion` is then never called.
    func secure(
        _ message: AnyProtocolMessage, taskID: UInt64, session: Session,
        completion: @escaping @Sendable (Result<Message, ErrorMessage>) -> Void
    ) -> ErrorMessage? {
        if let refusal = roundsRefusal() { return refusal }
        guard let coordinator = rounds as? RoundCoordinator, configuration.rounds?.secureAggregation != nil else {
            return ErrorMessage(code: .unexpectedMessage, message: "this server does not run secure aggregation")
        }
        if lifecycle.isDraining {
            return ErrorMessage(code: .shuttingDown, message: "the server is shutting down; check in again later")
        }
        coordinator.secure(message, taskID: taskID, clientID: session.clientID, answer: completion)
        return nil
    }

    // MARK: Model resources

    /// The snapshot of `version` if it is current or retained.
    func retained(version: UInt64) -> ModelSnapshot? { store.retained(version: version) }

    /// The current model.
    func current() -> ModelSnapshot { store.snapshot() }
}

/// Comparison of secrets in time that depends only on their lengths.
enum ConstantTime {
    /// Whether `a` and `b` are equal, reading every byte of the shorter
    /// whatever their contents.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<min(a.count, b.count) { difference |= a[i] ^ b[i] }
        return difference == 0 && a.count == b.count
    }
}
