import FedCodec
import FedTestSupport
import Foundation
import MetricsTestKit
import Testing

@testable import FedServer

/// `GET /metrics`: Prometheus text that counts what the clients did.
@Suite("Metrics", .serialized)
struct MetricsTests {
    func scrape(_ port: Int, token: String? = nil) throws -> String {
        let c = try TestClient(port: port, timeoutSeconds: 5)
        let auth = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
        try c.send(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\(auth)Connection: close\r\n\r\n".utf8))
        return c.receiveAll()
    }

    func value(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap {
            Double($0.split(separator: " ").last!)
        }
    }

    @Test("Counters match the traffic: fetches, pushes applied and refused, version, bytes")
    func counters() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        for i in 0..<3 { _ = try c.push(constantTensors(Float(i)), datasets: 10) }
        for _ in 0..<2 { _ = try c.fetch() }
        var nan = constantTensors(1)
        nan[0].values[0] = .nan
        _ = try c.push(nan, datasets: 10)
        let http = try TestClient(port: s.port, timeoutSeconds: 5)
        try http.send(Array("GET /?id=h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        _ = http.receiveAll()
        let answer = try scrape(s.port)
        #expect(answer.hasPrefix("HTTP/1.1 200") && answer.contains("text/plain; version=0.0.4"))
        let text = String(answer[answer.range(of: "\r\n\r\n")!.upperBound...])
        #expect(value(text, "fed_updates_applied_total") == 3)
        #expect(value(text, "fed_updates_rejected_total{code=\"non_finite_value\"}") == 1)
        #expect(value(text, "fed_requests_total{protocol=\"binary\",kind=\"push\"}") == 4)
        #expect(value(text, "fed_requests_total{protocol=\"binary\",kind=\"fetch\"}") == 2)
        #expect(value(text, "fed_requests_total{protocol=\"http\",kind=\"fetch\"}") == 1)
        #expect(value(text, "fed_errors_total{code=\"non_finite_value\"}") == 1)
        #expect(value(text, "fed_model_version") == 3)
        #expect(value(text, "fed_push_seconds_count") == 4)
        #expect((value(text, "fed_sent_bytes_total") ?? 0) > 2 * 796_840)
        #expect((value(text, "fed_checkpoint_write_seconds_count") ?? 0) >= 1)
        // The format: HELP and TYPE before every metric's samples; every sample is NAME{LABELS} NUMBER.
        var typed = Set<String>()
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") { typed.insert(String(line.split(separator: " ")[2])) }
            if line.hasPrefix("#") { continue }
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            let base = ["_bucket", "_sum", "_count"].reduce(name) { n, s in
                n.hasSuffix(s) && !typed.contains(n) ? String(n.dropLast(s.count)) : n
            }
            #expect(typed.contains(base), "\(line) has no TYPE")
            #expect(Double(line.split(separator: " ").last!) != nil, "\(line)")
        }
    }

    @Test("With tokens, /metrics needs the bearer token")
    func protected() throws {
        let s = try RunningServer(authTokens: ["s3cret"])
        #expect(try scrape(s.port).hasPrefix("HTTP/1.1 401"))
        #expect(try scrape(s.port, token: "s3cret").hasPrefix("HTTP/1.1 200"))
    }

    @Test(
        "promtool check metrics accepts the exposition",
        .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/promtool")))
    func promtool() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        _ = try c.push(constantTensors(1), datasets: 10)
        let answer = try scrape(s.port)
        let text = String(answer[answer.range(of: "\r\n\r\n")!.upperBound...])
        let (status, said) = try runProgram("/usr/bin/promtool", ["check", "metrics"], input: Array(text.utf8))
        #expect(status == 0, "\(String(decoding: said, as: UTF8.self))")
    }

    /// The body of an HTTP answer.
    func body(_ answer: String) -> String { String(answer[answer.range(of: "\r\n\r\n")!.upperBound...]) }

    /// Every metric's name and `# TYPE`, then whether each has a `# HELP`.
    func families(_ text: String) -> (types: [String: String], helped: Set<String>) {
        var types: [String: String] = [:]
        var helped = Set<String>()
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 3)
            if line.hasPrefix("# TYPE ") { types[String(words[2])] = String(words[3]) }
            if line.hasPrefix("# HELP "), words.count == 4 { helped.insert(String(words[2])) }
        }
        return (types, helped)
    }

    /// The metrics a server that is not an edge served before they went through swift-metrics.
    static let serverFamilies: [String: String] = [
        "fed_model_version": "gauge", "fed_model_samples": "gauge", "fed_buffered_updates": "gauge",
        "fed_updates_discarded_total": "counter", "fed_connections_open": "gauge",
        "fed_connections_accepted_total": "counter", "fed_connections_refused_total": "counter",
        "fed_tls_handshakes_in_progress": "gauge", "fed_tls_handshakes_refused_total": "counter",
        "fed_requests_total": "counter", "fed_errors_total": "counter", "fed_updates_applied_total": "counter",
        "fed_updates_rejected_total": "counter", "fed_received_bytes_total": "counter",
        "fed_sent_bytes_total": "counter", "fed_memory_budget_used_bytes": "gauge",
        "fed_memory_budget_bytes": "gauge", "fed_fetch_seconds": "histogram", "fed_push_seconds": "histogram",
        "fed_checkpoint_write_seconds": "histogram",
    ]

    /// The metrics an edge serves besides `serverFamilies`.
    static let edgeFamilies: [String: String] = [
        "fed_edge_pending_updates": "gauge", "fed_edge_outbox_updates": "gauge",
        "fed_edge_upstream_version": "gauge", "fed_edge_upstream_syncs_total": "counter",
        "fed_edge_upstream_failures_in_a_row": "gauge", "fed_edge_upstream_pushed_updates_total": "counter",
        "fed_edge_upstream_last_success_timestamp_seconds": "gauge",
    ]

    @Test("/metrics serves today's names, types, labels and bucket bounds, each metric with its help")
    func names() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        _ = try c.push(constantTensors(1), datasets: 10)
        var nan = constantTensors(1)
        nan[0].values[0] = .nan
        _ = try c.push(nan, datasets: 10)
        _ = try c.fetch()
        let text = body(try scrape(s.port))
        let (types, helped) = families(text)
        #expect(types == Self.serverFamilies)
        #expect(helped == Set(Self.serverFamilies.keys))
        for series in [
            "fed_tls_handshakes_refused_total{reason=\"rate\"}",
            "fed_tls_handshakes_refused_total{reason=\"concurrency\"}",
            "fed_requests_total{protocol=\"binary\",kind=\"hello\"}",
            "fed_requests_total{protocol=\"http\",kind=\"metrics\"}",
            "fed_errors_total{code=\"non_finite_value\"}", "fed_updates_rejected_total{code=\"non_finite_value\"}",
            "fed_push_seconds_sum", "fed_push_seconds_count",
        ] {
            #expect(value(text, series) != nil, "\(series) missing")
        }
        let bounds = [
            "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
        ]
        for name in ["fed_fetch_seconds", "fed_push_seconds", "fed_checkpoint_write_seconds"] {
            let served = text.split(separator: "\n").filter { $0.hasPrefix(name + "_bucket{") }.map {
                String($0.split(separator: "\"")[1])
            }
            #expect(served == bounds, "\(name)")
        }
        #expect(value(text, "fed_push_seconds_bucket{le=\"+Inf\"}") == 2)
    }

    @Test("An edge's metrics add the edge series, each with its help")
    func edgeNames() {
        let metrics = ServerMetrics(factory: nil, edge: true)
        metrics.edgeSynced(pushedUpdates: 3)
        metrics.edgeSyncFailed()
        let text = metrics.render(
            modelVersion: 1, modelSamples: 2, bufferedUpdates: 0, openConnections: 0, budgetUsed: 0, budgetLimit: 9,
            edge: .init(pending: 4, outbox: 5, upstreamVersion: 6))
        let (types, helped) = families(text)
        let all = Self.serverFamilies.merging(Self.edgeFamilies) { a, _ in a }
        // Series with labels appear once counted: none of these were.
        let counted = all.filter {
            !["fed_requests_total", "fed_errors_total", "fed_updates_rejected_total"].contains($0.key)
        }
        #expect(types == counted)
        #expect(helped == Set(counted.keys))
        #expect(value(text, "fed_edge_upstream_syncs_total{result=\"ok\"}") == 1)
        #expect(value(text, "fed_edge_upstream_syncs_total{result=\"failed\"}") == 1)
        #expect(value(text, "fed_edge_upstream_failures_in_a_row") == 1)
        #expect(value(text, "fed_edge_upstream_pushed_updates_total") == 3)
        #expect((value(text, "fed_edge_upstream_last_success_timestamp_seconds") ?? 0) > 1.7e9)
        #expect(value(text, "fed_edge_pending_updates") == 4 && value(text, "fed_edge_outbox_updates") == 5)
        #expect(value(text, "fed_edge_upstream_version") == 6 && value(text, "fed_memory_budget_bytes") == 9)
    }

    @Test("Two servers' metrics in one process share no series")
    func ownRegistry() {
        let a = ServerMetrics()
        let b = ServerMetrics()
        a.updatesApplied.add(2, ordering: .relaxed)
        a.request("binary", "push")
        _ = a.render(
            modelVersion: 0, modelSamples: 0, bufferedUpdates: 0, discardedUpdates: 3, openConnections: 0,
            budgetUsed: 0, budgetLimit: 0)
        let textA = a.render(
            modelVersion: 0, modelSamples: 0, bufferedUpdates: 0, discardedUpdates: 5, openConnections: 0,
            budgetUsed: 0, budgetLimit: 0)
        let textB = b.render(
            modelVersion: 0, modelSamples: 0, bufferedUpdates: 0, openConnections: 0, budgetUsed: 0, budgetLimit: 0)
        #expect(value(textA, "fed_updates_applied_total") == 2 && value(textB, "fed_updates_applied_total") == 0)
        #expect(value(textA, "fed_requests_total{protocol=\"binary\",kind=\"push\"}") == 1)
        #expect(!textB.contains("fed_requests_total{"))
        // The discarded count is the server's total at each scrape, not a sum of them.
        #expect(value(textA, "fed_updates_discarded_total") == 5)
    }

    @Test("An embedding app's metrics factory receives a push; /metrics still serves the server's registry")
    func appFactory() throws {
        let app = TestMetrics()
        let s = try RunningServer { $0.metricsFactory = app }
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        _ = try c.push(constantTensors(1), datasets: 10)
        let text = body(try scrape(s.port))
        #expect(value(text, "fed_updates_applied_total") == 1 && value(text, "fed_model_version") == 1)
        #expect(try app.expectCounter("fed_updates_applied_total").totalValue == 1)
        #expect(
            try app.expectCounter("fed_requests_total", [("protocol", "binary"), ("kind", "push")]).totalValue == 1)
        #expect(try app.expectTimer("fed_push_seconds").values.count == 1)
        #expect(
            try app.expectCounter("fed_received_bytes_total").totalValue
                == Int64(value(text, "fed_received_bytes_total")!))
        #expect(try app.expectGauge("fed_model_version").lastValue == 1)
    }
}
