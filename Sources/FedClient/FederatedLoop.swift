import FedCodec
import Foundation

/// What trains locally in a federated session: any model whose weights
/// travel as a list of tensors (the server's order and shapes).
///
/// A model of one's own conforms (Examples/LogisticRegression has one);
/// `fed client` wraps the built-in MLP this way.
public protocol LocalModel {
    /// The weights to push.
    var weights: [Tensor] { get }
    /// Takes the server's weights; throws, keeping its own, if they do not fit.
    mutating func load(_ weights: [Tensor]) throws
    /// Trains one round (`round` counts from 0) on local data; returns the
    /// samples trained on (added to the count the push claims).
    mutating func train(round: Int) -> Int
}

/// The original demo's client loop, for any `LocalModel`, one iteration a round:
///
/// 1. if the previous push went through, fetch the server's model (with the
///    retry policy) and, if the model takes it, adopt its weights and its
///    `datasets` count; if the fetch fails, go on with the own weights;
/// 2. train one round; `datasets +=` the samples trained on;
/// 3. push `datasets` and the weights (with the retry policy); if that fails,
///    remember it, skip step 1 next time and keep training on the own weights.
///
/// A rejected push is never retried. The loop never stops early because the
/// server is down: it catches up when the server returns.
public final class FederatedLoop<Model: LocalModel> {
    /// How the loop retries a request and the largest sample count it claims.
    public struct Options: Sendable {
        public var retry: RetryPolicy
        /// The largest `datasets` the client claims. The original's count (the
        /// server's count at the last fetch plus the slices trained since)
        /// roughly doubles every round; `fed server` refuses claims over its
        /// `--max-datasets` (60,000 by default), so the claim is capped there.
        public var maxClaim: UInt64
        public init(retry: RetryPolicy = .init(), maxClaim: UInt64 = 60_000) {
            self.maxClaim = maxClaim
            self.retry = retry
        }
    }

    public let transport: any ModelTransport
    public private(set) var model: Model
    public let options: Options
    public private(set) var datasets: UInt64 = 0
    /// The model version the current training started from (0: none fetched).
    public private(set) var baseVersion: UInt64 = 0
    public private(set) var summary = FederatedSummary()
    private let log: (String) -> Void

    public init(
        model: Model, transport: any ModelTransport, options: Options = .init(),
        log: @escaping (String) -> Void = { _ in }
    ) {
        self.model = model
        self.transport = transport
        self.options = options
        self.log = log
    }

    /// Runs `rounds` rounds.
    public func run(rounds: Int) -> FederatedSummary {
        var lastPushWentThrough = true
        for round in 0..<rounds {
            if lastPushWentThrough { fetch() }
            datasets += UInt64(model.train(round: round))
            summary.slices += 1
            lastPushWentThrough = push(round: round)
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
                try model.load(tensors)
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

    private func push(round: Int) -> Bool {
        do {
            // One key for every retry of this push: a retry after a lost ACK is not applied twice.
            let pushID = UInt64.random(in: 1...UInt64.max)
            let (version, total) = try withRetry("push") {
                try transport.push(
                    model.weights, datasets: min(datasets, options.maxClaim), baseVersion: baseVersion,
                    pushID: pushID)
            }
            summary.pushesAccepted += 1
            summary.lastVersion = max(summary.lastVersion, version)
            log(
                version > 0
                    ? "pushed round \(round + 1): server at version \(version) (\(total) samples)"
                    : "pushed round \(round + 1): accepted")
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

/// What a federated run did.
public struct FederatedSummary: Sendable, CustomStringConvertible {
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
        "rounds trained \(slices); fetches \(fetches) (\(fetchesFailed) failed); pushes accepted \(pushesAccepted), rejected \(pushesRejected), failed \(pushesFailed); retries \(retries); bytes sent \(bytesSent), received \(bytesReceived)"
    }
}
