import CoreMetrics
import FedCodec
import Logging
import Synchronization

/// Federated evaluation (protocol version 4, feature `evaluation`): hands a
/// share of check-ins an evaluate task, takes the clients' evaluation reports
/// (binary `EVALUATION_REPORT`, HTTP `POST /v1/evaluation`) and keeps, per
/// model version, the distribution of each metric (`EvaluationLedger`).
///
/// Beside the rounds, never inside them: an evaluate task is answered at once
/// when the client checks in, so it takes no place in a round or among the
/// tasks outstanding, and a report is answered at once (nothing waits for a
/// round). Invariants: a client gets at most one evaluate task per model
/// version; a client's report of a version counts once (a later one replaces
/// it); task ids are 64 random bits, held in memory only (the last
/// `rememberedTasks`), never 0.
///
/// Thread safety: every method may be called from any thread; the state is
/// behind one lock, held for a report's bookkeeping and its summary (sorting
/// at most `maxReportsPerVersion` values per metric).
final class EvaluationDesk: Sendable {
    let configuration: EvaluationConfiguration
    private let store: ModelStore
    private let maxExamples: UInt64
    private let logger: Logger
    private let serverMetrics: ServerMetrics?
    /// Made at the first task or report: a server nobody evaluates with shows no evaluation series.
    private let madeMetrics = Mutex<EvaluationMetrics?>(nil)
    private let state: Mutex<State>

    /// Evaluate tasks remembered for their reports.
    static let rememberedTasks = 4_096

    private struct GivenTask: Sendable {
        var clientID: String
        var version: UInt64
    }

    private struct State: @unchecked Sendable {
        var random: any RandomNumberGenerator
        var ledger: EvaluationLedger
        var tasks: [UInt64: GivenTask] = [:]
        var taskOrder: [UInt64] = []
        /// The clients given a task of `assignedVersion` (one task per client and version).
        var assignedVersion: UInt64 = .max
        var assigned: Set<String> = []
        /// The version the gauges describe (the highest reported on).
        var gaugedVersion: UInt64 = 0
    }

    init(
        configuration: EvaluationConfiguration, store: ModelStore, maxExamples: UInt64, logger: Logger,
        metrics: ServerMetrics? = nil, seed: UInt64? = nil
    ) {
        self.configuration = configuration
        self.store = store
        self.maxExamples = maxExamples
        self.logger = logger
        self.serverMetrics = metrics
        let random: any RandomNumberGenerator =
            seed.map { SplitMix(seed: $0 ^ 0x6576_616C_7561_7465) } ?? SystemRandomNumberGenerator()
        state = Mutex(
            State(
                random: random,
                ledger: EvaluationLedger(
                    keptVersions: configuration.keptVersions,
                    maxReportsPerVersion: configuration.maxReportsPerVersion)))
    }

    /// The evaluation's series, made on first use; nil without server metrics.
    private var metrics: EvaluationMetrics? {
        guard let serverMetrics else { return nil }
        return madeMetrics.withLock { made in
            if let made { return made }
            let new = EvaluationMetrics(serverMetrics)
            made = new
            return new
        }
    }

    // MARK: Tasks

    /// An evaluate task of the current model version for this check-in, or
    /// nil: the check-in goes on to the rounds. Given when the server speaks
    /// `evaluation` (`serverFeatures`), the client speaks it and can evaluate,
    /// has no task of this version yet, and cannot train or is drawn (with
    /// probability `fraction`).
    func assignment(for checkIn: CheckIn, clientID: String, serverFeatures: Features) -> Assignment? {
        let agreed = checkIn.features.intersection(serverFeatures)
        guard configuration.fraction > 0, agreed.contains(.evaluation), checkIn.abilities.contains(.evaluate) else {
            return nil
        }
        let version = store.snapshot().version
        let id: UInt64? = state.withLock { s in
            if s.assignedVersion != version {
                s.assignedVersion = version
                s.assigned = []
            }
            guard !s.assigned.contains(clientID) else { return nil }
            if checkIn.abilities.contains(.train) {
                guard Double.random(in: 0..<1, using: &s.random) < configuration.fraction else { return nil }
            }
            var fresh: UInt64
            repeat { fresh = UInt64.random(in: 1...UInt64.max, using: &s.random) } while s.tasks[fresh] != nil
            s.assigned.insert(clientID)
            s.tasks[fresh] = GivenTask(clientID: clientID, version: version)
            s.taskOrder.append(fresh)
            if s.taskOrder.count > Self.rememberedTasks {
                for old in s.taskOrder.prefix(s.taskOrder.count - Self.rememberedTasks) { s.tasks[old] = nil }
                s.taskOrder.removeFirst(s.taskOrder.count - Self.rememberedTasks)
            }
            return fresh
        }
        guard let id else { return nil }
        metrics?.tasks.increment()
        return Assignment(
            kind: .evaluate, features: agreed, taskID: id, modelVersion: version,
            deadlineMilliseconds: UInt32(clamping: configuration.deadline.wholeMilliseconds))
    }

    // MARK: Reports

