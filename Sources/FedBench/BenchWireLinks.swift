import ArgumentParser
import FedClient
import FedCodec
import FedModel
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `fed bench wire --links`: every encoding over rate-limited links with delay.
extension BenchCommand.Wire {
    /// One way of sending a round trip: how the client pushes, and whether
    /// the server publishes quantized steps that the client fetches.
    struct LinkEncoding {
        let name: String
        let push: WireEncoding
        let fetchDeltas: ValueEncoding?
    }

    static let recommended = "int2-delta,fetch=int2"

    static let linkEncodings: [LinkEncoding] = [
        .init(name: "fp32 (lossless)", push: .lossless, fetchDeltas: nil),
        .init(name: "fp16", push: WireEncoding(values: .float16), fetchDeltas: nil),
        .init(name: "int8-delta", push: WireEncoding(values: .int8, delta: true), fetchDeltas: nil),
        .init(name: "int4-delta", push: WireEncoding(values: .int4, delta: true), fetchDeltas: nil),
        .init(name: "int2-delta", push: WireEncoding(values: .int2, delta: true), fetchDeltas: nil),
        .init(name: recommended, push: WireEncoding(values: .int2, delta: true), fetchDeltas: .int2),
    ]

    struct LinkRow: Codable {
        var link: String
        var shaping: String
        var encoding: String
        var fetchBytes: Int
        var pushBytes: Int
        var roundTripSeconds: Double
        var clientCPUms: Double
        var serverCPUms: Double
    }

    func runLinks() throws {
        let profiles = (link.isEmpty ? ["1mbit:100ms", "10mbit:30ms", "100mbit:5ms"] : link).map { LinkProfile($0)! }
        let (namespaceLink, why) = relayOnly ? (nil, "--relay-only") : NamespaceLink.make()
        let shaping = namespaceLink == nil ? "user-space relay (rate and delay)" : "tc tbf in a namespace + relay delay"
        print(
            namespaceLink == nil
                ? "shaping: the bench's relay paces the rate and adds the delay (no namespaces: \(why))"
                : "shaping: \(why); the bench's relay adds the delay")
        let (weights, steps) = try trainingSequence(rounds: rounds + 1)
        let raw = Double(weights.reduce(0) { $0 + 4 * $1.count })
        var rows: [LinkRow] = []
        for profile in profiles {
            try namespaceLink?.shape(profile)
            for e in Self.linkEncodings {
                Progress.line("\(profile): \(e.name)")
                let server = try LinkServer(namespace: namespaceLink, fetchDeltas: e.fetchDeltas)
                defer { server.stop() }
                let relay = try DelayRelay(
                    target: (server.host, server.port), roundTrip: profile.roundTrip,
                    rate: namespaceLink == nil ? profile.bitsPerSecond : nil)
                defer { relay.stop() }
                let client = BinaryTransport(
                    host: "127.0.0.1", port: relay.port, clientID: "link", compression: .shuffleZlib, timeout: 600,
                    encoding: e.push, acceptDeltas: e.fetchDeltas != nil)
                // Warm-up: the server takes the trained weights (full, lossless) and the client
                // fetches them, so it holds a version as a client in steady state does.
                guard case .model(let v0, _, _) = try client.fetch(heldVersion: 0) else {
                    throw ValidationError("no model")
                }
                _ = try client.push(weights, datasets: 100, baseVersion: v0, pushID: 1)
                _ = try client.fetch(heldVersion: 0)
                var (fetchBytes, pushBytes, seconds, clientCPU, serverCPU) = (0, 0, 0.0, 0.0, 0.0)
                for r in 0..<rounds {
                    let cpu0 = (threadCPUSeconds(), ChildServer.cpuSeconds(pid: server.pid))
                    let start = DelayRelay.now()
                    let b0 = client.bytesSent + client.bytesReceived
                    guard case .model(let v, _, let w) = try client.fetch(heldVersion: 0) else {
                        throw ValidationError("no model")
                    }
                    let b1 = client.bytesSent + client.bytesReceived
                    let trained = zip(w, steps[r]).map { a, d in
                        try! Tensor(shape: a.shape, values: zip(a.values, d.values).map { $0 + $1 })
                    }
                    _ = try client.push(trained, datasets: 100, baseVersion: v, pushID: UInt64(r + 2))
                    seconds += DelayRelay.now() - start
                    fetchBytes += b1 - b0
                    pushBytes += client.bytesSent + client.bytesReceived - b1
                    clientCPU += threadCPUSeconds() - cpu0.0
                    serverCPU += ChildServer.cpuSeconds(pid: server.pid) - cpu0.1
                }
                let n = Double(rounds)
                rows.append(
                    LinkRow(
                        link: profile.description, shaping: shaping, encoding: e.name,
                        fetchBytes: Int(Double(fetchBytes) / n), pushBytes: Int(Double(pushBytes) / n),
                        roundTripSeconds: seconds / n, clientCPUms: clientCPU / n * 1e3,
                        serverCPUms: serverCPU / n * 1e3))
            }
        }
        Progress.done()
        print(
            Table.render(
                header: [
                    "link", "encoding", "fetch B", "push B", "x raw", "s / round trip", "client CPU ms",
                    "server CPU ms",
                ],
                rows: rows.map { r in
                    [
                        r.link, r.encoding, "\(r.fetchBytes)", "\(r.pushBytes)",
                        String(format: "%.3f", Double(r.fetchBytes + r.pushBytes) / raw),
                        String(format: "%.3f", r.roundTripSeconds), String(format: "%.1f", r.clientCPUms),
                        String(format: "%.1f", r.serverCPUms),
                    ]
                }))
        print(
            "(shaping: \(shaping); \(rounds) round trips each after a warm-up (one push and one full fetch, so the client holds a version); raw Float32 weights: \(Int(raw)) B)"
        )
        try writeLinks(rows)
        checkLinkBars(rows, raw: raw)
    }

