import FedCodec
import FedTestSupport
import Foundation
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
}
