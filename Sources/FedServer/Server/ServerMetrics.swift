import FedCodec
import Foundation
import Synchronization

/// What the server counts while it runs, served as `GET /metrics` in the
/// Prometheus text format (version 0.0.4).
///
/// A fixed set of counters, gauges and histograms kept with atomics and one
/// mutex, written out by hand: the set is small and known, so this avoids two
/// dependencies (swift-metrics and swift-prometheus) and their build time.
/// Every metric is named `fed_...`; counters end in `_total`, durations are
/// in seconds.
public final class ServerMetrics: Sendable {
    /// Histogram bucket bounds in seconds (Prometheus' defaults, plus 1 ms).
    static let buckets: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    struct Histogram {
        var counts = [UInt64](repeating: 0, count: ServerMetrics.buckets.count)
        var sum = 0.0
        var count: UInt64 = 0

        mutating func observe(_ seconds: Double) {
            for (i, bound) in ServerMetrics.buckets.enumerated() where seconds <= bound { counts[i] += 1 }
            sum += seconds
            count += 1
        }
    }

    private struct Labeled {
        var requests: [String: UInt64] = [:]
        var errors: [UInt16: UInt64] = [:]
        var rejected: [UInt16: UInt64] = [:]
        var fetch = Histogram()
        var push = Histogram()
        var checkpoint = Histogram()
    }

    private let labeled = Mutex(Labeled())
    let connectionsAccepted = Atomic<UInt64>(0)
    let connectionsRefused = Atomic<UInt64>(0)
    let bytesIn = Atomic<UInt64>(0)
    let bytesOut = Atomic<UInt64>(0)
    let updatesApplied = Atomic<UInt64>(0)

    /// TLS handshakes closed before any TLS work, by the bound that refused them.
    let tlsHandshakesRefusedRate = Atomic<UInt64>(0)
    let tlsHandshakesRefusedConcurrency = Atomic<UInt64>(0)
    /// TLS handshakes begun and neither completed nor closed.
    let tlsHandshakesInProgress = Atomic<Int>(0)

    func tlsHandshakeRefused(_ refusal: HandshakeLimiter.Refusal) {
        switch refusal {
        case .rate: tlsHandshakesRefusedRate.add(1, ordering: .relaxed)
        case .concurrency: tlsHandshakesRefusedConcurrency.add(1, ordering: .relaxed)
        }
    }

    /// An edge server's rounds with its upstream (reported only by edges).
    let edgeSyncsOK = Atomic<UInt64>(0)
    let edgeSyncFailures = Atomic<UInt64>(0)
    let edgeFailuresInARow = Atomic<UInt64>(0)
    let edgePushedUpdates = Atomic<UInt64>(0)
    /// Unix time in milliseconds of the last round that succeeded; 0 before one did.
    let edgeLastSuccessMilliseconds = Atomic<UInt64>(0)

    public init() {}

    func edgeSynced(pushedUpdates: Int) {
        edgeSyncsOK.add(1, ordering: .relaxed)
        edgeFailuresInARow.store(0, ordering: .relaxed)
        edgePushedUpdates.add(UInt64(pushedUpdates), ordering: .relaxed)
        edgeLastSuccessMilliseconds.store(UInt64(Date().timeIntervalSince1970 * 1000), ordering: .relaxed)
    }

    func edgeSyncFailed() {
        edgeSyncFailures.add(1, ordering: .relaxed)
        edgeFailuresInARow.add(1, ordering: .relaxed)
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
        labeled.withLock { $0.requests["\(protocolName)|\(kind)", default: 0] += 1 }
    }

    func error(_ code: ErrorCode) { labeled.withLock { $0.errors[code.rawValue, default: 0] += 1 } }

    func rejected(_ code: ErrorCode) { labeled.withLock { $0.rejected[code.rawValue, default: 0] += 1 } }

    func fetchTook(_ seconds: Double) { labeled.withLock { $0.fetch.observe(seconds) } }

    func pushTook(_ seconds: Double) { labeled.withLock { $0.push.observe(seconds) } }

    func checkpointTook(_ seconds: Double) { labeled.withLock { $0.checkpoint.observe(seconds) } }