    /// Trained weights and `rounds` realistic training steps after them (one
    /// epoch each on a slice of the data, or small random steps without data).
    func trainingSequence(rounds: Int) throws -> ([Tensor], [[Tensor]]) {
        let start = try trainedWeights()
        guard let (dir, _) = try? DataFolder.resolve(data),
            let (slices, _, _) = try? DataFolder.federatedSplit(in: dir, scale: true)
        else { return (start, []) }
        let trainer = Trainer(model: MLP(seed: 2), maxBatch: 256, threads: 2)
        try trainer.adopt(start)
        var rng = SeededGenerator(seed: 5)
        var steps: [[Tensor]] = []
        for r in 0..<rounds {
            let before = trainer.model.tensors()
            trainer.optimizer.reset()
            trainer.trainEpoch(slices[1 + r % (slices.count - 1)], rng: &rng)
            steps.append(
                zip(trainer.model.tensors(), before).map { a, b in
                    try! Tensor(shape: a.shape, values: zip(a.values, b.values).map { $0 - $1 })
                })
        }
        return (start, steps)
    }

    func writeLinks(_ rows: [LinkRow]) throws {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let csv = CSV.document(
            header: [
                "link", "shaping", "encoding", "fetch_bytes", "push_bytes", "round_trip_s", "client_cpu_ms",
                "server_cpu_ms",
            ],
            rows: rows.map {
                [
                    $0.link, $0.shaping, $0.encoding, $0.fetchBytes, $0.pushBytes, $0.roundTripSeconds,
                    $0.clientCPUms, $0.serverCPUms,
                ]
            })
        try csv.write(toFile: out + "/links.csv", atomically: true, encoding: .utf8)
        try BenchOutput.json(rows, to: out + "/links.json")
        try LinkChart.svg(rows).write(toFile: out + "/links.svg", atomically: true, encoding: .utf8)
        print("\nwrote \(out)/links.csv, \(out)/links.json, \(out)/links.svg")
    }

    func checkLinkBars(_ rows: [LinkRow], raw: Double) {
        func row(_ encoding: String, _ rate: String? = nil) -> LinkRow? {
            rows.first { $0.encoding == encoding && (rate == nil || $0.link.hasPrefix(rate!)) }
        }
        guard let lossless = row("fp32 (lossless)"), let fp16 = row("fp16"), let int8 = row("int8-delta"),
            let int2 = row("int2-delta"), let best = row(Self.recommended)
        else { return }
        print("\nbars (push bytes against raw Float32, \(Int(raw)) B; recommended: \(Self.recommended)):")
        Bar.check("fp16 push <= 0.45x raw", 0.45 / (Double(fp16.pushBytes) / raw), atLeast: 1)
        Bar.check("int8-delta push <= 0.25x raw", 0.25 / (Double(int8.pushBytes) / raw), atLeast: 1)
        Bar.check("int2-delta push <= 0.10x raw", 0.10 / (Double(int2.pushBytes) / raw), atLeast: 1)
        Bar.check(
            "recommended round trip <= 0.15x the bytes of lossless shuffle-zlib",
            0.15 / (Double(best.fetchBytes + best.pushBytes) / Double(lossless.fetchBytes + lossless.pushBytes)),
            atLeast: 1)
        if let slow = row("fp32 (lossless)", "10 Mbit"), let fast = row(Self.recommended, "10 Mbit") {
            Bar.check(
                "recommended >= 4x faster per round trip on 10 Mbit/s, 30 ms",
                slow.roundTripSeconds / fast.roundTripSeconds, atLeast: 4)
        }
    }
}

