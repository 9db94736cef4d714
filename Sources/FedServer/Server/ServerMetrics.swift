import CoreMetrics
import FedCodec
import Foundation
import Prometheus
import Synchronization

/// What the server counts while it runs: recorded through swift-metrics and
/// served as `GET /metrics` in the Prometheus text format (version 0.0.4)
/// from a `PrometheusCollectorRegistry` that belongs to this instance.
///
/// Every metric is named `fed_...`; counters end in `_total`, durations are
/// in seconds (swift-metrics timers, served as histograms with the bounds
/// `buckets`). Series with labels (requests, errors, refused updates) appear
/// once they were first counted; edge series only when made for an edge.
///
/// Servers in one process never share a series: each `ServerMetrics` has its
/// own registry, and the process-wide `MetricsSystem` is neither bootstrapped
/// nor read. With a `factory`, every metric is also recorded through it
/// (under the same labels and dimensions), while `render` still serves this
/// instance's registry. The gauges of the server's state (the model, the
/// buffered updates, open connections, the memory budget, an edge's queues)
/// and `fed_updates_discarded_total` are read from that state when `render`
/// runs, so a factory sees them change only when `/metrics` is served.
///
/// Cost: counters are one atomic add each; a labeled counter adds a lookup
/// under a lock of its own metric; a timer's observation takes the lock of its
/// own histogram.
public final class ServerMetrics: Sendable {
    /// Histogram bucket bounds in seconds (Prometheus' defaults, plus 1 ms).
    static let buckets: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// The `# HELP` text of every metric, by name.
    static let help: [String: String] = [
        "fed_model_version": "Version of the published model.",
        "fed_model_samples": "Samples the model has been trained on.",
        "fed_buffered_updates": "Updates waiting in the strategy's buffer.",
        "fed_updates_discarded_total":
            "Buffered updates discarded because their combination would have published a weight beyond ±1e15.",
        "fed_connections_open": "Connections being served.",
        "fed_connections_accepted_total": "Connections accepted for service.",
        "fed_connections_refused_total": "Connections refused at a connection limit.",
        "fed_tls_handshakes_in_progress": "TLS handshakes begun and not yet completed or closed.",
        "fed_tls_handshakes_refused_total":
            "TLS handshakes closed before any TLS work, by the limit that refused them.",
        "fed_requests_total": "Requests by protocol and kind.",
        "fed_errors_total": "Error answers by protocol error code.",
        "fed_updates_applied_total": "Updates accepted (applied or buffered).",
        "fed_updates_rejected_total": "Updates refused, by error code.",
        "fed_received_bytes_total": "Bytes read from clients.",
        "fed_sent_bytes_total": "Bytes written to clients.",
        "fed_memory_budget_used_bytes": "Bytes held against the memory budget.",
        "fed_memory_budget_bytes": "The memory budget.",
        "fed_fetch_seconds": "Time from a fetch's arrival to its answer's last byte leaving.",
        "fed_push_seconds": "Time from a push's arrival to its answer (the durable commit included).",
        "fed_checkpoint_write_seconds": "Time to write the checkpoint durably.",
        "fed_edge_pending_updates": "Client updates gathering for the next upstream push.",
        "fed_edge_outbox_updates": "Client updates pushed upstream and not yet acknowledged.",
        "fed_edge_upstream_version": "Upstream version the edge's model comes from.",
        "fed_edge_upstream_syncs_total": "Rounds with the upstream (push, then fetch), by result.",
        "fed_edge_upstream_failures_in_a_row": "Rounds with the upstream failed since the last success.",
        "fed_edge_upstream_pushed_updates_total": "Client updates acknowledged by the upstream.",
        "fed_edge_upstream_last_success_timestamp_seconds":
            "Unix time of the last successful round with the upstream (0: none yet).",
        "fed_rounds_closed_total": "Rounds closed: their reports' mean applied and written (version 4).",
        "fed_rounds_abandoned_total": "Rounds abandoned at their deadline with too few reports, or at shutdown.",
        "fed_round_tasks_total": "Train tasks handed to selected clients.",
        "fed_round_reports_applied_total": "Reports applied in closed rounds.",
        "fed_checkins_waiting": "Check-ins waiting for a task (long polls held).",
        "fed_round_seconds": "Time from a round's selection to its closing.",
        "fed_privacy_epsilon":
            "Differential privacy: epsilon spent by the versions published so far, at the configured delta.",
        "fed_privacy_rounds": "Differential privacy: rounds published and accounted for.",
        "fed_privacy_clip_norm": "Differential privacy: the clipping norm of the next round.",
        "fed_evaluation_tasks_total": "Evaluate tasks handed to checking-in clients.",
        "fed_evaluation_reports_total": "Evaluation reports taken (binary and HTTP).",
        "fed_evaluation_model_version": "The highest model version clients reported an evaluation of.",
        "fed_evaluation_clients": "Clients that reported on that version.",
        "fed_evaluation_examples": "Held-out examples those clients evaluated, in all.",
        "fed_evaluation_metric":
            "A metric of that version across its clients: the mean weighted by examples, nearest-rank p10 and p90, min and max.",
    ]

