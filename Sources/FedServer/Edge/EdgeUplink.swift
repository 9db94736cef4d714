import Dispatch
import FedCodec
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// How an edge server reaches its upstream server (`fed server --upstream`
/// gives a binary-protocol client). Calls come from one thread at a time and
/// may block.
public protocol UpstreamLink: Sendable {
    /// The upstream model if its version is not `held`; nil if it still is.
    func fetch(held: UInt64) throws -> UpstreamModel?
    /// Pushes `weights` as one update of `samples` samples trained from
    /// `baseVersion`, with idempotency key `pushID` (the same id when the same
    /// batch is pushed again). Returns the upstream's version after it.
    /// Throws `RejectedUpdate` (the upstream's code and message) when the upstream refused the update (trying
    /// again unchanged will not help); any other error is taken as transient.
    func push(_ weights: [Tensor], samples: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> UInt64
    /// Makes the call in flight, if any, and every later call end by
    /// `deadline` (throwing). Called from another thread than the calls (at
    /// shutdown). The default does nothing: a link that cannot be cut off
    /// keeps its call, and a shutdown stops waiting for it at the deadline.
    func cutOff(at deadline: DispatchTime)
}

extension UpstreamLink {
    public func cutOff(at deadline: DispatchTime) {}
}

/// An upstream model version.
public struct UpstreamModel: Sendable {
    public var version: UInt64
    public var samples: UInt64
    public var tensors: [Tensor]
    public init(version: UInt64, samples: UInt64, tensors: [Tensor]) {
        self.version = version
        self.samples = samples
        self.tensors = tensors
    }
}

/// How an edge server talks to its upstream.
public struct EdgeConfiguration: Sendable {
    public var link: any UpstreamLink
    /// How often gathered updates are pushed and the upstream model fetched. Default 2 s.
    public var interval: Duration
    /// Longest wait between attempts while the upstream fails. Default 30 s.
    public var maxBackoff: Duration
    /// How long the uplink's stop may take, its last sync included, when it
    /// runs as a `Service` of its own (a `FederatedServer`'s shutdown uses
    /// its `shutdownGrace` instead). Default 5 s.
    public var shutdownGrace: Duration

    public init(
        link: any UpstreamLink, interval: Duration = .seconds(2), maxBackoff: Duration = .seconds(30),
        shutdownGrace: Duration = .seconds(5)
    ) {
        self.link = link
        self.interval = interval
        self.maxBackoff = maxBackoff
        self.shutdownGrace = shutdownGrace
    }
}

/// An edge server's link to its upstream: every `interval` it moves the
/// gathering batch to the outbox (durably, with a new push id), pushes the
/// outbox upstream until acknowledged (the same push id on every attempt and
/// after a restart, so the upstream applies it once), then takes the
/// upstream's model as the edge's next version.
///
/// Every change is written to the checkpoint before the next step, so a
/// crash at any point loses no acknowledged client update: the batch is
/// either still gathering, or in the outbox (pushed again at start), or
/// acknowledged upstream.
public final class EdgeUplink: Sendable {
    public let configuration: EdgeConfiguration
    let committer: GroupCommitter
    let logger: Logger
    /// Counts rounds, failures and updates pushed (`GET /metrics`).
    let metrics: ServerMetrics?
    private let queue = DispatchQueue(label: "fed.edge-uplink")
    private let wake = DispatchSemaphore(value: 0)
    private let stopped = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    /// Set by the first `stop`; later calls wait for it instead of syncing again.
    private let stopClaimed = Atomic<Bool>(false)
    private let stopDone = DispatchSemaphore(value: 0)

    public init(
        configuration: EdgeConfiguration, committer: GroupCommitter, logger: Logger, metrics: ServerMetrics? = nil
    ) {
        self.configuration = configuration
        self.committer = committer
        self.logger = logger
        self.metrics = metrics
    }

    /// What one `sync` did.
    public struct Outcome: Sendable, Equatable {
        /// Updates acknowledged upstream in this round (0: none were pushed).
        public var pushedUpdates = 0
        /// The upstream version the edge's model now comes from.
        public var upstreamVersion: UInt64 = 0
        /// Whether a new upstream model was taken.
        public var refreshed = false
    }

    /// One round: push what has gathered (and anything left in the outbox),
    /// then take the upstream model if it changed. Throws the upstream's
    /// refusal or a transport error; what was not acknowledged stays in the
    /// outbox for the next round.
    @discardableResult
    public func sync() throws -> Outcome {
        do {
            let outcome = try round()
            metrics?.edgeSynced(pushedUpdates: outcome.pushedUpdates)
            return outcome
        } catch {
            metrics?.edgeSyncFailed()
            throw error
        }
    }

