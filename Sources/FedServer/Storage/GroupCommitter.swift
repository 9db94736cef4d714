import Dispatch
import Foundation
import FedCodec
import FedStorage
import ServiceLifecycle
import Synchronization

/// Applies updates so that each one is durable before its caller hears of it.
///
/// Callers `submit` concurrently; one background committer (a dispatch
/// queue) drains everything pending into a single `ModelStore.applyBatch`
/// whose commit step saves the checkpoint to `checkpoints` (atomically and
/// durably, as `CheckpointStore` requires; a file store: temporary file,
/// fsync, rename, fsync of the folder). Saves run only on the committer.
/// While one write runs, new updates queue and share the next write (group
/// commit), so throughput grows with concurrency while every acknowledged
/// update survives `kill -9`. With `saveEvery > 1` a checkpoint is written
/// only every that many versions and `submit` returns without waiting: faster,
/// and updates since the last write are lost on a crash.
public final class GroupCommitter: Sendable {
    public let store: ModelStore
    /// Where each commit is saved.
    public let checkpoints: any CheckpointStore
    public let saveEvery: Int

    private struct State {
        var pending: [(ModelStore.Update, Completion)] = []
        var running = false
        /// Callers of `waitUntilIdle`, called when the committer runs out of work.
        var idleWaiters: [@Sendable () -> Void] = []
        var writes = 0
        var lastSavedVersion: UInt64 = 0
        /// Whether a batch was applied and not saved since the last write (`saveEvery > 1`).
        var unsaved = false
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "fed.group-commit")

    let metrics: ServerMetrics?

    public init(
        store: ModelStore, checkpoints: any CheckpointStore, saveEvery: Int = 1, metrics: ServerMetrics? = nil
    ) {
        self.metrics = metrics
        self.store = store
        self.checkpoints = checkpoints
        self.saveEvery = max(1, saveEvery)
        let version = store.snapshot().version
        state.withLock { $0.lastSavedVersion = version }
    }

    /// A committer saving to the checkpoint file at `path` (a `FileCheckpointStore`).
    public convenience init(store: ModelStore, path: String, saveEvery: Int = 1, metrics: ServerMetrics? = nil) {
        self.init(store: store, checkpoints: FileCheckpointStore(path: path), saveEvery: saveEvery, metrics: metrics)
    }

    /// Called once per submitted update, on the committer's queue, when it is durable or rejected.
    public typealias Completion = @Sendable (Result<Acknowledgement, RejectedUpdate>) -> Void

    /// Checkpoint writes so far.
    public var writes: Int { state.withLock { $0.writes } }

    /// Validates and applies one update; returns once it is durable (or, with
    /// `saveEvery > 1`, once it is applied). Throws `RejectedUpdate`.
    public func submit(_ tensors: [Tensor], datasets: UInt64, key: PushKey? = nil) async throws -> Acknowledgement {
        try await withCheckedThrowingContinuation { continuation in
            submit(ModelStore.Update(tensors: tensors, datasets: datasets, key: key)) {
                continuation.resume(with: $0.mapError { $0 as any Error })
            }
        }
    }

    /// Whether no update is waiting or being committed now.
    public var isIdle: Bool { state.withLock { $0.pending.isEmpty && !$0.running } }

    /// Blocks until no update is waiting or being committed (every
    /// completion has been called), or until `deadline`; true when idle.
    public func waitUntilIdle(until deadline: DispatchTime) -> Bool {
        let signal = DispatchSemaphore(value: 0)
        return whenIdle { signal.signal() } || signal.wait(timeout: deadline) == .success
    }