    /// The registry `render` serves.
    let registry: PrometheusCollectorRegistry
    /// Where every metric is made (the registry's factory, and the app's when given).
    let factory: any MetricsFactory

    let connectionsAccepted: CounterMetric
    let connectionsRefused: CounterMetric
    let bytesIn: CounterMetric
    let bytesOut: CounterMetric
    let updatesApplied: CounterMetric
    /// TLS handshakes begun and neither completed nor closed.
    let tlsHandshakesInProgress: UpDownMetric
    private let tlsHandshakesRefusedRate: CoreMetrics.Counter
    private let tlsHandshakesRefusedConcurrency: CoreMetrics.Counter

    private let requests: LabeledCounters<RequestKind>
    private let errors: LabeledCounters<UInt16>
    private let rejections: LabeledCounters<UInt16>
    private let fetchSeconds: CoreMetrics.Timer
    private let pushSeconds: CoreMetrics.Timer
    private let checkpointSeconds: CoreMetrics.Timer

    private let modelVersion: CoreMetrics.Gauge
    private let modelSamples: CoreMetrics.Gauge
    private let bufferedUpdates: CoreMetrics.Gauge
    private let connectionsOpen: CoreMetrics.Gauge
    private let budgetUsed: CoreMetrics.Gauge
    private let budgetLimit: CoreMetrics.Gauge
    private let discardedUpdates: CoreMetrics.Counter
    /// The discarded-update count already added to `discardedUpdates`.
    private let discardedCounted = Mutex(0)
    private let edge: EdgeMetrics?

    /// Metrics in a registry of their own, without edge series.
    public convenience init() { self.init(factory: nil, edge: false) }

