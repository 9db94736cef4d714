import ArgumentParser
import FedCodec
import FedModel
import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

extension BenchCommand {
    struct Fleet: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Thousands of device-like clients on one server: latency, errors and server memory.",
            discussion: """
                One process holds N connections (SwiftNIO, one event loop per core), each behaving like a \
                device: connect, HELLO, conditional FETCH, train for --train-seconds, PUSH the MLP's weights \
                (shuffle-zlib), then the same again --period seconds after the round began (jittered by \
                --jitter), a --dropout fraction of rounds ending in a disconnect and a reconnect after the \
                client's backoff (0.25 s doubling, jittered). Connections ramp up through --steps (default \
                100, 1000, 5000, 10000); each step is measured for --step-seconds once all its clients are \
                connected. Per step: round trips/s, fetch and push p50/p99/max, errors by code, the server's \
                resident memory and CPU. Against a child `fed server` (running-average, the default \
                strategy, --max-connections raised to fit) or --server HOST:PORT. Writes fleet.csv, \
                fleet.json and fleet.svg to --out. Raises its own open-file limit (and says so when it cannot).
                """
        )

        @Option(help: "Use a running server (HOST:PORT) instead of starting one.") var server: String?
        @Option(help: "Connected clients at each step (comma-separated).") var steps = "100,1000,5000,10000"
        @Option(help: "Seconds between a client's rounds (one fetch and one push each).") var period = 60.0
        @Option(help: "Seconds a client 'trains' between its fetch and its push.") var trainSeconds = 1.0
        @Option(help: "Jitter of the period, as a fraction.") var jitter = 0.2
        @Option(help: "Fraction of rounds that end with a disconnect and a reconnect.") var dropout = 0.06
        @Option(help: "Seconds measured at each step once its clients are connected.") var stepSeconds = 60.0
        @Flag(help: "Also find the largest push rate at the last step: halve the period until a bar fails.")
        var findMax = false
        @Option(help: "Folder for fleet.csv, fleet.json and fleet.svg.") var out = "bench-fleet"

        func validate() throws {
            guard let s = stepList, !s.isEmpty, s.allSatisfy({ $0 >= 1 && $0 <= 60_000 }) else {
                throw ValidationError("--steps: comma-separated counts in 1...60000")
            }
            guard period > 0, trainSeconds >= 0, (0...1).contains(jitter), (0...1).contains(dropout),
                stepSeconds > 0
            else { throw ValidationError("times must be positive and fractions in 0...1") }
        }

        var stepList: [Int]? {
            let parts = steps.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            return parts.contains(nil) ? nil : parts.map { $0! }
        }

        struct Row: Codable {
            var clients: Int
            var period: Double
            var seconds: Double
            var roundTripsPerSecond: Double
            var pushesPerSecond: Double
            var fetchP50ms: Double
            var fetchP99ms: Double
            var fetchMaxms: Double
            var pushP50ms: Double
            var pushP99ms: Double
            var pushMaxms: Double
            var errors: [String: Int]
            var reconnects: Int
            var serverResidentMB: Double
            var serverCPUPercent: Double
        }

        func run() throws {
            let counts = stepList!
            let peak = counts.max()!
            raiseOpenFileLimit(to: peak * 2 + 1024)
            let target = try FleetTarget(server: server, maxConnections: peak + 512)
            defer { withExtendedLifetime(target) {} }
            print(
                "server: \(target.child == nil ? "\(target.host):\(target.port)" : "a child fed server (running-average, --max-connections \(peak + 512)) on \(target.host):\(target.port)")"
            )
            let push = FleetPayload(tensors: MLP(seed: 3).tensors())
            let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
            defer { try? group.syncShutdownGracefully() }
            let stats = FleetStats()
            var devices: [FleetDevice] = []
            var rows: [Row] = []
            func measure(_ n: Int, period: Double) throws -> Row {
                stats.reset()
                let cpu0 = target.child.map { ChildServer.cpuSeconds(pid: $0.processIdentifier) } ?? 0
                let start = Date()
                Thread.sleep(forTimeInterval: stepSeconds)
                let seconds = Date().timeIntervalSince(start)
                let cpu = (target.child.map { ChildServer.cpuSeconds(pid: $0.processIdentifier) } ?? 0) - cpu0
                let s = stats.snapshot()
                func ms(_ a: [Double], _ q: Double) -> Double {
                    a.isEmpty ? .nan : a[min(a.count - 1, Int(Double(a.count) * q))] * 1e3
                }
                let row = Row(
                    clients: n, period: period, seconds: seconds,
                    roundTripsPerSecond: Double(s.push.count) / seconds,
                    pushesPerSecond: Double(s.push.count) / seconds,
                    fetchP50ms: ms(s.fetch, 0.5), fetchP99ms: ms(s.fetch, 0.99),
                    fetchMaxms: (s.fetch.last ?? .nan) * 1e3,
                    pushP50ms: ms(s.push, 0.5), pushP99ms: ms(s.push, 0.99), pushMaxms: (s.push.last ?? .nan) * 1e3,
                    errors: s.errors, reconnects: s.reconnects,
                    serverResidentMB: target.child.flatMap {
                        ChildServer.residentMegabytes(pid: $0.processIdentifier)
                    } ?? .nan,
                    serverCPUPercent: cpu / seconds * 100)
                print(
                    String(
                        format:
                            "%6d clients, period %5.1f s: %6.1f round trips/s, fetch p50/p99/max %.1f/%.1f/%.1f ms, push p50/p99/max %.1f/%.1f/%.1f ms, errors %d, reconnects %d, server %.0f MB, %.0f%% CPU",
                        n, period, row.roundTripsPerSecond, row.fetchP50ms, row.fetchP99ms, row.fetchMaxms,
                        row.pushP50ms, row.pushP99ms, row.pushMaxms, row.errors.values.reduce(0, +), row.reconnects,
                        row.serverResidentMB, row.serverCPUPercent))
                return row
            }
            let settings = FleetDevice.Settings(
                period: period, trainSeconds: trainSeconds, jitter: jitter, dropout: dropout)
            for n in counts {
                Progress.line("connecting \(n) clients")
                while devices.count < n {
                    let batch = min(250, n - devices.count)
                    for _ in 0..<batch {
                        let d = FleetDevice(
                            id: devices.count, host: target.host, port: target.port, group: group, payload: push,
                            stats: stats, settings: settings)
                        d.start()
                        devices.append(d)
                    }
                    Thread.sleep(forTimeInterval: 0.05)
                }
                // Wait until they are connected (or failed and counted).
                let deadline = Date().addingTimeInterval(60)
                while stats.connected.load(ordering: .relaxed) < n && Date() < deadline {
                    Thread.sleep(forTimeInterval: 0.1)
                }
                Progress.done()
                rows.append(try measure(n, period: period))
            }
            if findMax {
                var p = period
                while p > 0.5 {
                    p /= 2
                    for d in devices { d.settings.withLock { $0.period = p } }
                    Thread.sleep(forTimeInterval: p)  // every device has moved to the new period
                    let row = try measure(devices.count, period: p)
                    rows.append(row)
                    if !row.errors.isEmpty || row.pushP99ms >= 200 { break }
                }
            }
            for d in devices { d.stop() }
            try write(rows)
            checkBars(rows, peak: peak)
        }

        func raiseOpenFileLimit(to wanted: Int) {
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            let target = min(rlim_t(wanted), limit.rlim_max)
            if limit.rlim_cur < target {
                limit.rlim_cur = target
                setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            }
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            if Int(limit.rlim_cur) < wanted {
                print(
                    "open-file limit \(limit.rlim_cur) (hard \(limit.rlim_max)) is below the \(wanted) wanted: raise it (ulimit -n) or expect connect errors"
                )
            } else {
                print("open-file limit: \(limit.rlim_cur)")
            }
        }

        func write(_ rows: [Row]) throws {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let csv = CSV.document(
                header: [
                    "clients", "period_s", "seconds", "round_trips_per_s", "fetch_p50_ms", "fetch_p99_ms",
                    "fetch_max_ms", "push_p50_ms", "push_p99_ms", "push_max_ms", "errors", "reconnects",
                    "server_rss_mb", "server_cpu_pct",
                ],
                rows: rows.map {
                    [
                        $0.clients, $0.period, $0.seconds, $0.roundTripsPerSecond, $0.fetchP50ms, $0.fetchP99ms,
                        $0.fetchMaxms, $0.pushP50ms, $0.pushP99ms, $0.pushMaxms, $0.errors.values.reduce(0, +),
                        $0.reconnects, $0.serverResidentMB, $0.serverCPUPercent,
                    ]
                })
            try csv.write(toFile: out + "/fleet.csv", atomically: true, encoding: .utf8)
            try BenchOutput.json(rows, to: out + "/fleet.json")
            try FleetChart.svg(rows.filter { $0.period == period }).write(
                toFile: out + "/fleet.svg", atomically: true, encoding: .utf8)
            print("\nwrote \(out)/fleet.csv, \(out)/fleet.json, \(out)/fleet.svg")
        }

        func checkBars(_ rows: [Row], peak: Int) {
            guard let top = rows.first(where: { $0.clients == peak && $0.period == period }) else { return }
            print("\nbars (\(peak) connected clients, a push every \(period) s each):")
            let errors = top.errors.values.reduce(0, +)
            Bar.check("no errors", errors == 0 ? 1 : 0, atLeast: 1)
            Bar.check("push p99 under 200 ms", 200 / max(top.pushP99ms, 1e-9), atLeast: 1)
            Bar.check("server resident memory under 256 MB", 256 / max(top.serverResidentMB, 1e-9), atLeast: 1)
            let sustained = rows.filter {
                $0.clients == peak && $0.errors.isEmpty && $0.pushP99ms < 200
            }.map(\.pushesPerSecond).max()
            if let sustained {
                print(
                    String(
                        format: "largest push rate sustained at %d clients (no errors, p99 < 200 ms): %.1f/s", peak,
                        sustained))
            }
        }
    }
}