/// A `fed server` child for one cell of the link benchmark, in the link's
/// namespace when there is one.
final class LinkServer {
    let process: Process
    let host: String
    let port: Int
    let dir: URL
    var pid: Int32 { process.processIdentifier }

    init(namespace: NamespaceLink?, fetchDeltas: ValueEncoding?) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fed-link-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        host = namespace?.serverAddress ?? "127.0.0.1"
        var args = ["--host", host]
        if let f = fetchDeltas { args += ["--fetch-deltas", f.description] }
        (process, port) = try ChildServer.start(
            checkpoint: dir.appendingPathComponent("m.fedk").path, arguments: args,
            prefix: namespace.map { ["ip", "netns", "exec", $0.namespace] } ?? [])
    }

    func stop() {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: dir)
    }
}

/// The panel of seconds per round trip: one group of bars per link, one bar
/// per encoding, log scale.
enum LinkChart {
    static func svg(_ rows: [BenchCommand.Wire.LinkRow]) -> String {
        var links: [String] = []
        var encodings: [String] = []
        for r in rows {
            if !links.contains(r.link) { links.append(r.link) }
            if !encodings.contains(r.encoding) { encodings.append(r.encoding) }
        }
        let w = 900.0, h = 460.0, left = 80.0, right = 230.0, top = 50.0, bottom = 50.0
        let values = rows.map { max($0.roundTripSeconds, 1e-3) }
        let y0 = floor(log10(values.min() ?? 0.01)), y1 = ceil(log10(values.max() ?? 10) + 0.01)
        func py(_ v: Double) -> Double { h - bottom - (log10(v) - y0) / max(y1 - y0, 1) * (h - top - bottom) }
        let colors = ["#d62728", "#ff7f0e", "#1f77b4", "#17becf", "#9467bd", "#2ca02c", "#8c564b"]
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(Int(left))" y="22" font-size="15" font-weight="bold">Seconds per round trip (fetch + push) per link</text>
            <text x="\(Int(left))" y="40" fill="#555">trained MLP, one client; \(rows.first?.shaping ?? ""); lower is better</text>

            """
        for e in Int(y0)...Int(y1) {
            let y = py(pow(10, Double(e)))
            s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(w - right)\" y2=\"\(y)\" stroke=\"#ddd\"/>"
            s +=
                "<text x=\"\(left - 8)\" y=\"\(y + 4)\" text-anchor=\"end\">\(WireChart.label(pow(10, Double(e))))s</text>\n"
        }
        let groupWidth = (w - left - right) / Double(max(links.count, 1))
        let barWidth = groupWidth * 0.8 / Double(max(encodings.count, 1))
        for (g, link) in links.enumerated() {
            let x0 = left + Double(g) * groupWidth + groupWidth * 0.1
            s += "<text x=\"\(x0 + groupWidth * 0.4)\" y=\"\(h - bottom + 18)\" text-anchor=\"middle\">\(link)</text>\n"
            for (k, e) in encodings.enumerated() {
                guard let r = rows.first(where: { $0.link == link && $0.encoding == e }) else { continue }
                let y = py(max(r.roundTripSeconds, 1e-3))
                s +=
                    "<rect x=\"\(x0 + Double(k) * barWidth)\" y=\"\(y)\" width=\"\(barWidth * 0.9)\" height=\"\(h - bottom - y)\" fill=\"\(colors[k % colors.count])\"/>\n"
            }
        }
        for (k, e) in encodings.enumerated() {
            s +=
                "<text x=\"\(w - right + 15)\" y=\"\(top + 20 + Double(k) * 20)\" fill=\"\(colors[k % colors.count])\">■ \(e)</text>\n"
        }
        return s + "</svg>\n"
    }
}