    /// The exposition text. `gauges` are read at the time of the scrape.
    func render(
        modelVersion: UInt64, modelSamples: UInt64, bufferedUpdates: Int, discardedUpdates: Int = 0,
        openConnections: Int, budgetUsed: Int,
        budgetLimit: Int, edge: EdgeGauges? = nil
    ) -> String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, String)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in samples { out += "\(name)\(labels) \(value)\n" }
        }
        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            for (bound, count) in zip(Self.buckets, h.counts) { out += "\(name)_bucket{le=\"\(bound)\"} \(count)\n" }
            out += "\(name)_bucket{le=\"+Inf\"} \(h.count)\n\(name)_sum \(h.sum)\n\(name)_count \(h.count)\n"
        }
        let l = labeled.withLock { $0 }
        metric("fed_model_version", "gauge", "Version of the published model.", [("", "\(modelVersion)")])
        metric("fed_model_samples", "gauge", "Samples the model has been trained on.", [("", "\(modelSamples)")])
        metric(
            "fed_buffered_updates", "gauge", "Updates waiting in the strategy's buffer.", [("", "\(bufferedUpdates)")])
        metric(
            "fed_updates_discarded_total", "counter",
            "Buffered updates discarded because their combination would have published a weight beyond ±1e15.",
            [("", "\(discardedUpdates)")])
        metric("fed_connections_open", "gauge", "Connections being served.", [("", "\(openConnections)")])
        metric(
            "fed_connections_accepted_total", "counter", "Connections accepted for service.",
            [("", "\(connectionsAccepted.load(ordering: .relaxed))")])
        metric(
            "fed_connections_refused_total", "counter", "Connections refused at a connection limit.",
            [("", "\(connectionsRefused.load(ordering: .relaxed))")])
        metric(
            "fed_tls_handshakes_in_progress", "gauge", "TLS handshakes begun and not yet completed or closed.",
            [("", "\(tlsHandshakesInProgress.load(ordering: .relaxed))")])
        metric(
            "fed_tls_handshakes_refused_total", "counter",
            "TLS handshakes closed before any TLS work, by the limit that refused them.",
            [
                ("{reason=\"concurrency\"}", "\(tlsHandshakesRefusedConcurrency.load(ordering: .relaxed))"),
                ("{reason=\"rate\"}", "\(tlsHandshakesRefusedRate.load(ordering: .relaxed))"),
            ])
        metric(
            "fed_requests_total", "counter", "Requests by protocol and kind.",
            l.requests.keys.sorted().map { key in
                let parts = key.split(separator: "|")
                return ("{protocol=\"\(parts[0])\",kind=\"\(parts[1])\"}", "\(l.requests[key]!)")
            })
        metric(
            "fed_errors_total", "counter", "Error answers by protocol error code.",
            l.errors.keys.sorted().map { ("{code=\"\(ErrorCode(rawValue: $0).name)\"}", "\(l.errors[$0]!)") })
        metric(
            "fed_updates_applied_total", "counter", "Updates accepted (applied or buffered).",
            [("", "\(updatesApplied.load(ordering: .relaxed))")])
        metric(
            "fed_updates_rejected_total", "counter", "Updates refused, by error code.",
            l.rejected.keys.sorted().map { ("{code=\"\(ErrorCode(rawValue: $0).name)\"}", "\(l.rejected[$0]!)") })
        metric(
            "fed_received_bytes_total", "counter", "Bytes read from clients.",
            [("", "\(bytesIn.load(ordering: .relaxed))")])
        metric(
            "fed_sent_bytes_total", "counter", "Bytes written to clients.",
            [("", "\(bytesOut.load(ordering: .relaxed))")])
        metric(
            "fed_memory_budget_used_bytes", "gauge", "Bytes held against the memory budget.", [("", "\(budgetUsed)")])
        metric("fed_memory_budget_bytes", "gauge", "The memory budget.", [("", "\(budgetLimit)")])
        histogram("fed_fetch_seconds", "Time from a fetch's arrival to its answer's last byte leaving.", l.fetch)
        histogram("fed_push_seconds", "Time from a push's arrival to its answer (the durable commit included).", l.push)
        histogram("fed_checkpoint_write_seconds", "Time to write the checkpoint durably.", l.checkpoint)
        if let edge {
            metric(
                "fed_edge_pending_updates", "gauge", "Client updates gathering for the next upstream push.",
                [("", "\(edge.pending)")])
            metric(
                "fed_edge_outbox_updates", "gauge", "Client updates pushed upstream and not yet acknowledged.",
                [("", "\(edge.outbox)")])
            metric(
                "fed_edge_upstream_version", "gauge", "Upstream version the edge's model comes from.",
                [("", "\(edge.upstreamVersion)")])
            metric(
                "fed_edge_upstream_syncs_total", "counter", "Rounds with the upstream (push, then fetch), by result.",
                [
                    ("{result=\"ok\"}", "\(edgeSyncsOK.load(ordering: .relaxed))"),
                    ("{result=\"failed\"}", "\(edgeSyncFailures.load(ordering: .relaxed))"),
                ])
            metric(
                "fed_edge_upstream_failures_in_a_row", "gauge",
                "Rounds with the upstream failed since the last success.",
                [("", "\(edgeFailuresInARow.load(ordering: .relaxed))")])
            metric(
                "fed_edge_upstream_pushed_updates_total", "counter", "Client updates acknowledged by the upstream.",
                [("", "\(edgePushedUpdates.load(ordering: .relaxed))")])
            let last = Double(edgeLastSuccessMilliseconds.load(ordering: .relaxed)) / 1000
            metric(
                "fed_edge_upstream_last_success_timestamp_seconds", "gauge",
                "Unix time of the last successful round with the upstream (0: none yet).", [("", "\(last)")])
        }
        return out
    }
}

/// Seconds elapsed since `start` (for latency histograms).
func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}
