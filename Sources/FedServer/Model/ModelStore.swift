import FedCodec
import Synchronization

/// The server's model: the current `ModelSnapshot` behind a readers-writer
/// lock, the federation strategy that turns validated updates into versions,
/// the versions it retains to form each update's delta, and the state that
/// must be durable with the model (the strategy's buffer and moments, the
/// idempotency keys of recent pushes).
///
/// Invariants:
/// - readers get a whole snapshot (every tensor of one version), never a mix;
/// - an update is applied only if it passes `validate`; a rejected update
///   changes nothing;
/// - versions increase by one each time the strategy publishes (every update
///   for the running average and FedAsync, every K for FedBuff);
/// - nothing staged is kept unless the commit step (the checkpoint write) succeeds.
public final class ModelStore: Sendable {
    /// What the store does with updates: the strategy, the limits on claims and staleness, fetch deltas.
    public struct Configuration: Sendable {
        /// Largest `datasets` one update may claim (default 60,000, the size of
        /// MNIST's training set: a client claiming a billion would replace the model).
        public var maxDatasets: UInt64
        /// What the server computes with updates. Default: the original's running average.
        public var strategy: any FederationStrategy
        /// Versions retained to form deltas `Wc - W_base`: an update whose base
        /// is older than this many versions is "too stale" (section 4.2).
        /// Memory: this many copies of the model (16 x 0.8 MB for the MNIST MLP).
        public var maxStaleness: Int
        /// Most samples one update counts for in a strategy's weights (after
        /// running totals are turned into per-update counts).
        public var maxUpdateSamples: UInt64
        /// Fetch deltas (`AggregationConfiguration.deltaEncoding`): each published
        /// version is the previous one plus a step quantized in this encoding.
        public var deltaEncoding: ValueEncoding?
        /// Milliseconds since 1970: when a push's key was accepted (keys are
        /// kept `PushLedger.retentionMilliseconds`). Default: the real-time clock.
        public var clock: @Sendable () -> UInt64

        public init(
            maxDatasets: UInt64 = 60_000, strategy: any FederationStrategy = RunningAverage(), maxStaleness: Int = 16,
            maxUpdateSamples: UInt64 = 10_000, deltaEncoding: ValueEncoding? = nil,
            clock: @escaping @Sendable () -> UInt64 = PushLedger.wallClock
        ) {
            self.deltaEncoding = deltaEncoding
            self.maxDatasets = maxDatasets
            self.strategy = strategy
            self.clock = clock
            // Bounded so that `maxStaleness + 1` cannot overflow.
            self.maxStaleness = min(max(0, maxStaleness), 1 << 40)
            self.maxUpdateSamples = max(1, maxUpdateSamples)
        }
    }

    /// What is written to the checkpoint besides the published model.
    public struct Durable: Sendable, Equatable {
        /// Idempotency keys of recent pushes (section 4.3).
        public var recentPushes: PushLedger
        /// The strategy's buffer, tensors and scalars (its weights are the model's).
        public var buffer: [BufferedUpdate]
        public var tensors: [String: [Tensor]]
        public var scalars: [String: Double]

        public init(
            recentPushes: PushLedger = PushLedger(), buffer: [BufferedUpdate] = [], tensors: [String: [Tensor]] = [:],
            scalars: [String: Double] = [:]
        ) {
            self.recentPushes = recentPushes
            self.buffer = buffer
            self.tensors = tensors
            self.scalars = scalars
        }
    }

    public let configuration: Configuration
    private let lock = ReadWriteLock()
    /// What readers see, published whole with each commit: the model, the
    /// versions retained with it and the durable state kept with it. Guarded
    /// by `lock`: read under its read lock, replaced under its write lock, so
    /// a reader (an event loop) never waits for an aggregation or a disk write.
    private struct Published {
        var current: ModelSnapshot
        /// Published versions still available as bases, oldest first (the current one last).
        var retained: [ModelSnapshot]
        var durable: Durable
    }
    nonisolated(unsafe) private var published: Published

    /// Serialises writers (`applyBatch`, `transact`): one stages, commits and
    /// publishes at a time, reading `published` as its base. It guards no
    /// state of its own; readers never take it.
    private let writer = Mutex(())
    /// The version each client id was last served (binary FETCH or HTTP), for
    /// pushes that name no base (version 1 peers, HTTP). Bounded.
    private let served = Mutex<[String: UInt64]>([:])
    /// Buffered updates discarded because their combination would have left
    /// `Limits.maxMagnitude` (acknowledged as durable, never applied).
    public let discardedUpdates = Atomic<Int>(0)
    static let servedCapacity = 65_536

