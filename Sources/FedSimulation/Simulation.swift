import FedModel
import FedServer
import Foundation
import Synchronization

/// A federated-learning experiment in virtual time: simulated clients train
/// for real and talk to a real server, strategy against strategy.
///
/// Every client trains the package's MLP on its share of ``train`` and talks
/// to an in-process `FederatedServer` over 127.0.0.1 with the binary
/// protocol; only time is virtual: a client of speed v takes
/// ``SimulationConfiguration/secondsPerSample`` / v per sample, plus
/// ``SimulationConfiguration/messageSeconds`` per fetch and per push. Pushes
/// reach the server one at a time in virtual-time order, so a run gives the
/// same figures for the same seed.
///
/// Asynchronous by default: each client fetches, trains its local epochs
/// over its share, pushes, and repeats. With
/// ``SimulationConfiguration/syncFraction`` it runs synchronous rounds of that
/// fraction of the clients instead. Each run stops once the clients have
/// trained ``SimulationConfiguration/budget`` samples.
///
/// With ``SimulationConfiguration/checkIn`` those rounds run through the
/// server's check-in instead (its rounds of protocol version 4 on a virtual
/// clock): clients check in, the server selects a cohort (with
/// ``SimulationConfiguration/overSelection``), selected clients train and
/// report by their speed unless they drop out
/// (``SimulationConfiguration/dropouts``), and a round closes with its
/// cohort, or at its deadline with the minimum, or is abandoned and selected
/// again. The budget then counts the samples of applied reports, and each
/// result carries the rounds' figures (``SimulationResult/rounds``).
///
/// ```swift
/// var configuration = SimulationConfiguration()
/// configuration.clients = 20
/// configuration.budget = 100_000
/// let data = try SimulationData.load(folder: nil)
/// let report = try await Simulation(configuration, data: data).run { print($0) }
/// print(report.summary)
/// ```
public struct Simulation: Sendable {
    /// What is simulated and compared.
    public var configuration: SimulationConfiguration
    /// Split among the clients; all of it trains the centralized reference.
    public var train: Dataset
    /// Every curve point evaluates the server's model on all of it.
    public var test: Dataset

    /// A simulation of `configuration` on these images (784 features, labels 0 to 9).
    public init(_ configuration: SimulationConfiguration, train: Dataset, test: Dataset) {
        self.configuration = configuration
        self.train = train
        self.test = test
    }

    /// A simulation of `configuration` on `data`'s images.
    public init(_ configuration: SimulationConfiguration, data: SimulationData) {
        self.init(configuration, train: data.train, test: data.test)
    }

    /// Runs every run on a thread of its own and returns what they measured.
    ///
    /// The simulation's clients make blocking calls, so it runs on a
    /// dedicated thread rather than the caller's executor; `progress` is
    /// called on that thread, in order. Cancelling the calling task stops the
    /// simulation before its next fetch or push (a centralized reference in
    /// training finishes first).
    ///
    /// - Throws: ``SimulationError`` for a configuration out of range
    ///   (``SimulationConfiguration/validate()``) or a partition file that
    ///   does not fit; `CancellationError` when cancelled; the server's error
    ///   when it cannot start (a ``SimulationConfiguration/maxStaleness``
    ///   beyond its memory budget).
    public func run(progress: @escaping @Sendable (SimulationEvent) -> Void = { _ in }) async throws
        -> SimulationReport
    {
        let cancelled = CancellationFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<SimulationReport, Error>) in
                let thread = Thread {
                    continuation.resume(
                        with: Result { try self.run(progress: progress, isCancelled: { cancelled.isSet }) })
                }
                thread.name = "fed.simulation"
                thread.stackSize = 8 << 20
                thread.start()
            }
        } onCancel: {
            cancelled.set()
        }
    }

    /// Runs every run on the calling thread, blocking it until the last one
    /// ends, and returns what they measured; `progress` is called on the
    /// calling thread, in order.
    ///
    /// - Throws: as ``run(progress:)``, except that nothing cancels it.
    public func runBlocking(progress: (SimulationEvent) -> Void = { _ in }) throws -> SimulationReport {
        try withoutActuallyEscaping(progress) { progress in
            try run(progress: progress, isCancelled: { false })
        }
    }

    /// The centralized reference of each seed, then each strategy with each encoding.
    func run(progress: @escaping (SimulationEvent) -> Void, isCancelled: @escaping () -> Bool) throws
        -> SimulationReport
    {
        let c = configuration
        try c.validate()
        var results: [SimulationResult] = []
        var centralized: [Double] = []
        for k in 0..<c.seeds {
            let seed = c.seed + UInt64(k)
            if c.centralized {
                if isCancelled() { throw CancellationError() }
                let accuracy = FederationRun.centralized(train: train, test: test, configuration: c, seed: seed)
                centralized.append(accuracy)
                progress(.centralized(seed: seed, accuracy: accuracy))
            }
            // Through check-in the server's rounds average the reports: the strategies are not
            // used, except fedbuff's under secure aggregation (each buffer a cohort).
            let cohorts = c.strategies.filter(c.runsCohorts)
            for spec in c.checkIn ? (cohorts.isEmpty ? Array(c.strategies.prefix(1)) : cohorts) : c.strategies {
                for encoding in c.encodings {
                    if isCancelled() { throw CancellationError() }
                    progress(
                        .runStarted(
                            seed: seed,
                            strategy: c.checkIn && !c.runsCohorts(spec) ? FederationRun.roundsStrategy : spec.text,
                            encoding: encoding))
                    let run = FederationRun(
                        configuration: c, seed: seed, encoding: encoding, train: train, test: test,
                        progress: progress, isCancelled: isCancelled)
                    results.append(try run.run(strategy: spec))
                }
            }
        }
        return SimulationReport(results: results, centralized: centralized)
    }
}

/// Set once, from any thread, when the task running a simulation is cancelled.
private final class CancellationFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}