    /// Returns once no update is waiting or being committed.
    public func waitUntilIdle() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            if whenIdle({ c.resume() }) { c.resume() }
        }
    }

    /// True when idle now; else `then` runs (on the committer's queue) once it is.
    private func whenIdle(_ then: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { s -> Bool in
            if s.pending.isEmpty && !s.running { return true }
            s.idleWaiters.append(then)
            return false
        }
    }

    /// The same, calling `completion` (on the committer's queue) when done.
    public func submit(_ update: ModelStore.Update, completion: @escaping Completion) {
        let start = state.withLock { s -> Bool in
            s.pending.append((update, completion))
            if s.running { return false }
            s.running = true
            return true
        }
        if start { queue.async { self.drain() } }
    }

    /// Writes the current model now (at shutdown), whatever `saveEvery` says.
    public func flush() throws {
        try flush(onlyIfUnsaved: false)
    }

    /// Writes the current model unless every applied batch is already saved;
    /// true when it wrote.
    @discardableResult
    func flush(onlyIfUnsaved: Bool) throws -> Bool {
        try queue.sync {
            if onlyIfUnsaved && !state.withLock({ $0.unsaved }) { return false }
            let s = store.snapshot()
            try checkpoints.save(s, durable: store.durable())
            saved(s.version)
            return true
        }
    }

    private func saved(_ version: UInt64) {
        state.withLock {
            $0.writes += 1
            $0.lastSavedVersion = version
            $0.unsaved = false
        }
    }

    /// Runs `ModelStore.transact` between batches and writes its result
    /// durably before returning (whatever `saveEvery` says): for state changes
    /// that are not client updates, such as an edge server's outbox.
    public func transact<R>(_ body: (inout FederationState) -> (publish: Bool, result: R)) throws -> R {
        try queue.sync {
            try store.transact(body) { staged, durable in
                try checkpoints.save(staged, durable: durable)
                saved(staged.version)
            }
        }
    }

    /// Called with the error of a failed checkpoint write (its text may name
    /// local paths: for the server's log only).
    public var onWriteFailure: (@Sendable (any Error) -> Void)? {
        get { failureHook.withLock { $0 } }
        set { failureHook.withLock { $0 = newValue } }
    }
    private let failureHook = Mutex<(@Sendable (any Error) -> Void)?>(nil)

    /// Runs on `queue`: commits what is pending as one batch, then queues
    /// itself again (so a `transact` or `flush` waiting on the queue runs
    /// between batches) until nothing is pending.
    private func drain() {
        do {
            let (batch, waiters) = state.withLock { s -> ([(ModelStore.Update, Completion)], [@Sendable () -> Void]) in
                let b = s.pending
                s.pending = []
                guard b.isEmpty else { return (b, []) }
                s.running = false
                defer { s.idleWaiters = [] }
                return (b, s.idleWaiters)
            }
            if batch.isEmpty {
                for w in waiters { w() }
                return
            }
            let results = store.applyBatch(batch.map(\.0)) { staged, durable in
                let due = state.withLock { staged.version >= $0.lastSavedVersion + UInt64(saveEvery) }
                guard saveEvery == 1 || due else {
                    state.withLock { $0.unsaved = true }
                    return
                }
                do {
                    let clock = ContinuousClock()
                    let start = clock.now
                    try checkpoints.save(staged, durable: durable)
                    let took = clock.now - start
                    metrics?.checkpointTook(
                        Double(took.components.seconds) + Double(took.components.attoseconds) * 1e-18)
                } catch {
                    failureHook.withLock { $0 }?(error)
                    throw error
                }
                saved(staged.version)
            }
            for ((_, completion), result) in zip(batch, results) {
                switch result {
                case .success(let ack) where !ack.replayed: metrics?.updatesApplied.add(1, ordering: .relaxed)
                case .failure(let r): metrics?.rejected(r.code)
                default: break
                }
                completion(result)
            }
            queue.async { self.drain() }
        }
    }
}

extension GroupCommitter: Service {
    /// Runs until the graceful shutdown of the `ServiceGroup` it is in (or
    /// the cancellation of the calling task), then waits until every update
    /// submitted is committed and writes what is not saved yet (with
    /// `saveEvery > 1`), so a shutdown loses no applied update.
    ///
    /// A group shuts its services down in reverse order: list the committer
    /// before the services that submit to it (a `FederatedServer` after it),
    /// so they stop submitting first. When the server's own `shutdown` has
    /// written the checkpoint already, this writes nothing.
    public func run() async throws {
        try? await gracefulShutdown()
        await waitUntilIdle()
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            // Off the caller's executor: a write may wait for the disk.
            Thread { c.resume(with: Result { _ = try self.flush(onlyIfUnsaved: true) }) }.start()
        }
    }
}