    public init(initial: ModelSnapshot, durable: Durable = Durable(), configuration: Configuration = .init()) {
        self.published = Published(current: initial, retained: [initial], durable: durable)
        self.configuration = configuration
    }

    /// The current version; the caller may keep it as long as it likes.
    public func snapshot() -> ModelSnapshot {
        lock.withReadLock { published.current }
    }

    /// The state written with the current model (as last committed); never
    /// waits for a commit in progress.
    public func durable() -> Durable { lock.withReadLock { published.durable } }

    /// Version `version` if it is the current one or among the retained ones;
    /// never waits for a commit in progress.
    public func retained(version: UInt64) -> ModelSnapshot? {
        lock.withReadLock {
            published.current.version == version ? published.current : published.retained.last { $0.version == version }
        }
    }

    /// Updates waiting in the strategy's buffer (an edge server's: gathered
    /// and not yet acknowledged upstream); never waits for a commit in progress.
    public var bufferedUpdates: Int {
        let durable = durable()
        return durable.buffer.count + durable.edgeUpdates
    }

    /// Notes that `clientID` was just sent `version` (its base if it pushes without naming one).
    public func served(_ version: UInt64, to clientID: String) {
        served.withLock { map in
            if map.count >= Self.servedCapacity && map[clientID] == nil { map.removeAll(keepingCapacity: true) }
            map[clientID] = version
        }
    }

    /// Checks an update against the model without applying it.
    public func validate(_ tensors: [Tensor], datasets: UInt64, against model: ModelSnapshot) throws(RejectedUpdate) {
        guard datasets > 0, datasets <= configuration.maxDatasets else {
            throw RejectedUpdate(
                .invalidDatasets, "datasets is \(datasets); it must be in 1...\(configuration.maxDatasets)")
        }
        let expected = model.tensors.map(\.shape)
        guard tensors.map(\.shape) == expected else {
            throw RejectedUpdate(
                .shapeMismatch, "tensor shapes \(tensors.map(\.shape)) differ from the model's \(expected)")
        }
        if let bad = Limits.firstOutOfRange(tensors) {
            throw RejectedUpdate(
                .nonFiniteValue,
                "tensor \(bad.tensor) holds \(bad.value) at index \(bad.index); values must be finite and within ±\(Limits.maxMagnitude)"
            )
        }
    }

    /// Validates and applies one update, returning the snapshot after it
    /// (tests; the server goes through `applyBatch`).
    @discardableResult
    func apply(_ tensors: [Tensor], datasets: UInt64) throws(RejectedUpdate) -> ModelSnapshot {
        let result = applyBatch([Update(tensors: tensors, datasets: datasets)]) { _, _ in }
        if case .failure(let e) = result[0] { throw e }
        return snapshot()
    }

    /// One pending update of a batch.
    public struct Update: Sendable {
        public var tensors: [Tensor]
        public var datasets: UInt64
        /// The push's idempotency key (client id, push id), if it has one.
        public var key: PushKey?
        /// Who sent it (for the strategy and for the base of an unnamed version).
        public var clientID: String
        /// The version the client says it trained from; 0: not named.
        public var baseVersion: UInt64
        /// True for peers that negotiated version 2: a base older than the
        /// retained window is refused (`stale_base`) instead of being taken as
        /// the oldest retained version.
        public var strictBase: Bool
        /// `tensors` are `Wc - W_base` against `baseVersion` (version 3); the
        /// store adds them to that version's weights, or refuses the update
        /// with `unknown_base` when it does not hold that version.
        public var isDelta: Bool
        /// `datasets` is the samples this update was trained on (a version-4
        /// `REPORT`), never the original's running total (a `PUSH`).
        public var countsSamples: Bool

        public init(
            tensors: [Tensor], datasets: UInt64, key: PushKey? = nil, clientID: String = "?", baseVersion: UInt64 = 0,
            strictBase: Bool = false, isDelta: Bool = false, countsSamples: Bool = false
        ) {
            self.isDelta = isDelta
            self.countsSamples = countsSamples
            self.tensors = tensors
            self.datasets = datasets
            self.key = key
            self.clientID = clientID
            self.baseVersion = baseVersion
            self.strictBase = strictBase
        }
    }