    /// Metrics in a registry of their own, and also recorded through
    /// `factory` when one is given; with the edge series when `edge`.
    init(factory app: (any MetricsFactory)?, edge: Bool) {
        let registry = PrometheusCollectorRegistry()
        let own = DescribedPrometheusFactory(registry: registry, help: Self.help, buckets: Self.buckets)
        let factory: any MetricsFactory = app.map { MultiplexMetricsHandler(factories: [own, $0]) } ?? own
        self.registry = registry
        self.factory = factory
        func counter(_ name: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: name, dimensions: dimensions, factory: factory)
        }
        func gauge(_ name: String) -> CoreMetrics.Gauge { CoreMetrics.Gauge(label: name, factory: factory) }
        func timer(_ name: String) -> CoreMetrics.Timer { CoreMetrics.Timer(label: name, factory: factory) }
        modelVersion = gauge("fed_model_version")
        modelSamples = gauge("fed_model_samples")
        bufferedUpdates = gauge("fed_buffered_updates")
        discardedUpdates = counter("fed_updates_discarded_total")
        connectionsOpen = gauge("fed_connections_open")
        connectionsAccepted = CounterMetric(counter("fed_connections_accepted_total"))
        connectionsRefused = CounterMetric(counter("fed_connections_refused_total"))
        tlsHandshakesInProgress = UpDownMetric(Meter(label: "fed_tls_handshakes_in_progress", factory: factory))
        tlsHandshakesRefusedConcurrency = counter("fed_tls_handshakes_refused_total", [("reason", "concurrency")])
        tlsHandshakesRefusedRate = counter("fed_tls_handshakes_refused_total", [("reason", "rate")])
        requests = LabeledCounters { [factory] in
            CoreMetrics.Counter(
                label: "fed_requests_total", dimensions: [("protocol", $0.protocolName), ("kind", $0.kind)],
                factory: factory)
        }
        errors = LabeledCounters { [factory] in
            CoreMetrics.Counter(
                label: "fed_errors_total", dimensions: [("code", ErrorCode(rawValue: $0).name)], factory: factory)
        }
        updatesApplied = CounterMetric(counter("fed_updates_applied_total"))
        rejections = LabeledCounters { [factory] in
            CoreMetrics.Counter(
                label: "fed_updates_rejected_total", dimensions: [("code", ErrorCode(rawValue: $0).name)],
                factory: factory)
        }
        bytesIn = CounterMetric(counter("fed_received_bytes_total"))
        bytesOut = CounterMetric(counter("fed_sent_bytes_total"))
        budgetUsed = gauge("fed_memory_budget_used_bytes")
        budgetLimit = gauge("fed_memory_budget_bytes")
        fetchSeconds = timer("fed_fetch_seconds")
        pushSeconds = timer("fed_push_seconds")
        checkpointSeconds = timer("fed_checkpoint_write_seconds")
        self.edge = edge ? EdgeMetrics(factory: factory) : nil
    }

    func tlsHandshakeRefused(_ refusal: HandshakeLimiter.Refusal) {
        switch refusal {
        case .rate: tlsHandshakesRefusedRate.increment()
        case .concurrency: tlsHandshakesRefusedConcurrency.increment()
        }
    }

    /// A round with the upstream succeeded (counted only by edges).
    func edgeSynced(pushedUpdates: Int) {
        guard let edge else { return }
        edge.syncsOK.increment()
        edge.failuresInARow.set(0)
        edge.pushedUpdates.increment(by: pushedUpdates)
        edge.lastSuccess.record((Date().timeIntervalSince1970 * 1000).rounded(.down) / 1000)
    }

    /// A round with the upstream failed (counted only by edges).
    func edgeSyncFailed() {
        guard let edge else { return }
        edge.syncFailures.increment()
        edge.failuresInARow.increment()
    }

    /// What an edge holds, read at the time of a scrape.
    struct EdgeGauges {
        /// Client updates gathering for the next upstream push.
        var pending: Int
        /// Client updates pushed upstream and not yet acknowledged.
        var outbox: Int
        /// The upstream version the edge's model comes from (0 before it took one).
        var upstreamVersion: UInt64
    }

    func request(_ protocolName: String, _ kind: String) {
        requests.increment(RequestKind(protocolName: protocolName, kind: kind))
    }

    func error(_ code: ErrorCode) { errors.increment(code.rawValue) }

    func rejected(_ code: ErrorCode) { rejections.increment(code.rawValue) }

    func fetchTook(_ seconds: Double) { fetchSeconds.recordSeconds(seconds) }

    func pushTook(_ seconds: Double) { pushSeconds.recordSeconds(seconds) }

    func checkpointTook(_ seconds: Double) { checkpointSeconds.recordSeconds(seconds) }

    /// Records the state read for this scrape, then returns the exposition
    /// text of the registry. `discardedUpdates` is the count since the server
    /// started (it only grows); `edge` is recorded only by edge metrics.
    func render(
        modelVersion: UInt64, modelSamples: UInt64, bufferedUpdates: Int, discardedUpdates: Int = 0,
        openConnections: Int, budgetUsed: Int,
        budgetLimit: Int, edge: EdgeGauges? = nil
    ) -> String {
        self.modelVersion.record(Double(modelVersion))
        self.modelSamples.record(Double(modelSamples))
        self.bufferedUpdates.record(bufferedUpdates)
        connectionsOpen.record(openConnections)
        self.budgetUsed.record(budgetUsed)
        self.budgetLimit.record(budgetLimit)
        let newlyDiscarded = discardedCounted.withLock { counted in
            defer { counted = max(counted, discardedUpdates) }
            return max(0, discardedUpdates - counted)
        }
        if newlyDiscarded > 0 { self.discardedUpdates.increment(by: newlyDiscarded) }
        if let metrics = self.edge, let edge {
            metrics.pending.record(edge.pending)
            metrics.outbox.record(edge.outbox)
            metrics.upstreamVersion.record(Double(edge.upstreamVersion))
        }
        return registry.emitToString()
    }
}

