import FedCodec
import FedModel
import Foundation

/// The original demo's client loop, one iteration per data slice:
///
/// 1. if the previous push went through, fetch the server's model (with the
///    retry policy) and, if it has the model's shapes, adopt its weights and
///    its `datasets` count; if the fetch fails, go on with the own weights;
/// 2. train on the slice (`epochs` epochs of `batchSize`); `datasets += slice size`;
/// 3. push `datasets` and the weights (with the retry policy); if that fails,
///    remember it, skip step 1 next time and keep training on the own weights.
///
/// A rejected push is never retried. The loop never stops early because the
/// server is down: it catches up when the server returns.
public final class FederatedLoop {
    public struct Options: Sendable {
        public var epochs: Int
        public var batchSize: Int
        public var seed: UInt64
        public var retry: RetryPolicy
        public var threads: Int
        /// The largest `datasets` the client claims. The original's count (the
        /// server's count at the last fetch plus the slices trained since)
        /// roughly doubles every round; `fed server` refuses claims over its
        /// `--max-datasets` (60,000 by default), so the claim is capped there.
        public var maxClaim: UInt64
        public init(
            epochs: Int = 20, batchSize: Int = 32, seed: UInt64 = 1, retry: RetryPolicy = .init(), threads: Int = 1,
            maxClaim: UInt64 = 60_000
        ) {
            self.maxClaim = maxClaim
            self.epochs = epochs
            self.batchSize = batchSize
            self.seed = seed
            self.retry = retry
            self.threads = threads
        }
    }

    /// What a run did.
    public struct Summary: Sendable, CustomStringConvertible {
        public var slices = 0
        public var fetches = 0
        public var fetchesFailed = 0
        public var pushesAccepted = 0
        public var pushesRejected = 0
        public var pushesFailed = 0
        public var retries = 0
        public var bytesSent = 0
        public var bytesReceived = 0
        public var lastVersion: UInt64 = 0

        public var description: String {
            "slices trained \(slices); fetches \(fetches) (\(fetchesFailed) failed); pushes accepted \(pushesAccepted), rejected \(pushesRejected), failed \(pushesFailed); retries \(retries); bytes sent \(bytesSent), received \(bytesReceived)"
        }
    }

    public let transport: any ModelTransport
    public let trainer: Trainer
    public let options: Options
    public private(set) var datasets: UInt64 = 0
    /// The model version the current training started from (0: none fetched).
    public private(set) var baseVersion: UInt64 = 0
    public private(set) var summary = Summary()
    private var rng: SeededGenerator
    private let log: (String) -> Void

    public init(transport: any ModelTransport, options: Options = .init(), log: @escaping (String) -> Void = { _ in }) {
        self.transport = transport
        self.options = options
        self.trainer = Trainer(
            model: MLP(seed: options.seed), maxBatch: max(256, options.batchSize), threads: options.threads)
        self.rng = SeededGenerator(seed: options.seed &+ 0x5EED)
        self.log = log
    }

    /// Runs the loop over `slices`; `progress` hears (slice, epoch, loss, accuracy) after each epoch.
    public func run(slices: [Dataset], progress: (Int, Int, Double, Double) -> Void = { _, _, _, _ in }) -> Summary {
        var lastPushWentThrough = true
        for (index, slice) in slices.enumerated() {
            if lastPushWentThrough { fetch() }
            for epoch in 1...options.epochs {
                let r = trainer.trainEpoch(slice, batchSize: options.batchSize, rng: &rng)
                progress(index, epoch, r.loss, r.accuracy)
            }
            datasets += UInt64(slice.count)
            summary.slices += 1
            lastPushWentThrough = push(slice: index)
        }
        summary.bytesSent = transport.bytesSent
        summary.bytesReceived = transport.bytesReceived
        return summary
    }

    private func withRetry<T>(_ what: String, _ body: () throws -> T) throws -> T {
        try options.retry.run(
            onRetry: { attempt, delay, error in
                self.summary.retries += 1
                self.log("\(what) failed (\(error)); retry \(attempt) in \(delay)")
            }, body)
    }

    private func fetch() {
        summary.fetches += 1
        do {
            let result = try withRetry("fetch") { try transport.fetch(heldVersion: 0) }
            guard case .model(let version, let count, let tensors) = result else { return }
            do {
                try trainer.adopt(tensors)
                datasets = count
                baseVersion = version
                summary.lastVersion = max(summary.lastVersion, version)
                log("fetched version \(version) (\(count) samples)")
            } catch {
                log("ignored the server's model: \(error)")
            }
        } catch {
            summary.fetchesFailed += 1
            log("fetch failed, training on own weights: \(error)")
        }
    }

    private func push(slice: Int) -> Bool {
        do {
            // One key for every retry of this push: a retry after a lost ACK is not applied twice.
            let pushID = UInt64.random(in: 1...UInt64.max)
            let (version, total) = try withRetry("push") {
                try transport.push(
                    trainer.model.tensors(), datasets: min(datasets, options.maxClaim), baseVersion: baseVersion,
                    pushID: pushID)
            }
            summary.pushesAccepted += 1
            summary.lastVersion = max(summary.lastVersion, version)
            log(
                version > 0
                    ? "pushed slice \(slice + 1): server at version \(version) (\(total) samples)"
                    : "pushed slice \(slice + 1): accepted")
            return true
        } catch let e as ClientError where !e.isRetryable && e.code.serverCode != nil {
            summary.pushesRejected += 1
            log("push rejected: \(e)")
            return false
        } catch {
            summary.pushesFailed += 1
            log("push failed, continuing on own weights: \(error)")
            return false
        }
    }
}
