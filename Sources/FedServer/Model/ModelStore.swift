import FedCodec
import Synchronization

/// The server's model: the current `ModelSnapshot` behind a readers-writer
/// lock, and the rule that turns a validated update into the next version.
///
/// Invariants:
/// - readers get a whole snapshot (every tensor of one version), never a mix;
/// - an update is applied only if it passes `validate`; a rejected update
///   changes nothing;
/// - versions increase by one per applied update.
public final class ModelStore: Sendable {
    public struct Configuration: Sendable {
        /// Largest `datasets` one update may claim (default 60,000, the size of
        /// MNIST's training set: a client claiming a billion would replace the model).
        public var maxDatasets: UInt64
        public var aggregation: any AggregationStrategy

        public init(maxDatasets: UInt64 = 60_000, aggregation: any AggregationStrategy = FederatedAveraging()) {
            self.maxDatasets = maxDatasets
            self.aggregation = aggregation
        }
    }

    public let configuration: Configuration
    private let lock = ReadWriteLock()
    /// Serialises writers, so the read-write lock is held for the swap alone
    /// (never across an aggregation or a disk write).
    private let writer = Mutex<Void>(())
    /// Guarded by `lock`: read under its read lock, replaced under its write lock.
    nonisolated(unsafe) private var current: ModelSnapshot

    public init(initial: ModelSnapshot, configuration: Configuration = .init()) {
        self.current = initial
        self.configuration = configuration
    }

    /// The current version; the caller may keep it as long as it likes.
    public func snapshot() -> ModelSnapshot {
        lock.withReadLock { current }
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
        for (i, t) in tensors.enumerated() {
            if let j = t.values.firstIndex(where: { !$0.isFinite }) {
                throw RejectedUpdate(.nonFiniteValue, "tensor \(i) holds \(t.values[j]) at index \(j)")
            }
        }
    }

    /// Validates and applies one update, returning the new snapshot (tests;
    /// the server goes through `applyBatch`). Writers are serialised by
    /// `writer`; the aggregation runs outside the read-write lock, which is
    /// held for the swap alone, so readers keep the previous snapshot until then.
    @discardableResult
    func apply(_ tensors: [Tensor], datasets: UInt64) throws(RejectedUpdate) -> ModelSnapshot {
        // Validation needs only shapes, which never change: do the O(n) finite
        // check before taking the lock.
        try validate(tensors, datasets: datasets, against: snapshot())
        return writer.withLock { _ in
            let next = fold(onto: snapshot(), tensors: tensors, datasets: datasets)
            lock.withWriteLock { current = next }
            return next
        }
    }

    /// Idempotency keys remembered (the most recent, across all clients).
    public static let rememberedPushes = 4096

    /// One pending update of a batch.
    public struct Update: Sendable {
        public var tensors: [Tensor]
        public var datasets: UInt64
        /// The push's idempotency key (client id, push id), if it has one.
        public var key: PushKey?
        public init(tensors: [Tensor], datasets: UInt64, key: PushKey? = nil) {
            self.tensors = tensors
            self.datasets = datasets
            self.key = key
        }
    }

    /// Group commit: validates and folds `updates` in order into a staged
    /// model, calls `commit` with the final staged snapshot (for example to
    /// write it durably), and publishes it to readers only if `commit`
    /// returns. Each valid update gets its own version; invalid ones are
    /// rejected individually. If `commit` throws, nothing is published and
    /// every valid update of the batch fails with `internal_error`.
    ///
    /// An update whose key is among the remembered pushes (or earlier in the
    /// same batch) is not applied again: it succeeds with the original
    /// acknowledgement, `replayed` set.
    public func applyBatch(_ updates: [Update], commit: (ModelSnapshot) throws -> Void)
        -> [Result<Acknowledgement, RejectedUpdate>]
    {
        writer.withLock { _ in
            var staged = snapshot()
            let base = staged
            var results: [Result<Acknowledgement, RejectedUpdate>] = []
            for u in updates {
                if let key = u.key,
                    let seen = staged.recentPushes.last(where: {
                        $0.pushID == key.pushID && $0.clientID == key.clientID
                    })
                {
                    results.append(
                        .success(Acknowledgement(version: seen.version, datasets: seen.datasets, replayed: true)))
                    continue
                }
                do throws(RejectedUpdate) {
                    try validate(u.tensors, datasets: u.datasets, against: staged)
                    staged = fold(onto: staged, tensors: u.tensors, datasets: u.datasets, key: u.key)
                    results.append(.success(Acknowledgement(version: staged.version, datasets: staged.datasets)))
                } catch {
                    results.append(.failure(error))
                }
            }
            guard staged !== base else { return results }
            do {
                try commit(staged)
            } catch {
                // The cause (it may name local paths) is for the server's log, not for clients.
                let failure = RejectedUpdate(.internalError, "the server could not store the update; try again later")
                return results.map { r in
                    r.flatMap { ack in ack.replayed ? .success(ack) : .failure(failure) }
                }
            }
            let published = staged
            lock.withWriteLock { current = published }
            return results
        }
    }

    private func fold(onto base: ModelSnapshot, tensors: [Tensor], datasets: UInt64, key: PushKey? = nil)
        -> ModelSnapshot
    {
        let (blended, count) = configuration.aggregation.aggregate(
            current: base.tensors, currentCount: base.datasets, update: tensors, updateCount: datasets)
        var pushes = base.recentPushes
        if let key {
            pushes.append(
                PushRecord(clientID: key.clientID, pushID: key.pushID, version: base.version + 1, datasets: count))
            if pushes.count > Self.rememberedPushes { pushes.removeFirst(pushes.count - Self.rememberedPushes) }
        }
        return ModelSnapshot(version: base.version + 1, datasets: count, tensors: blended, recentPushes: pushes)
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
    /// The model version the update produced, and the model's sample count then.
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
