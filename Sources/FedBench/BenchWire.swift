import ArgumentParser
import FedClient
import FedCodec
import FedModel
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension BenchCommand {
    struct Wire: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bytes, speed and CPU per round trip of every encoding, against the original's JSON over HTTP.",
            discussion: """
                Starts `fed server` as a child process (or uses --server) and, for the MLP's weights \
                freshly initialised and after training one slice, measures each encoding: the \
                original's JSON over the HTTP layer, binary raw, zlib 1/6/9 and shuffle-zlib 1/6. \
                A round trip is one fetch and one push. Per encoding: bytes per fetch and per push \
                (whole frames or HTTP messages, headers included), client encode and decode time, \
                round trips per second and p50/p99 latency with 1, 8 and 64 concurrent clients, and \
                client and server CPU seconds per round trip. Prints a table, writes wire.csv, \
                wire.json and wire.svg (bytes per round trip against round trips per second) to --out.
                """
        )

        @Option(help: "Use a running server (HOST:PORT) instead of starting one.") var server: String?
        @Option(help: "Folder for wire.csv, wire.json and wire.svg.") var out = "bench-wire"
        @Option(help: "Folder of MNIST-format IDX files, for the trained weights.") var data: String?
        @Option(help: "Seconds per measurement cell.") var seconds = 1.5
        @Flag(
            help: "A run under 30 s: cells of 0.25 s (or a shorter --seconds), trained weights only, 1 and 8 clients.")
        var quick = false
        @Flag(
            help: ArgumentHelp(
                "Measure every encoding over slow links instead of loopback (see --link).",
                discussion:
                    "One client, round trips of a fetch and a push of realistic training steps, per link: bytes, seconds, client and server CPU. As root with iproute2, the server runs in its own network namespace behind a veth pair that tc tbf rate-limits both ways, and a relay in this process adds the delay; otherwise the relay paces the rate too (the output says which). Writes links.csv, links.json and links.svg."
            )) var links = false
        @Option(
            help:
                "A link for --links as RATE:RTT, e.g. 10mbit:30ms (repeatable; default 1mbit:100ms, 10mbit:30ms, 100mbit:5ms)."
        )
        var link: [String] = []
        @Flag(help: "With --links: shape in user space even where namespaces are available.") var relayOnly = false
        @Option(help: "With --links: measured round trips per encoding and link, after a warm-up.") var rounds = 3
        @Flag(
            help: ArgumentHelp(
                "Compare the async client (FederationClient) with the blocking one, and TLS with clear text.",
                discussion:
                    "Raw and shuffle-zlib-1, 1 and 8 clients, each over one persistent connection doing fetch + push round trips of the MLP for --seconds. TLS (a private CA made with openssl; the child server also takes clear text) when openssl is at hand. Bars: async at least 0.9x blocking, TLS at least 0.5x clear text. Writes clients.json."
            )) var asyncVsBlocking = false

        func validate() throws {
            for l in link where LinkProfile(l) == nil {
                throw ValidationError("--link \(l): use RATE:RTT such as 10mbit:30ms (kbit, mbit, gbit; ms or s)")
            }
            guard rounds >= 1 && rounds <= 100 else { throw ValidationError("--rounds must be in 1...100") }
        }

        struct Encoding {
            let name: String
            let compression: Compression?  // nil: JSON over HTTP
            let level: Int32
        }

        static let encodings: [Encoding] = [
            .init(name: "JSON over HTTP (original)", compression: nil, level: 0),
            .init(name: "raw", compression: Compression.none, level: 0),
            .init(name: "zlib-1", compression: .zlib, level: 1), .init(name: "zlib-6", compression: .zlib, level: 6),
            .init(name: "zlib-9", compression: .zlib, level: 9),
            .init(name: "shuffle-zlib-1", compression: .shuffleZlib, level: 1),
            .init(name: "shuffle-zlib-6", compression: .shuffleZlib, level: 6),
        ]

        struct Row: Codable {
            var weights: String
            var encoding: String
            var clients: Int
            var fetchBytes: Int
            var pushBytes: Int
            var encodeMs: Double
            var decodeMs: Double
            var roundTripsPerSecond: Double
            var p50Ms: Double
            var p99Ms: Double
            var clientCPUms: Double
            var serverCPUms: Double
        }

        func run() throws {
            if links { return try runLinks() }
            if asyncVsBlocking { return try runClients() }
            let cell = quick ? min(seconds, 0.25) : seconds
            let clientCounts = quick ? [1, 8] : [1, 8, 64]
            let target = try BenchTarget(server: server)
            defer { withExtendedLifetime(target) {} }  // the child server lives until the end of run
            let (host, port, child) = (target.host, target.port, target.child)

            var weightSets: [(String, [Tensor])] = []
            if !quick { weightSets.append(("fresh", MLP(seed: 1).tensors())) }
            weightSets.append(("trained", try trainedWeights()))
            var rows: [Row] = []
            let total = weightSets.count * Self.encodings.count * clientCounts.count
            var done = 0
            for (weightsName, tensors) in weightSets {
                for encoding in Self.encodings {
                    let (encodeMs, decodeMs) = codecTimes(encoding, tensors)
                    for clients in clientCounts {
                        done += 1
                        Progress.line(
                            "measuring \(done)/\(total): \(weightsName) weights, \(encoding.name), \(clients) clients")
                        let serverCPU0 = child.map { ChildServer.cpuSeconds(pid: $0.processIdentifier) } ?? 0
                        let clientCPU0 = processCPUSeconds()
                        let r = try roundTrips(
                            encoding, tensors, host: host, port: port, clients: clients, seconds: cell)
                        let serverCPU =
                            (child.map { ChildServer.cpuSeconds(pid: $0.processIdentifier) } ?? 0) - serverCPU0
                        let clientCPU = processCPUSeconds() - clientCPU0
                        rows.append(
                            Row(
                                weights: weightsName, encoding: encoding.name, clients: clients,
                                fetchBytes: r.fetchBytes,
                                pushBytes: r.pushBytes, encodeMs: encodeMs, decodeMs: decodeMs,
                                roundTripsPerSecond: Double(r.count) / r.elapsed, p50Ms: r.p50 * 1e3,
                                p99Ms: r.p99 * 1e3,
                                clientCPUms: clientCPU / Double(r.count) * 1e3,
                                serverCPUms: child == nil ? .nan : serverCPU / Double(r.count) * 1e3))
                    }
                }
            }
            Progress.done()
            print(
                Table.render(
                    header: [
                        "weights", "encoding", "clients", "fetch B", "push B", "enc ms", "dec ms", "rt/s", "p50 ms",
                        "p99 ms", "client CPU ms", "server CPU ms",
                    ],
                    rows: rows.map { r in
                        [
                            r.weights, r.encoding, "\(r.clients)", "\(r.fetchBytes)", "\(r.pushBytes)",
                            String(format: "%.2f", r.encodeMs), String(format: "%.2f", r.decodeMs),
                            String(format: "%.1f", r.roundTripsPerSecond), String(format: "%.1f", r.p50Ms),
                            String(format: "%.1f", r.p99Ms), String(format: "%.2f", r.clientCPUms),
                            String(format: "%.2f", r.serverCPUms),
                        ]
                    }))
            try write(rows, clients: 8)
            checkBars(rows)
        }

        /// The MLP after one slice of training on the data at hand (or, without data, fresh weights noted as such).
        func trainedWeights() throws -> [Tensor] {
            guard let (dir, _) = try? DataFolder.resolve(data),
                let (slices, _, _) = try? DataFolder.federatedSplit(in: dir, scale: true)
            else {
                print("no data found: the 'trained' weights are fresh weights (pass --data to train one slice)")
                return MLP(seed: 2).tensors()
            }
            let trainer = Trainer(model: MLP(seed: 2), maxBatch: 256, threads: 2)
            var rng = SeededGenerator(seed: 3)
            for _ in 0..<(quick ? 3 : 20) { trainer.trainEpoch(slices[0], rng: &rng) }
            return trainer.model.tensors()
        }

        /// Client-side milliseconds to encode a push and decode a model answer.
        func codecTimes(_ e: Encoding, _ tensors: [Tensor]) -> (Double, Double) {
            let budget = quick ? 0.05 : 0.2
            if e.compression == nil {
                var json: [UInt8] = []
                let enc = Timing.measure(seconds: budget) {
                    json = []
                    LegacyJSON.appendWeights(tensors, to: &json)
                }
                let answer = LegacyJSON.modelAnswer(serverID: "s", datasets: 1, tensors: tensors)
                let dec = Timing.measure(seconds: budget) { _ = try? LegacyJSON.parseModelAnswer(answer) }
                return (enc * 1e3, dec * 1e3)
            }
            let push = Message.push(
                Push(clientID: "w", datasets: 1, baseVersion: 0, tensors: tensors, compression: e.compression!))
            let model = MessageCodec.encode(
                .model(Model(version: 1, datasets: 1, tensors: tensors, compression: e.compression!)), requestID: 1,
                level: e.level)
            let enc = Timing.measure(seconds: budget) { _ = MessageCodec.encode(push, requestID: 1, level: e.level) }
            let dec = Timing.measure(seconds: budget) {
                var d = FrameDecoder()
                d.append(model)
                if let f = try? d.next() { _ = try? MessageCodec.decode(f) }
            }
            return (enc * 1e3, dec * 1e3)
        }

        struct Trips {
            var count = 0
            var elapsed = 0.0
            var p50 = 0.0
            var p99 = 0.0
            var fetchBytes = 0
            var pushBytes = 0
        }

        /// One client of a round-trip run and the bytes of its last fetch and push.
        final class WireClient {
            let fetch: () throws -> Void
            let push: () throws -> Void
            let bytes: () -> Int
            var fetchBytes = 0
            var pushBytes = 0
            init(fetch: @escaping () throws -> Void, push: @escaping () throws -> Void, bytes: @escaping () -> Int) {
                (self.fetch, self.push, self.bytes) = (fetch, push, bytes)
            }

            /// One fetch then one push, noting the bytes each took both ways.
            func roundTrip() throws {
                let a = bytes()
                try fetch()
                let b = bytes()
                try push()
                (fetchBytes, pushBytes) = (b - a, bytes() - b)
            }
        }

        /// `clients` threads doing fetch + push round trips for `seconds` (at least one each).
        func roundTrips(_ e: Encoding, _ tensors: [Tensor], host: String, port: Int, clients: Int, seconds: Double)
            throws
            -> Trips
        {
            let run: LoadGenerator.Run<WireClient>
            do {
                run = try LoadGenerator.run(
                    clients: clients, seconds: seconds,
                    open: { i in
                        if let mode = e.compression {
                            let c = try Connection(host: host, port: port, timeout: 60)
                            _ = try c.request(.hello(Hello(clientID: "wire-\(i)")))
                            let push = Message.push(
                                Push(
                                    clientID: "wire-\(i)", datasets: 1, baseVersion: 0, tensors: tensors,
                                    compression: mode))
                            return WireClient(
                                fetch: { _ = try c.request(.fetch(heldVersion: 0, compression: mode)) },
                                push: {
                                    guard case .ack = try c.request(push, level: e.level) else {
                                        throw ValidationError("push refused")
                                    }
                                },
                                bytes: { c.bytesSent + c.bytesReceived })
                        }
                        let t = HTTPTransport(host: host, port: port, clientID: "wire-\(i)")
                        return WireClient(
                            fetch: { _ = try t.fetch(heldVersion: 0) },
                            push: { _ = try t.push(tensors, datasets: 1, baseVersion: 0, pushID: 0) },
                            bytes: { t.bytesSent + t.bytesReceived })
                    },
                    step: { try $0.roundTrip() })
            } catch {
                throw ValidationError("\(e.name) with \(clients) clients: \(error)")
            }
            return Trips(
                count: run.count, elapsed: run.elapsed, p50: run.p50, p99: run.p99,
                fetchBytes: run.clients.last?.fetchBytes ?? 0, pushBytes: run.clients.last?.pushBytes ?? 0)
        }

        func processCPUSeconds() -> Double {
            var u = rusage()
            getrusage(RUSAGE_SELF.rawValue, &u)
            return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec)
                + Double(u.ru_stime.tv_usec) / 1e6
        }

        func write(_ rows: [Row], clients: Int) throws {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let csv = CSV.document(
                header: [
                    "weights", "encoding", "clients", "fetch_bytes", "push_bytes", "encode_ms", "decode_ms",
                    "round_trips_per_s", "p50_ms", "p99_ms", "client_cpu_ms", "server_cpu_ms",
                ],
                rows: rows.map {
                    [
                        $0.weights, $0.encoding, $0.clients, $0.fetchBytes, $0.pushBytes, $0.encodeMs, $0.decodeMs,
                        $0.roundTripsPerSecond, $0.p50Ms, $0.p99Ms, $0.clientCPUms, $0.serverCPUms,
                    ]
                })
            try csv.write(toFile: out + "/wire.csv", atomically: true, encoding: .utf8)
            try BenchOutput.json(rows, to: out + "/wire.json")
            let points = rows.filter { $0.weights == "trained" && $0.clients == clients }
            try WireChart.svg(
                points: points.map { ($0.encoding, Double($0.fetchBytes + $0.pushBytes), $0.roundTripsPerSecond) },
                clients: clients
            )
            .write(toFile: out + "/wire.svg", atomically: true, encoding: .utf8)
            print("\nwrote \(out)/wire.csv, \(out)/wire.json, \(out)/wire.svg")
        }

        func checkBars(_ rows: [Row]) {
            let trained = rows.filter { $0.weights == "trained" && $0.clients == 1 }
            guard let json = trained.first(where: { $0.encoding.hasPrefix("JSON") }),
                let raw = trained.first(where: { $0.encoding == "raw" }),
                let shuffle = trained.first(where: { $0.encoding == "shuffle-zlib-1" })
            else { return }
            print("\nbars (the original measured: fetch 4,350,666 bytes, push 4,753,846 bytes):")
            Bar.check(
                "JSON fetch within 2% of 4,350,666", 0.02 / max(abs(Double(json.fetchBytes) / 4_350_666 - 1), 1e-9),
                atLeast: 1)
            Bar.check(
                "JSON push within 2% of 4,753,846", 0.02 / max(abs(Double(json.pushBytes) / 4_753_846 - 1), 1e-9),
                atLeast: 1)
            Bar.check(
                "shuffle-zlib-1 <= 0.86x raw bytes (trained)",
                0.86 / (Double(shuffle.fetchBytes + shuffle.pushBytes) / Double(raw.fetchBytes + raw.pushBytes)),
                atLeast: 1)
            Bar.check(
                "shuffle-zlib-1 >= 6x fewer bytes than JSON per round trip",
                Double(json.fetchBytes + json.pushBytes) / Double(shuffle.fetchBytes + shuffle.pushBytes), atLeast: 6)
        }
    }
}