    /// Group commit: validates each update and hands it to the strategy, in
    /// order, on a staged copy of the model and its durable state; calls
    /// `commit` with the staged snapshot and state (to write them durably),
    /// and publishes them only if `commit` returns. Rejected updates fail
    /// alone. If `commit` throws, nothing is kept and every accepted update of
    /// the batch fails with `internal_error`.
    ///
    /// An update whose key is among the remembered pushes (or earlier in the
    /// same batch) is not applied again: it succeeds with the original
    /// acknowledgement, `replayed` set.
    public func applyBatch(_ updates: [Update], commit: (ModelSnapshot, Durable) throws -> Void)
        -> [Result<Acknowledgement, RejectedUpdate>]
    {
        writer.withLock { _ in
            let base = lock.withReadLock { self.published }
            let published = base.current
            var state = Self.stage(published, base.durable)
            var version = published.version
            var retained = base.retained
            var pushes = base.durable.recentPushes
            let now = configuration.clock()
            pushes.expire(now: now)
            var changed = false
            var discardedNow = 0
            var results: [Result<Acknowledgement, RejectedUpdate>] = []
            for u in updates {
                if let key = u.key, let seen = pushes.record(key) {
                    results.append(
                        .success(Acknowledgement(version: seen.version, datasets: seen.datasets, replayed: true)))
                    continue
                }
                if u.key != nil && !pushes.hasRoom {
                    results.append(
                        .failure(
                            RejectedUpdate(
                                .overloaded,
                                "the server remembers \(PushLedger.capacity) pushes of the last \(PushLedger.retentionMilliseconds / 1000) s, its most; retry later"
                            )))
                    continue
                }
                do throws(RejectedUpdate) {
                    var u = u
                    if u.isDelta { u.tensors = try Self.undelta(u, published: published, retained: retained) }
                    try validate(u.tensors, datasets: u.datasets, against: published)
                    let update = try clientUpdate(u, version: version, retained: retained)
                    let before = (state, version, retained)
                    if configuration.strategy.accept(update, state: &state) {
                        publish(&state, version: &version, retained: &retained)
                        if let bad = Limits.firstOutOfRange(state.weights) {
                            // Publish nothing; the buffered updates this one
                            // completed would fail the same way with any next one.
                            (state, version, retained) = before
                            let discarded = state.buffer.count
                            state.buffer = []
                            if discarded > 0 { changed = true }
                            discardedNow += discarded
                            throw RejectedUpdate(
                                .nonFiniteValue,
                                "combining this update would publish \(bad.value) at tensor \(bad.tensor) index \(bad.index), beyond ±\(Limits.maxMagnitude); refused"
                                    + (discarded > 0
                                        ? ", and the \(discarded) buffered updates it completed are discarded" : "")
                            )
                        }
                    }
                    changed = true
                    if let key = u.key {
                        pushes.insert(
                            PushRecord(
                                clientID: key.clientID, pushID: key.pushID, version: version, datasets: state.samples,
                                acceptedAt: now))
                    }
                    results.append(.success(Acknowledgement(version: version, datasets: state.samples)))
                } catch {
                    results.append(.failure(error))
                }
            }
            guard changed else { return results }
            let durable = Durable(
                recentPushes: pushes, buffer: state.buffer, tensors: state.tensors, scalars: state.scalars)
            do {
                try keep(published: published, version: version, durable: durable, retained: retained, commit: commit)
                discardedUpdates.add(discardedNow, ordering: .relaxed)
            } catch {
                // The cause (it may name local paths) is for the server's log, not for clients.
                let failure = RejectedUpdate(.internalError, "the server could not store the update; try again later")
                return results.map { r in
                    r.flatMap { ack in ack.replayed ? .success(ack) : .failure(failure) }
                }
            }
            return results
        }
    }

    /// Runs `body` on a staged copy of the model and its durable state (an
    /// edge server's uplink uses it to move updates to its outbox and to take
    /// its upstream's model); when `body` returns true the staged weights are
    /// published as a new version. Kept only if `commit` (the checkpoint
    /// write) returns; rethrows its error, keeping nothing.
    public func transact<R>(
        _ body: (inout FederationState) -> (publish: Bool, result: R), commit: (ModelSnapshot, Durable) throws -> Void
    ) throws -> R {
        try writer.withLock { _ in
            let base = lock.withReadLock { self.published }
            let published = base.current
            var state = Self.stage(published, base.durable)
            var version = published.version
            var retained = base.retained
            let (publish, result) = body(&state)
            if publish {
                self.publish(&state, version: &version, retained: &retained)
                if let bad = Limits.firstOutOfRange(state.weights) {
                    throw RejectedUpdate(
                        .nonFiniteValue,
                        "the model to publish holds \(bad.value) at tensor \(bad.tensor) index \(bad.index), beyond ±\(Limits.maxMagnitude); kept the current version"
                    )
                }
            }
            var durable = base.durable
            (durable.buffer, durable.tensors, durable.scalars) = (state.buffer, state.tensors, state.scalars)
            try keep(published: published, version: version, durable: durable, retained: retained, commit: commit)
            return result
        }
    }