    private func round() throws -> Outcome {
        var outcome = Outcome()
        let link = configuration.link
        if committer.store.durable().holdsEdgeBatch,
            let batch = try committer.transact({ s -> (publish: Bool, result: EdgeBatch?) in
                if s.edgeOutbox == nil, var pending = s.edgePending {
                    pending.pushID = s.takeEdgePushID()
                    s.edgeOutbox = pending
                    s.edgePending = nil
                }
                return (false, s.edgeOutbox)
            })
        {
            do {
                _ = try link.push(
                    batch.weights, samples: batch.samples, baseVersion: batch.baseVersion, pushID: batch.pushID)
            } catch let refusal as RejectedUpdate where refusal.code == .staleBase || refusal.code == .unknownBase {
                // The upstream moved on past the batch's base: name its current version next time.
                let current = try link.fetch(held: 0)?.version ?? batch.baseVersion
                try committer.transact { s -> (publish: Bool, result: Void) in
                    if var o = s.edgeOutbox, o.pushID == batch.pushID {
                        o.baseVersion = current
                        s.edgeOutbox = o
                    }
                    return (false, ())
                }
                throw refusal
            }
            try committer.transact { s -> (publish: Bool, result: Void) in
                if s.edgeOutbox?.pushID == batch.pushID { s.edgeOutbox = nil }
                return (false, ())
            }
            outcome.pushedUpdates = batch.updates
            logger.info(
                "pushed \(batch.updates) updates (\(batch.samples) samples) upstream as push \(batch.pushID)")
        }
        // nil until the edge has taken a model from upstream (then even version 0 counts).
        let taken = committer.store.durable().edgeUpstreamVersion
        outcome.upstreamVersion = taken ?? 0
        if let model = try link.fetch(held: taken ?? 0), model.version != taken {
            let shapes = committer.store.snapshot().tensors.map(\.shape)
            guard model.tensors.map(\.shape) == shapes else {
                throw RejectedUpdate(
                    .shapeMismatch,
                    "the upstream serves tensors of shapes \(model.tensors.map(\.shape)); this edge serves \(shapes)"
                )
            }
            try committer.transact { s -> (publish: Bool, result: Void) in
                s.weights = model.tensors
                s.samples = model.samples
                s.edgeUpstreamVersion = model.version
                return (true, ())
            }
            outcome.upstreamVersion = model.version
            outcome.refreshed = true
        }
        return outcome
    }

    /// Runs `sync` every `interval` on a queue of its own until `stop`,
    /// waiting longer (doubling up to `maxBackoff`) while the upstream fails.
    public func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.async { [self] in
            var failures = 0
            while !stopped.load(ordering: .acquiring) {
                var wait = configuration.interval
                do {
                    try sync()
                    if failures > 0 { logger.info("upstream reachable again") }
                    failures = 0
                } catch let error where stopped.load(ordering: .acquiring) {
                    logger.warning("upstream round ended by the shutdown: \(error)")
                    break
                } catch {
                    failures += 1
                    wait = min(configuration.maxBackoff, configuration.interval * (1 << min(failures, 16)))
                    logger.warning("upstream sync failed (\(failures) in a row; next try in \(wait)): \(error)")
                }
                let (s, atto) = wait.components
                _ = wake.wait(timeout: .now() + .nanoseconds(Int(s) * 1_000_000_000 + Int(atto / 1_000_000_000)))
            }
            done.signal()
        }
    }

    /// Starts no more rounds, and makes the round in flight end by `deadline`
    /// (its calls to the upstream are cut off then). Returns at once.
    public func stopRounds(by deadline: DispatchTime) {
        stopped.store(true, ordering: .releasing)
        configuration.link.cutOff(at: deadline)
        wake.signal()
    }

    /// How long past its deadline `stop` waits for a round whose link was
    /// cut off to end (one that honours `cutOff` ends within milliseconds).
    static let cutoffMargin = DispatchTimeInterval.milliseconds(500)

    /// Stops the loop and returns by `deadline` + `cutoffMargin` (or once the
    /// loop has stopped, without a deadline): the round in flight ends by
    /// then, cut off if need be, and when `finalSync` is set and time is
    /// left, one last round, cut off at the same deadline, sends the updates
    /// gathered since. A round cut off leaves every update it did not get
    /// acknowledged in the checkpoint (gathering, or in the outbox with its
    /// push id), pushed at the next start.
    /// A later call returns once the first has (by the same bound), without
    /// a sync of its own.
    public func stop(finalSync: Bool, by deadline: DispatchTime = .distantFuture) {
        guard !stopClaimed.exchange(true, ordering: .acquiringAndReleasing) else {
            _ = stopDone.wait(timeout: deadline + Self.cutoffMargin)
            stopDone.signal()  // for any other caller
            return
        }
        defer { stopDone.signal() }
        stopRounds(by: deadline)
        if started.load(ordering: .acquiring) {
            guard done.wait(timeout: deadline + Self.cutoffMargin) == .success else {
                logger.warning(
                    "the upstream round in flight did not end when cut off at the shutdown deadline; what it did not push is pushed at the next start"
                )
                return
            }
            done.signal()  // for a later call
        }
        guard finalSync else { return }
        guard DispatchTime.now() < deadline else {
            logger.warning("no time left for a last upstream sync; the gathered updates are pushed at the next start")
            return
        }
        do {
            try sync()
        } catch {
            logger.warning("last upstream sync failed; the gathered updates are pushed at the next start: \(error)")
        }
    }
}

extension EdgeUplink: Service {
    /// Runs the upstream rounds (`start`) until the graceful shutdown of the
    /// `ServiceGroup` it is in (or the cancellation of the calling task),
    /// then stops them with a last sync (`stop(finalSync: true)`), all within
    /// `configuration.shutdownGrace`. In a group with the `FederatedServer`
    /// it belongs to, list it before the server: the server's shutdown stops
    /// the uplink itself, after its pushes in flight are committed, and this
    /// then returns at once.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        let deadline = DispatchTime.now() + configuration.shutdownGrace.dispatch
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            // Off the caller's executor: the last sync waits for the upstream.
            Thread {
                self.stop(finalSync: true, by: deadline)
                c.resume()
            }.start()
        }
    }
}