/// The server of a fleet run: `--server`, or a child `fed server` whose
/// connection limit fits the fleet.
final class FleetTarget {
    let host: String
    let port: Int
    let child: Process?
    private let dir: URL?

    init(server: String?, maxConnections: Int) throws {
        if let server {
            (host, port) = try parseHostPort(server)
            (child, dir) = (nil, nil)
            return
        }
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("fed-fleet-\(getpid())")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        let (p, port) = try ChildServer.start(
            checkpoint: d.appendingPathComponent("model.fedk").path,
            arguments: ["--max-connections", "\(maxConnections)"])
        (host, self.port, child, dir) = ("127.0.0.1", port, p, d)
    }

    deinit {
        if let child {
            kill(child.processIdentifier, SIGTERM)
            child.waitUntilExit()
        }
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }
}

/// The push every device sends: its payload encoded once, with its CRC, so a
/// frame costs a 20-byte header.
final class FleetPayload: Sendable {
    let push: [UInt8]
    let crc: UInt32

    init(tensors: [Tensor]) {
        push = MessageCodec.payload(
            .push(
                Push(
                    clientID: "fleet", datasets: 100, baseVersion: 0, tensors: tensors, compression: .shuffleZlib,
                    pushID: 0)), level: 1, version: 2)
        crc = CRC32.checksum(push)
    }
}