    /// Takes `report` of `clientID` (binary `EVALUATION_REPORT`); nil when it
    /// is taken, else the ERROR, checked in this order: the task was given to
    /// this client (`unknown_task`), the examples (`invalid_datasets`), the
    /// values are finite (`non_finite_value`), the version is the task's or a
    /// later one the server published (`malformed_payload`), the version has
    /// room (`overloaded`).
    func take(_ report: EvaluationReport, clientID: String) -> ErrorMessage? {
        let task = state.withLock { $0.tasks[report.taskID] }
        guard let task, task.clientID == clientID else {
            return ErrorMessage(
                code: .unknownTask,
                message:
                    "evaluate task \(report.taskID) was not given to this client by this server, or not since it started"
            )
        }
        return take(
            clientID: clientID, version: report.modelVersion, examples: report.examples, loss: report.loss,
            metrics: report.metrics, oldest: task.version)
    }

    /// Takes a report given without a task (HTTP): the same checks but the
    /// task's, any published version.
    func take(
        clientID: String, version: UInt64, examples: UInt64, loss: Double, metrics: [String: Double],
        oldest: UInt64 = 0
    ) -> ErrorMessage? {
        if examples == 0 || examples > maxExamples {
            return ErrorMessage(
                code: .invalidDatasets, message: "examples must be between 1 and \(maxExamples) (got \(examples))")
        }
        if !loss.isFinite || metrics.values.contains(where: { !$0.isFinite }) {
            return ErrorMessage(code: .nonFiniteValue, message: "the loss and every metric must be finite")
        }
        if let bad = EvaluationReport.check(metrics) { return ErrorMessage(code: .malformedPayload, message: bad) }
        let current = store.snapshot().version
        guard version >= oldest, version <= current else {
            return ErrorMessage(
                code: .malformedPayload,
                message: "model version \(version) was not published between \(oldest) and \(current)")
        }
        let (outcome, summary): (EvaluationLedger.Outcome, EvaluationSummary?) = state.withLock { s in
            let outcome = s.ledger.record(
                clientID: clientID, version: version, examples: examples, loss: loss, metrics: metrics)
            guard outcome == .recorded, version >= s.gaugedVersion else { return (outcome, nil) }
            s.gaugedVersion = version
            return (outcome, s.ledger.summary(of: version))
        }
        if outcome == .full {
            return ErrorMessage(
                code: .overloaded,
                message: "version \(version) has \(configuration.maxReportsPerVersion) evaluation reports already")
        }
        self.metrics?.reports.increment()
        if let summary { self.metrics?.show(summary) }
        logger.debug(
            "evaluation of version \(version) from \(LogSafe.text(clientID)): \(examples) examples, loss \(loss)")
        return nil
    }

    /// The evaluation of every version kept, in ascending version order.
    var history: [EvaluationSummary] { state.withLock { $0.ledger.history } }

    /// The evaluation of `version`, if any client reported on it and it is kept.
    func summary(of version: UInt64) -> EvaluationSummary? { state.withLock { $0.ledger.summary(of: version) } }
}

/// The evaluation's series of `/metrics`: counters of tasks and reports, and
/// gauges of the highest model version reported on (a metric's gauges are
/// made for the first `maxGaugedMetrics` names seen, bounding the series).
final class EvaluationMetrics: Sendable {
    static let maxGaugedMetrics = 32
    static let statistics = ["mean", "p10", "p90", "min", "max"]

    let tasks: CoreMetrics.Counter
    let reports: CoreMetrics.Counter
    let version: CoreMetrics.Gauge
    let clients: CoreMetrics.Gauge
    let examples: CoreMetrics.Gauge
    private let factory: any MetricsFactory
    private let gauges = Mutex<[String: [CoreMetrics.Gauge]]>([:])

    init(_ metrics: ServerMetrics) {
        factory = metrics.factory
        tasks = CoreMetrics.Counter(label: "fed_evaluation_tasks_total", factory: factory)
        reports = CoreMetrics.Counter(label: "fed_evaluation_reports_total", factory: factory)
        version = CoreMetrics.Gauge(label: "fed_evaluation_model_version", factory: factory)
        clients = CoreMetrics.Gauge(label: "fed_evaluation_clients", factory: factory)
        examples = CoreMetrics.Gauge(label: "fed_evaluation_examples", factory: factory)
    }

    /// Sets the gauges to `summary`.
    func show(_ summary: EvaluationSummary) {
        version.record(Double(summary.modelVersion))
        clients.record(Double(summary.clients))
        examples.record(Double(summary.examples))
        for (name, d) in summary.metrics.sorted(by: { $0.key < $1.key }) {
            let made: [CoreMetrics.Gauge]? = gauges.withLock { g in
                if let found = g[name] { return found }
                guard g.count < Self.maxGaugedMetrics else { return nil }
                let new = Self.statistics.map {
                    CoreMetrics.Gauge(
                        label: "fed_evaluation_metric", dimensions: [("metric", name), ("statistic", $0)],
                        factory: factory)
                }
                g[name] = new
                return new
            }
            guard let made else { continue }
            for (gauge, value) in zip(made, [d.mean, d.p10, d.p90, d.min, d.max]) { gauge.record(value) }
        }
    }
}