    /// The strategy's view of the published model and the durable state, to change and commit.
    private static func stage(_ published: ModelSnapshot, _ durable: Durable) -> FederationState {
        FederationState(
            weights: published.tensors, samples: published.datasets, buffer: durable.buffer,
            tensors: durable.tensors, scalars: durable.scalars)
    }

    /// Appends `state.weights` as version `version + 1` to `retained` (as the
    /// previous version plus a quantized step with fetch deltas), dropping
    /// versions beyond the window.
    private func publish(_ state: inout FederationState, version: inout UInt64, retained: inout [ModelSnapshot]) {
        version += 1
        var step: [UInt8]? = nil
        if let encoding = configuration.deltaEncoding, let previous = retained.last {
            step = Self.quantizeStep(from: previous.tensors, encoding: encoding, state: &state)
        }
        retained.append(ModelSnapshot(version: version, datasets: state.samples, tensors: state.weights, step: step))
        if retained.count > configuration.maxStaleness + 1 {
            retained.removeFirst(retained.count - configuration.maxStaleness - 1)
        }
    }

    /// Commits the staged version and state, makes the new version's
    /// encodings readers used of the last one, then publishes them (swapped
    /// whole under the write lock); throws, keeping nothing, if `commit`
    /// throws. Called holding `writer`, on the committer's thread.
    private func keep(
        published: ModelSnapshot, version: UInt64, durable: Durable, retained: [ModelSnapshot],
        commit: (ModelSnapshot, Durable) throws -> Void
    ) throws {
        // `publish` appends every new version to `retained` (the window holds at least one).
        let staged = version == published.version ? published : retained[retained.count - 1]
        try commit(staged, durable)
        // Readers of the new version find made the encodings they used of the
        // last one (made here, off the event loops, before anyone can ask).
        if staged !== published { staged.prepareEncodings(usedBy: published) }
        lock.withWriteLock { self.published = Published(current: staged, retained: retained, durable: durable) }
    }

    /// The key under which the rounding error of published steps is kept (checkpointed).
    static let residualKey = "delta.residual"

    /// Turns the strategy's new weights into the previous version plus a step
    /// quantized in `encoding` (the rounding error carried in the state to the
    /// next step), and returns the step's blob. The published weights are
    /// computed exactly as a client applying the step computes them.
    static func quantizeStep(from previous: [Tensor], encoding: ValueEncoding, state: inout FederationState)
        -> [UInt8]
    {
        var residual = state.tensors[residualKey] ?? previous.map { Tensor(zeros: $0.shape) }
        var step = state.weights
        // fp16 holds at most ±65504: a larger step is sent in part, the rest
        // carried in the residual to the next versions (never an infinite weight).
        let largest: Float = encoding == .float16 ? Float(Float16.greatestFiniteMagnitude) : .greatestFiniteMagnitude
        for t in step.indices {
            for i in step[t].values.indices {
                let d = state.weights[t].values[i] - previous[t].values[i] + residual[t].values[i]
                step[t].values[i] = min(max(d, -largest), largest)
            }
        }
        var w = ByteWriter()
        let mode: Compression = encoding.width == nil ? .zlib : .shuffleZlib
        TensorBlob.encode(step, compression: mode, level: 6, encoding: encoding, into: &w)
        var limits = Limits(maxDecompressedBytes: Int.max / 8)
        limits.valueEncodings = encoding.bit | ValueEncoding.float32.bit
        let decoded = w.bytes.withUnsafeBytes { raw -> [Tensor] in
            var r = ByteReader(raw)
            return (try? TensorBlob.decode(&r, limits: limits)) ?? []
        }
        precondition(decoded.count == step.count, "a step the store encoded did not decode")
        let published = ModelDelta.add(decoded, to: previous)
        for t in step.indices {
            for i in step[t].values.indices {
                residual[t].values[i] =
                    state.weights[t].values[i] - previous[t].values[i] + residual[t].values[i] - decoded[t].values[i]
            }
        }
        state.tensors[residualKey] = residual
        state.weights = published
        return w.bytes
    }