/// What every device reports: latencies, errors, reconnects, connections.
final class FleetStats: Sendable {
    struct Snapshot {
        var fetch: [Double]
        var push: [Double]
        var errors: [String: Int]
        var reconnects: Int
    }
    private let state = Mutex(Snapshot(fetch: [], push: [], errors: [:], reconnects: 0))
    let connected = Atomic<Int>(0)

    func reset() { state.withLock { $0 = Snapshot(fetch: [], push: [], errors: [:], reconnects: 0) } }
    func fetch(_ s: Double) { state.withLock { $0.fetch.append(s) } }
    func push(_ s: Double) { state.withLock { $0.push.append(s) } }
    func error(_ name: String) { state.withLock { $0.errors[name, default: 0] += 1 } }
    func reconnect() { state.withLock { $0.reconnects += 1 } }
    func snapshot() -> Snapshot {
        var s = state.withLock { $0 }
        s.fetch.sort()
        s.push.sort()
        return s
    }
}

/// One simulated device: a connection and its round loop, reconnecting with
/// the client's backoff (0.25 s doubling to 8 s, jittered) after a dropout or
/// a failure, until `stop()`.
final class FleetDevice: Sendable {
    struct Settings: Sendable {
        var period: Double
        var trainSeconds: Double
        var jitter: Double
        var dropout: Double
    }

    let id: Int
    let host: String
    let port: Int
    let group: any EventLoopGroup
    let payload: FleetPayload
    let pushBuffer: ByteBuffer
    let stats: FleetStats
    let settings: Mutex<Settings>
    let stopped = Atomic<Bool>(false)
    let channel = Mutex<(any Channel)?>(nil)

    init(
        id: Int, host: String, port: Int, group: any EventLoopGroup, payload: FleetPayload, stats: FleetStats,
        settings: Settings
    ) {
        (self.id, self.host, self.port, self.group, self.payload, self.stats) = (id, host, port, group, payload, stats)
        self.pushBuffer = ByteBuffer(bytes: payload.push)
        self.settings = Mutex(settings)
    }

