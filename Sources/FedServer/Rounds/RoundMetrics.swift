import CoreMetrics

/// The rounds' series of `/metrics` (made only when the server runs rounds),
/// recorded by the `RoundCoordinator` on its queue as events happen.
struct RoundMetrics: Sendable {
    let closed: CoreMetrics.Counter
    let abandoned: CoreMetrics.Counter
    let tasks: CoreMetrics.Counter
    let reportsApplied: CoreMetrics.Counter
    let waiting: CoreMetrics.Gauge
    let duration: CoreMetrics.Timer
    let epsilon: CoreMetrics.Gauge
    let privateRounds: CoreMetrics.Gauge
    let clip: CoreMetrics.Gauge

    init(_ metrics: ServerMetrics) {
        let f = metrics.factory
        closed = CoreMetrics.Counter(label: "fed_rounds_closed_total", factory: f)
        abandoned = CoreMetrics.Counter(label: "fed_rounds_abandoned_total", factory: f)
        tasks = CoreMetrics.Counter(label: "fed_round_tasks_total", factory: f)
        reportsApplied = CoreMetrics.Counter(label: "fed_round_reports_applied_total", factory: f)
        waiting = CoreMetrics.Gauge(label: "fed_checkins_waiting", factory: f)
        duration = CoreMetrics.Timer(label: "fed_round_seconds", factory: f)
        epsilon = CoreMetrics.Gauge(label: "fed_privacy_epsilon", factory: f)
        privateRounds = CoreMetrics.Gauge(label: "fed_privacy_rounds", factory: f)
        clip = CoreMetrics.Gauge(label: "fed_privacy_clip_norm", factory: f)
    }

    /// Records the privacy spent (differential privacy only).
    func privacy(_ ledger: PrivacyLedger) {
        epsilon.record(ledger.epsilon)
        privateRounds.record(Double(ledger.rounds))
        clip.record(ledger.clip)
    }
}