    /// The weights of a delta push: its base's plus the delta (shapes checked first).
    static func undelta(_ u: Update, published: ModelSnapshot, retained: [ModelSnapshot]) throws(RejectedUpdate)
        -> [Tensor]
    {
        guard u.baseVersion != 0,
            let base = u.baseVersion == published.version
                ? published : retained.last(where: { $0.version == u.baseVersion })
        else {
            throw RejectedUpdate(
                .unknownBase,
                "a delta against version \(u.baseVersion), which this server does not hold (it is at \(published.version)); push full weights"
            )
        }
        guard u.tensors.map(\.shape) == base.tensors.map(\.shape) else {
            throw RejectedUpdate(
                .shapeMismatch,
                "tensor shapes \(u.tensors.map(\.shape)) differ from the model's \(base.tensors.map(\.shape))")
        }
        return ModelDelta.add(u.tensors, to: base.tensors)
    }

    /// The step blobs that take version `held` to `current`, if the store
    /// still holds every one of them; nil otherwise.
    public func steps(from held: UInt64, to current: ModelSnapshot) -> [[UInt8]]? {
        guard configuration.deltaEncoding != nil, held != 0, held < current.version,
            current.version - held <= UInt64(MessageCodec.maxDeltaSteps)
        else { return nil }
        let retained = lock.withReadLock { published.retained }
        var out: [[UInt8]] = []
        for v in (held + 1)...current.version {
            let s = v == current.version ? current : retained.last { $0.version == v }
            guard let step = s?.step else { return nil }
            out.append(step)
        }
        // The version the client holds must still be known (else its steps may not apply).
        guard retained.contains(where: { $0.version == held }) else { return nil }
        return out
    }

    /// What the strategy sees of `u`: its base (named, else the version last
    /// served to its client, else the current one), that base's weights if
    /// retained, its staleness, and its sample count.
    private func clientUpdate(_ u: Update, version: UInt64, retained: [ModelSnapshot]) throws(RejectedUpdate)
        -> ClientUpdate
    {
        var base = u.baseVersion != 0 ? u.baseVersion : served.withLock { $0[u.clientID] } ?? version
        if base > version { base = version }
        if configuration.strategy.usesStaleness && version - base > UInt64(configuration.maxStaleness) {
            if u.strictBase {
                throw RejectedUpdate(
                    .staleBase,
                    "base version \(base) is more than \(configuration.maxStaleness) versions behind the model (now at \(version)); fetch and train again"
                )
            }
            base = retained.first?.version ?? version
        }
        // A base inside the window whose weights are gone (the server restarted
        // since) is taken as the oldest version still held.
        var snapshot = retained.last { $0.version == base }
        if snapshot == nil {
            snapshot = retained.first
            base = snapshot?.version ?? version
        }
        // The original's clients send a running total (the server's count plus
        // their own): a claim above the count at the base is such a total.
        // A REPORT of a round (version 4) states a count; a PUSH never does.
        let atBase = snapshot?.datasets ?? 0
        let trained = !u.countsSamples && u.datasets > atBase && atBase > 0 ? u.datasets - atBase : u.datasets
        return ClientUpdate(
            clientID: u.clientID, weights: u.tensors, claimedSamples: u.datasets,
            samples: min(trained, configuration.maxUpdateSamples), baseVersion: base, staleness: version - base,
            base: snapshot?.tensors)
    }
}

/// Why an update was refused; `code` is the spec's error code to answer with.
public struct RejectedUpdate: Error, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.name): \(message)" }
}

/// A push's idempotency key: the client's id and a number it never reuses for another push.
public struct PushKey: Hashable, Sendable {
    public var clientID: String
    public var pushID: UInt64
    public init(clientID: String, pushID: UInt64) {
        self.clientID = clientID
        self.pushID = pushID
    }
}

/// What an applied (or replayed) update is acknowledged with.
public struct Acknowledgement: Hashable, Sendable {
    /// The model version after the update: the version it published, or the
    /// current version when it waits in a buffer (it is then durable, and in
    /// a later version); and the model's sample count then.
    public var version: UInt64
    public var datasets: UInt64
    /// True when the update's key had been applied before: nothing was applied now.
    public var replayed: Bool
    public init(version: UInt64, datasets: UInt64, replayed: Bool = false) {
        self.version = version
        self.datasets = datasets
        self.replayed = replayed
    }
}