    func start() { connect(failures: 0) }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        channel.withLock { $0 }?.close(promise: nil)
    }

    /// Connects now; on failure counts the error and tries again after the backoff.
    func connect(failures: Int) {
        guard !stopped.load(ordering: .relaxed) else { return }
        ClientBootstrap(group: group)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { [self] ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(FleetHandler(device: self))
                }
            }
            .connect(host: host, port: port)
            .whenComplete { [self] result in
                switch result {
                case .success(let ch):
                    channel.withLock { $0 = ch }
                case .failure:
                    stats.error("connect")
                    reconnect(failures: failures + 1)
                }
            }
    }

    /// Connects again after the client's backoff for `failures` failures in a row.
    func reconnect(failures: Int) {
        guard !stopped.load(ordering: .relaxed) else { return }
        let base = min(8.0, 0.25 * pow(2, Double(max(0, failures - 1))))
        let delay = base * Double.random(in: 0.5...1.0)
        group.next().scheduleTask(in: .milliseconds(Int64(delay * 1000))) { [self] in connect(failures: failures) }
    }
}

/// A device's side of one connection: HELLO, then rounds of FETCH, a pause
/// for training, PUSH. Answers are read from their frame headers (and the
/// first payload bytes) alone: a device does not decode weights.
final class FleetHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Pending { case none, hello, fetch, push }

    let device: FleetDevice
    var buffer = ByteBuffer()
    var pending = Pending.none
    var sentAt = 0.0
    var roundStart = 0.0
    var held: UInt64 = 0
    var requestID: UInt32 = 0
    var dropping = false
    var failures = 0

    init(device: FleetDevice) { self.device = device }

    static func now() -> Double { monotonicSeconds() }

    func channelActive(context: ChannelHandlerContext) {
        device.stats.connected.wrappingAdd(1, ordering: .relaxed)
        let hello = MessageCodec.encode(
            .hello(Hello(minVersion: 1, maxVersion: 2, compressions: 0b111, clientID: "fleet-\(device.id)")),
            requestID: next())
        pending = .hello
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: hello)), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        device.stats.connected.wrappingSubtract(1, ordering: .relaxed)
        if !dropping && pending != .none { device.stats.error("connection lost") }
        device.stats.reconnect()
        device.reconnect(failures: dropping ? 1 : failures + 1)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Payload bytes of the current frame still to be dropped unread, and
    /// that frame's type and first payload bytes (handled once it has all arrived).
    var skipping = 0
    var skipped: (type: UInt8, head: ByteBuffer)?

    /// Keeps each answer's header and first payload bytes (all a device
    /// reads) and drops the rest of a model's weights as they arrive; an
    /// answer is handled when its last byte has arrived.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if skipping > 0 {
            let n = min(skipping, incoming.readableBytes)
            incoming.moveReaderIndex(forwardBy: n)
            skipping -= n
            if skipping > 0 { return }
            if let (type, head) = skipped {
                skipped = nil
                handle(context, type: type, head: head)
            }
        }
        buffer.writeBuffer(&incoming)
        while buffer.readableBytes >= FrameHeader.size {
            let start = buffer.readerIndex
            guard let type = buffer.getInteger(at: start + 5, as: UInt8.self),
                let length = buffer.getInteger(at: start + 12, as: UInt32.self).map(Int.init)
            else { return }
            let kept = min(length, 16)
            guard buffer.readableBytes >= FrameHeader.size + kept else { break }
            let head = buffer.getSlice(at: start + FrameHeader.size, length: kept)!
            let available = buffer.readableBytes - FrameHeader.size
            if available >= length {
                buffer.moveReaderIndex(forwardBy: FrameHeader.size + length)
                handle(context, type: type, head: head)
            } else {
                skipping = length - available
                skipped = (type, head)
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                break
            }
        }
        buffer.discardReadBytes()
    }

    func handle(_ context: ChannelHandlerContext, type: UInt8, head: ByteBuffer) {
        let elapsed = Self.now() - sentAt
        let settings = device.settings.withLock { $0 }
        switch MessageType(rawValue: type) {
        case .welcome:
            pending = .none
            // The first round at a random point of the period, so rounds spread evenly.
            schedule(context, in: Double.random(in: 0..<settings.period)) { $0.fetch($1) }
        case .model, .modelUnchanged:
            device.stats.fetch(elapsed)
            held = head.getInteger(at: head.readerIndex, as: UInt64.self) ?? held
            pending = .none
            schedule(context, in: settings.trainSeconds) { $0.push($1) }
        case .ack:
            device.stats.push(elapsed)
            pending = .none
            failures = 0
            if Double.random(in: 0..<1) < settings.dropout {
                dropping = true
                context.close(promise: nil)
                return
            }
            let wait = roundStart + settings.period * Double.random(in: (1 - settings.jitter)...(1 + settings.jitter))
            schedule(context, in: max(0, wait - Self.now())) { $0.fetch($1) }
        case .error:
            let code = ErrorCode(rawValue: head.getInteger(at: head.readerIndex, as: UInt16.self) ?? 0)
            device.stats.error(code.name)
            pending = .none
            failures += 1
            let backoff = min(8.0, 0.25 * pow(2, Double(failures - 1))) * Double.random(in: 0.5...1)
            schedule(context, in: backoff) { $0.fetch($1) }
        default:
            device.stats.error("unexpected \(type)")
        }
    }

    func fetch(_ context: ChannelHandlerContext) {
        roundStart = Self.now()
        let frame = MessageCodec.encode(
            .fetch(heldVersion: held, compression: .shuffleZlib), requestID: next(), version: 2)
        pending = .fetch
        sentAt = Self.now()
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: frame)), promise: nil)
    }

    func push(_ context: ChannelHandlerContext) {
        let header = FrameWriter.header(
            type: .push, requestID: next(), payloadLength: device.payload.push.count,
            payloadCRC: device.payload.crc, version: 2)
        pending = .push
        sentAt = Self.now()
        context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: header)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(device.pushBuffer), promise: nil)
    }

    func next() -> UInt32 {
        requestID &+= 1
        return requestID
    }

    func schedule(
        _ context: ChannelHandlerContext, in seconds: Double,
        _ body: @escaping (FleetHandler, ChannelHandlerContext) -> Void
    ) {
        let bound = NIOLoopBound((self, context, body), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .microseconds(Int64(seconds * 1e6))) {
            let (handler, ctx, body) = bound.value
            guard ctx.channel.isActive, !handler.device.stopped.load(ordering: .relaxed) else { return }
            body(handler, ctx)
        }
    }
}