/// The benchmark's chart: bytes per round trip (y, log) against round trips per second (x, log).
enum WireChart {
    static func svg(points: [(String, Double, Double)], clients: Int) -> String {
        let w = 900.0, h = 460.0, left = 90.0, right = 300.0, top = 50.0, bottom = 60.0
        let xs = points.map { max($0.2, 0.01) }, ys = points.map { max($0.1, 1) }
        let x0 = floor(log10(xs.min() ?? 1)), x1 = ceil(log10(xs.max() ?? 10) + 0.01)
        let y0 = floor(log10(ys.min() ?? 1)), y1 = ceil(log10(ys.max() ?? 10) + 0.01)
        func px(_ v: Double) -> Double { left + (log10(v) - x0) / max(x1 - x0, 1) * (w - left - right) }
        func py(_ v: Double) -> Double { h - bottom - (log10(v) - y0) / max(y1 - y0, 1) * (h - top - bottom) }
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(Int(left))" y="22" font-size="15" font-weight="bold">Bytes on the wire per round trip vs round trips per second</text>
            <text x="\(Int(left))" y="40" fill="#555">trained MLP weights, \(clients) concurrent clients; lower right is better</text>

            """
        for e in Int(x0)...Int(x1) {
            let x = px(pow(10, Double(e)))
            s += "<line x1=\"\(x)\" y1=\"\(top)\" x2=\"\(x)\" y2=\"\(h - bottom)\" stroke=\"#ddd\"/>"
            s +=
                "<text x=\"\(x)\" y=\"\(h - bottom + 18)\" text-anchor=\"middle\">\(label(pow(10, Double(e))))</text>\n"
        }
        for e in Int(y0)..<Int(y1) {
            for m in [2.0, 5.0] {
                let y = py(m * pow(10, Double(e)))
                s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(w - right)\" y2=\"\(y)\" stroke=\"#f0f0f0\"/>"
                s +=
                    "<text x=\"\(left - 8)\" y=\"\(y + 4)\" text-anchor=\"end\" fill=\"#888\">\(label(m * pow(10, Double(e))))B</text>\n"
            }
        }
        for e in Int(y0)...Int(y1) {
            let y = py(pow(10, Double(e)))
            s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(w - right)\" y2=\"\(y)\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(left - 8)\" y=\"\(y + 4)\" text-anchor=\"end\">\(label(pow(10, Double(e))))B</text>\n"
        }
        s +=
            "<text x=\"\((left + w - right) / 2)\" y=\"\(h - 15)\" text-anchor=\"middle\">round trips per second (fetch + push), log scale</text>\n"
        s +=
            "<text transform=\"translate(20 \((top + h - bottom) / 2)) rotate(-90)\" text-anchor=\"middle\">bytes per round trip, log scale</text>\n"
        let colors = ["#d62728", "#1f77b4", "#2ca02c", "#17becf", "#9467bd", "#ff7f0e", "#8c564b"]
        for (i, p) in points.enumerated() {
            let (x, y) = (px(max(p.2, 0.01)), py(max(p.1, 1)))
            let c = colors[i % colors.count]
            s += "<circle cx=\"\(x)\" cy=\"\(y)\" r=\"6\" fill=\"\(c)\"/>\n"
            s +=
                "<text x=\"\(x + 9)\" y=\"\(y - 8 - Double(i % 3) * 12)\" fill=\"\(c)\" font-size=\"10\">\(p.0)</text>\n"
            s +=
                "<text x=\"\(w - right + 20)\" y=\"\(top + 20 + Double(i) * 20)\" fill=\"\(c)\">● \(p.0): \(String(format: "%.2f MB", p.1 / 1e6)), \(String(format: "%.1f", p.2))/s</text>\n"
        }
        return s + "</svg>\n"
    }

    static func label(_ v: Double) -> String {
        if v >= 1e6 { return String(format: "%gM", v / 1e6) }
        if v >= 1e3 { return String(format: "%gk", v / 1e3) }
        return String(format: "%g", v)
    }
}