/// A counter of `ServerMetrics` that call sites add to as to an `Atomic`.
struct CounterMetric: Sendable {
    let counter: CoreMetrics.Counter

    init(_ counter: CoreMetrics.Counter) { self.counter = counter }

    /// Adds `amount` (below 2^63). Every backend's counter is atomic by
    /// itself: `ordering` has no effect.
    func add(_ amount: UInt64, ordering: AtomicUpdateOrdering) { counter.increment(by: amount) }
}

/// A gauge of `ServerMetrics` that call sites move up and down as an `Atomic`.
struct UpDownMetric: Sendable {
    let meter: Meter

    init(_ meter: Meter) { self.meter = meter }

    /// Raises the gauge by `amount`; `ordering` has no effect.
    func add(_ amount: Int, ordering: AtomicUpdateOrdering) { meter.increment(by: Double(amount)) }

    /// Lowers the gauge by `amount`; `ordering` has no effect.
    func subtract(_ amount: Int, ordering: AtomicUpdateOrdering) { meter.decrement(by: Double(amount)) }
}

/// A request's protocol and kind (the labels of `fed_requests_total`).
struct RequestKind: Hashable, Sendable {
    var protocolName: String
    var kind: String
}

/// The counters of one metric by label value, each made on its first use.
///
/// The lock guards only the table lookup (and the making of a counter the
/// first time); the count itself is the counter's.
final class LabeledCounters<Key: Hashable & Sendable>: Sendable {
    private let counters = Mutex<[Key: CoreMetrics.Counter]>([:])
    private let make: @Sendable (Key) -> CoreMetrics.Counter

    init(make: @escaping @Sendable (Key) -> CoreMetrics.Counter) { self.make = make }

    func increment(_ key: Key) {
        let counter = counters.withLock { table in
            if let counter = table[key] { return counter }
            let counter = make(key)
            table[key] = counter
            return counter
        }
        counter.increment()
    }
}

/// An edge server's rounds with its upstream and what it holds.
private struct EdgeMetrics: Sendable {
    let syncsOK: CoreMetrics.Counter
    let syncFailures: CoreMetrics.Counter
    let failuresInARow: Meter
    let pushedUpdates: CoreMetrics.Counter
    /// Unix time in seconds (to the millisecond) of the last round that
    /// succeeded; 0 before one did.
    let lastSuccess: CoreMetrics.Gauge
    let pending: CoreMetrics.Gauge
    let outbox: CoreMetrics.Gauge
    let upstreamVersion: CoreMetrics.Gauge

    init(factory: any MetricsFactory) {
        func gauge(_ name: String) -> CoreMetrics.Gauge { CoreMetrics.Gauge(label: name, factory: factory) }
        pending = gauge("fed_edge_pending_updates")
        outbox = gauge("fed_edge_outbox_updates")
        upstreamVersion = gauge("fed_edge_upstream_version")
        syncsOK = CoreMetrics.Counter(
            label: "fed_edge_upstream_syncs_total", dimensions: [("result", "ok")], factory: factory)
        syncFailures = CoreMetrics.Counter(
            label: "fed_edge_upstream_syncs_total", dimensions: [("result", "failed")], factory: factory)
        failuresInARow = Meter(label: "fed_edge_upstream_failures_in_a_row", factory: factory)
        pushedUpdates = CoreMetrics.Counter(label: "fed_edge_upstream_pushed_updates_total", factory: factory)
        lastSuccess = gauge("fed_edge_upstream_last_success_timestamp_seconds")
    }
}

/// Seconds elapsed since `start` (for latency histograms).
func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}