/// Push p50/p99 against connected clients (log x).
enum FleetChart {
    static func svg(_ rows: [BenchCommand.Fleet.Row]) -> String {
        let w = 800.0, h = 420.0, left = 70.0, right = 200.0, top = 50.0, bottom = 50.0
        let xs = rows.map { Double($0.clients) }
        let ys = rows.flatMap { [$0.pushP50ms, $0.pushP99ms, $0.fetchP99ms] }.filter { $0.isFinite && $0 > 0 }
        let x0 = floor(log10(xs.min() ?? 10)), x1 = ceil(log10(xs.max() ?? 100) + 0.01)
        let y0 = floor(log10(ys.min() ?? 1)), y1 = ceil(log10(ys.max() ?? 10) + 0.01)
        func px(_ v: Double) -> Double { left + (log10(v) - x0) / max(x1 - x0, 1) * (w - left - right) }
        func py(_ v: Double) -> Double {
            h - bottom - (log10(max(v, 1e-3)) - y0) / max(y1 - y0, 1) * (h - top - bottom)
        }
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(Int(left))" y="22" font-size="15" font-weight="bold">Latency against connected clients</text>
            <text x="\(Int(left))" y="40" fill="#555">fed bench fleet: one push per client per period; log scales</text>

            """
        for e in Int(x0)...Int(x1) {
            let x = px(pow(10, Double(e)))
            s += "<line x1=\"\(x)\" y1=\"\(top)\" x2=\"\(x)\" y2=\"\(h - bottom)\" stroke=\"#ddd\"/>"
            s +=
                "<text x=\"\(x)\" y=\"\(h - bottom + 18)\" text-anchor=\"middle\">\(WireChart.label(pow(10, Double(e))))</text>\n"
        }
        for e in Int(y0)...Int(y1) {
            let y = py(pow(10, Double(e)))
            s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(w - right)\" y2=\"\(y)\" stroke=\"#ddd\"/>"
            s +=
                "<text x=\"\(left - 8)\" y=\"\(y + 4)\" text-anchor=\"end\">\(WireChart.label(pow(10, Double(e)))) ms</text>\n"
        }
        let series: [(String, String, (BenchCommand.Fleet.Row) -> Double)] = [
            ("push p50", "#1f77b4", { $0.pushP50ms }), ("push p99", "#d62728", { $0.pushP99ms }),
            ("fetch p99", "#2ca02c", { $0.fetchP99ms }),
        ]
        for (k, (name, color, f)) in series.enumerated() {
            let points = rows.filter { f($0).isFinite }.map { "\(px(Double($0.clients))),\(py(f($0)))" }
            s +=
                "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>\n"
            s += "<text x=\"\(w - right + 15)\" y=\"\(top + 20 + Double(k) * 20)\" fill=\"\(color)\">— \(name)</text>\n"
        }
        return s + "</svg>\n"
    }
}
