import FedCodec
import FedPrivacy
import FedStorage
import FedTestSupport
import Foundation
import Testing

/// A value shared with reader threads.
private final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&value) } }
}

/// A child process whose output lines are timestamped as they arrive and
/// handed to `onLine` (on a reader thread).
private final class Child: @unchecked Sendable {
    let process = Process()
    let name: String
    private let lines = Locked<[(ContinuousClock.Instant, String)]>([])

    init(name: String, _ arguments: [String], onLine: @escaping @Sendable (Child, String) -> Void) throws {
        self.name = name
        process.executableURL = FedProcess.binary
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let handle = pipe.fileHandleForReading
        Thread { [self] in
            var pending = ""
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending += String(decoding: chunk, as: UTF8.self)
                while let nl = pending.firstIndex(of: "\n") {
                    let line = String(pending[..<nl])
                    pending = String(pending[pending.index(after: nl)...])
                    lines.withLock { $0.append((ContinuousClock.now, line)) }
                    onLine(self, line)
                }
            }
        }.start()
    }

    var output: [(ContinuousClock.Instant, String)] { lines.withLock { $0 } }

    func kill9() { kill(process.processIdentifier, SIGKILL) }

    /// Waits at most `seconds` for the process to exit; kills it after that.
    func wait(seconds: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill9()
            process.waitUntilExit()
            return -1
        }
        return process.terminationStatus
    }
}

@Suite("Rounds with client processes")
struct RoundsProcessTests {
    @Test(
        "10 clients, rounds of 5 with over-selection 1.4 and a 2 s deadline, 2 selected clients killed mid-round in every round: each round closes within its deadline plus 1 s, no update is applied twice, and the model is the sample-weighted mean of the reports received"
    )
    func killedClients() async throws {
        let dir = try temporaryDirectory("rounds")
        defer { try? FileManager.default.removeItem(at: dir) }
        let reports = dir.appendingPathComponent("reports").path
        try FileManager.default.createDirectory(atPath: reports, withIntermediateDirectories: true)
        let totalRounds = 3
        let portBox = Locked<Int?>(nil)
        let serverLines = Locked<[String]>([])
        let server = try Child(
            name: "server",
            [
                "server", "--port", "0", "--checkpoint", dir.appendingPathComponent("m.fedk").path,
                "--rounds", "5", "--over-selection", "1.4", "--round-deadline", "2", "--selection-window", "5",
                "--total-rounds", String(totalRounds), "--round-param", "epochs=1", "--log-level", "info",
            ]
        ) { _, line in
            if line.hasPrefix("listening on "), let p = Int(line.split(separator: ":").last ?? "") {
                portBox.withLock { $0 = p }
            }
            serverLines.withLock { $0.append(line) }
        }
        defer { _ = server.wait(seconds: 0) }
        // Waits run on threads of their own (offPool), not on the test pool's few threads.
        let port = try #require(
            try await offPool {
                let start = Date()
                while portBox.withLock({ $0 }) == nil && Date().timeIntervalSince(start) < 20 { usleep(20_000) }
                return portBox.withLock { $0 }
            })

        // Clients: the first two to say they got a task in a round are killed at once,
        // and started again once the server has closed that round.
        struct Killing {
            var killed: [Int: [String]] = [:]
            var children: [String: Child] = [:]
            var respawns: [Child] = []
        }
        let killing = Locked(Killing())
        @Sendable func arguments(_ id: String, _ k: Int) -> [String] {
            [
                "client", "--server", "127.0.0.1:\(port)", "--id", id, "--range", String(k), String(k + 1),
                "--rounds", "--max-samples", "600", "--threads", "1", "--keep-reports", reports,
            ]
        }
        @Sendable func onClientLine(_ child: Child, _ line: String) {
            guard let r = line.range(of: "task: train round ") else { return }
            let round = Int(line[r.upperBound...].prefix { $0.isNumber }) ?? 0
            killing.withLock { k in
                if k.killed[round, default: []].count < 2 {
                    k.killed[round, default: []].append(child.name)
                    child.kill9()
                }
            }
        }
        for k in 1...10 {
            let id = "c\(k)"
            let child = try Child(name: id, arguments(id, k), onLine: onClientLine)
            killing.withLock { $0.children[id] = child }
        }
        // Respawn the killed clients of each closed round (they do not come back in it).
        let finished = try await offPool {
            var respawned = Set<Int>()
            let deadline = Date().addingTimeInterval(90)
            var finished = false
            while Date() < deadline && !finished {
                usleep(50_000)
                let lines = serverLines.withLock { $0 }
                for round in 1...totalRounds where !respawned.contains(round) {
                    guard
                        lines.contains(where: {
                            $0.contains("round \(round) closed") || $0.contains("round \(round) abandoned")
                        })
                    else { continue }
                    respawned.insert(round)
                    let ids = killing.withLock { $0.killed[round] ?? [] }
                    for id in ids {
                        let child = try Child(name: id, arguments(id, Int(id.dropFirst())!), onLine: onClientLine)
                        killing.withLock { $0.respawns.append(child) }
                    }
                }
                finished = lines.contains { $0.contains("all \(totalRounds) rounds have run") }
            }
            return finished
        }
        #expect(finished, "the server ran its rounds")
        let children = killing.withLock { Array($0.children.values) + $0.respawns }
        try await offPool { for c in children { _ = c.wait(seconds: 20) } }
        let killedPerRound = killing.withLock { $0.killed }

        // Timing: from "round R opened" to "round R closed", as the lines arrived.
        let timed = server.output
        var previousDatasets: UInt64 = 0
        for round in 1...totalRounds {
            let opened = try #require(timed.last { $0.1.contains("round \(round) opened") }?.0)
            let closedLine = try #require(timed.first { $0.1.contains("round \(round) closed") })
            let took = closedLine.0 - opened
            #expect(took <= .seconds(3), "round \(round) took \(took)")
            #expect(killedPerRound[round]?.count == 2, "two clients killed in round \(round)")
            #expect(timed.last { $0.1.contains("round \(round) opened") }!.1.contains("7 clients selected"))

            // The reports the server applied, by client id, each once.
            let ids = try #require(closedLine.1.components(separatedBy: "reported by ").last)
                .components(separatedBy: ", ")
            #expect(Set(ids).count == ids.count && ids.count >= 4, "round \(round): \(ids)")
            var sum: [Double] = []
            var samples: UInt64 = 0
            for id in ids {
                let file = "\(reports)/round-\(round)-\(id).fedk"
                let kept = try #require(try CheckpointFile.read(from: file), "no report kept at \(file)")
                let values = kept.tensors.flatMap(\.values)
                if sum.isEmpty { sum = [Double](repeating: 0, count: values.count) }
                for i in values.indices { sum[i] += Double(kept.datasets) * Double(values[i]) }
                samples += kept.datasets
            }
            // The version the round produced, as the server serves it.
            let model = try await offPool { try Self.fetchVersion(UInt64(round), port: port, into: dir) }
            #expect(model.version == UInt64(round))
            #expect(model.datasets == previousDatasets + samples, "round \(round) counted its samples once")
            previousDatasets = model.datasets
            let values = model.tensors.flatMap(\.values)
            var worst = 0.0
            for i in values.indices { worst = max(worst, abs(Double(values[i]) - sum[i] / Double(samples))) }
            #expect(worst < 1e-6, "round \(round): largest difference from the weighted mean \(worst)")
        }
        kill(server.process.processIdentifier, SIGTERM)
        #expect(try await offPool { server.wait(seconds: 20) } == 0)
    }

    /// `GET /v1/model/N` with curl: the MODEL payload of version N.
    private static func fetchVersion(_ version: UInt64, port: Int, into dir: URL) throws -> (
        version: UInt64, datasets: UInt64, tensors: [Tensor]
    ) {
        let out = dir.appendingPathComponent("v\(version).bin").path
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        curl.arguments = ["curl", "-sf", "-o", out, "http://127.0.0.1:\(port)/v1/model/\(version)"]
        try curl.run()
        curl.waitUntilExit()
        guard curl.terminationStatus == 0 else { throw TestError("curl of version \(version) failed") }
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: out)))
        return try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            let v = try r.u64("version")
            let d = try r.u64("datasets")
            return (v, d, try TensorBlob.decode(&r, limits: .default))
        }
    }
}

@Suite("Rounds across a server crash")
struct RoundsCrashTests {
    /// Starts `fed server` with `arguments`, its lines collected in `lines`;
    /// its reader kills it (SIGKILL) the first time, over all servers sharing
    /// `killOnce`, that a line contains `trigger`. Returns once it listens (at most 20 s).
    private static func startServer(
        _ arguments: [String], lines: Locked<[String]>, killOnce armed: Locked<Bool>, at trigger: String
    ) throws -> Child {
        let child = try Child(name: "server", arguments) { child, line in
            lines.withLock { $0.append(line) }
            if line.contains(trigger)
                && armed.withLock({
                    let a = $0; $0 = false; return a
                })
            {
                child.kill9()
            }
        }
        let start = Date()
        while !lines.withLock({ $0.contains { $0.hasPrefix("listening on ") } })
            && Date().timeIntervalSince(start) < 20
        {
            usleep(20_000)
        }
        return child
    }

    @Test(
        "kill -9 of the server during a round: after the restart the rounds go on, the lost round is selected anew, and no report is counted twice"
    )
    func crashDuringRound() async throws {
        let dir = try temporaryDirectory("rounds-crash")
        defer { try? FileManager.default.removeItem(at: dir) }
        let checkpoint = dir.appendingPathComponent("m.fedk").path
        // Below the ephemeral range: after the kill no parallel test's connection can take it.
        let port = reserveStablePort()
        let serverArguments = [
            "server", "--port", String(port), "--checkpoint", checkpoint, "--rounds", "3", "--over-selection", "1",
            "--round-deadline", "20", "--selection-window", "20", "--total-rounds", "3", "--log-level", "info",
        ]
        let lines = Locked<[String]>([])
        // The first server is killed by its reader the moment it logs that round 2 opened.
        let armed = Locked(true)
        @Sendable func startServer() throws -> Child {
            try Self.startServer(serverArguments, lines: lines, killOnce: armed, at: "round 2 opened")
        }
        // Waits run on threads of their own (offPool), not on the test pool's few threads.
        var server = try await offPool { try startServer() }
        // Each client trains 8 epochs a task, and retries for up to 120 s: a restart on a loaded
        // machine (the whole suite runs in parallel) can take many seconds.
        let clients = try (1...3).map { k in
            try Child(
                name: "c\(k)",
                [
                    "client", "--server", "127.0.0.1:\(port)", "--id", "c\(k)", "--range", String(k), String(k),
                    "--rounds", "--max-samples", "300", "--threads", "1", "--epochs", "8", "--attempts", "1000",
                    "--backoff", "0.1", "--max-backoff", "0.25", "--deadline", "120",
                ]
            ) { _, _ in }
        }
        defer { for c in clients where c.process.isRunning { c.kill9() } }
        try await offPool {
            let start = Date()
            while !lines.withLock({ $0.contains { $0.contains("round 2 opened") } })
                && Date().timeIntervalSince(start) < 60
            {
                usleep(10_000)
            }
        }
        #expect(lines.withLock { $0.contains { $0.contains("round 1 closed") } })
        #expect(!lines.withLock { $0.contains { $0.contains("round 2 closed") } }, "killed while round 2 was open")
        server.kill9()
        let killed = server
        _ = try await offPool { killed.wait(seconds: 5) }
        lines.withLock { $0.removeAll() }
        server = try await offPool { try startServer() }
        let statuses = try await offPool { clients.map { $0.wait(seconds: 90) } }
        #expect(
            statuses == [0, 0, 0],
            "the clients' exit statuses; their last lines: \(clients.map { $0.output.suffix(4).map(\.1) })")
        let after = lines.withLock { $0 }
        #expect(after.contains { $0.contains("resumed version 1") }, "\(after)")
        #expect(
            after.contains { $0.contains("round 2 opened") } && after.contains { $0.contains("round 3 closed") },
            "the restarted server's last lines: \(after.suffix(6))")
        #expect(after.contains { $0.contains("all 3 rounds have run") })
        kill(server.process.processIdentifier, SIGTERM)
        let restarted = server
        #expect(try await offPool { restarted.wait(seconds: 20) } == 0)
        // Three rounds of three reports of the clients' samples each, counted once.
        let model = try #require(try CheckpointFile.read(from: checkpoint))
        #expect(model.version == 3)
        let samples = (1...3).map { _ in UInt64(300) }.reduce(0, +)
        #expect(model.datasets == 3 * samples, "datasets \(model.datasets)")
    }

    @Test(
        "Secure aggregation: kill -9 of the server while a cohort's keys are shared and its masked inputs are due: nothing of that round is applied, the round is run anew with fresh keys, and every round's samples count once"
    )
    func secureCohortAcrossACrash() async throws {
        let dir = try temporaryDirectory("secagg-crash")
        defer { try? FileManager.default.removeItem(at: dir) }
        let checkpoint = dir.appendingPathComponent("m.fedk").path
        let port = reserveStablePort()
        let serverArguments = [
            "server", "--port", String(port), "--checkpoint", checkpoint, "--rounds", "3", "--over-selection", "1",
            "--min-reports", "3", "--round-deadline", "30", "--selection-window", "20", "--total-rounds", "3",
            "--secagg", "t=2", "--log-level", "info",
        ]
        let lines = Locked<[String]>([])
        // The first server is killed the moment it logs that round 2's keys are shared.
        let armed = Locked(true)
        @Sendable func startServer() throws -> Child {
            try Self.startServer(serverArguments, lines: lines, killOnce: armed, at: "round 2: keys shared")
        }
        var server = try await offPool { try startServer() }
        let clients = try (1...3).map { k in
            try Child(
                name: "c\(k)",
                [
                    "client", "--server", "127.0.0.1:\(port)", "--id", "c\(k)", "--range", String(k), String(k),
                    "--rounds", "--secagg", "--max-samples", "300", "--threads", "1", "--epochs", "8", "--attempts",
                    "1000", "--backoff", "0.1", "--max-backoff", "0.25", "--deadline", "120",
                ]
            ) { _, _ in }
        }
        defer { for c in clients where c.process.isRunning { c.kill9() } }
        try await offPool {
            let start = Date()
            while !lines.withLock({ $0.contains { $0.contains("round 2: keys shared") } })
                && Date().timeIntervalSince(start) < 60
            {
                usleep(10_000)
            }
        }
        #expect(lines.withLock { $0.contains { $0.contains("round 1 closed by secure aggregation") } })
        #expect(!lines.withLock { $0.contains { $0.contains("round 2 closed") } }, "killed while round 2 was open")
        server.kill9()
        let killed = server
        _ = try await offPool { killed.wait(seconds: 5) }
        lines.withLock { $0.removeAll() }
        server = try await offPool { try startServer() }
        let statuses = try await offPool { clients.map { $0.wait(seconds: 90) } }
        #expect(
            statuses == [0, 0, 0],
            "the clients' exit statuses; their last lines: \(clients.map { $0.output.suffix(4).map(\.1) })")
        let after = lines.withLock { $0 }
        #expect(after.contains { $0.contains("resumed version 1") }, "\(after)")
        #expect(
            after.contains { $0.contains("round 2 closed by secure aggregation") }
                && after.contains { $0.contains("round 3 closed by secure aggregation") },
            "the restarted server's last lines: \(after.suffix(6))")
        kill(server.process.processIdentifier, SIGTERM)
        let restarted = server
        #expect(try await offPool { restarted.wait(seconds: 20) } == 0)
        // Three rounds of the three clients' 300 samples each (the counts ride in the masked sums), counted once.
        let model = try #require(try CheckpointFile.read(from: checkpoint))
        #expect(model.version == 3)
        #expect(model.datasets == 3 * 900, "datasets \(model.datasets)")
    }

    @Test(
        "Differential privacy: a server with a target epsilon publishes exactly the rounds that fit, across a kill -9 and a restart; then check-ins are told the budget is spent"
    )
    func privacyBudgetAcrossACrash() async throws {
        let dir = try temporaryDirectory("dp-crash")
        defer { try? FileManager.default.removeItem(at: dir) }
        let checkpoint = dir.appendingPathComponent("m.fedk").path
        // Every waiting client takes part (cohort = population: q = 1), noise 2: room for exactly 4 rounds.
        var accountant = RDPAccountant()
        var epsilons: [Double] = []
        for _ in 0..<5 {
            try accountant.compose(.poissonSampledGaussian(samplingRate: 1, noise: 2))
            epsilons.append(accountant.epsilon(delta: 1e-5).epsilon)
        }
        let target = (epsilons[3] + epsilons[4]) / 2
        let port = reserveStablePort()
        let serverArguments = [
            "server", "--port", String(port), "--checkpoint", checkpoint, "--rounds", "3", "--round-deadline", "20",
            "--selection-window", "20", "--dp", "population=3,noise=2,clip=1,target-epsilon=\(target)",
            "--log-level", "info",
        ]
        let lines = Locked<[String]>([])
        // The first server is killed the moment it logs that round 2 closed (written).
        let armed = Locked(true)
        @Sendable func startServer() throws -> Child {
            try Self.startServer(serverArguments, lines: lines, killOnce: armed, at: "round 2 closed")
        }
        @Sendable func startClients() throws -> [Child] {
            try (1...3).map { k in
                try Child(
                    name: "c\(k)",
                    [
                        "client", "--server", "127.0.0.1:\(port)", "--id", "c\(k)", "--range", String(k), String(k),
                        "--rounds", "--max-samples", "200", "--threads", "1", "--attempts", "1000", "--backoff", "0.1",
                        "--max-backoff", "0.25", "--deadline", "120",
                    ]
                ) { _, _ in }
            }
        }
        var server = try await offPool { try startServer() }
        let first = try startClients()
        defer { for c in first where c.process.isRunning { c.kill9() } }
        let killed = server
        try await offPool {
            let start = Date()
            while killed.process.isRunning && Date().timeIntervalSince(start) < 60 { usleep(10_000) }
        }
        #expect(lines.withLock { $0.contains { $0.contains("round 2 closed") } }, "killed after round 2 was written")
        for c in first { c.kill9() }
        lines.withLock { $0.removeAll() }
        server = try await offPool { try startServer() }
        let clients = try startClients()
        defer { for c in clients where c.process.isRunning { c.kill9() } }
        let statuses = try await offPool { clients.map { $0.wait(seconds: 90) } }
        #expect(
            statuses == [0, 0, 0],
            "the clients' exit statuses; their last lines: \(clients.map { $0.output.suffix(4).map(\.1) })")
        let after = lines.withLock { $0 }
        #expect(after.contains { $0.contains("resumed version 2") }, "\(after.prefix(8))")
        #expect(after.contains { $0.contains("round 4 closed") && $0.contains("after 4 private rounds") })
        #expect(!after.contains { $0.contains("round 5 opened") }, "a fifth round would exceed the target")
        #expect(after.contains { $0.contains("privacy budget spent") }, "\(after.suffix(6))")
        #expect(clients.allSatisfy { $0.output.contains { $0.1.contains("the federation finished") } })
        // /metrics states the epsilon of the 4 rounds published.
        let metrics = try await offPool {
            let curl = Process()
            curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            curl.arguments = ["curl", "-sf", "http://127.0.0.1:\(port)/metrics"]
            let pipe = Pipe()
            curl.standardOutput = pipe
            try curl.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            curl.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        let epsilonLine = try #require(metrics.split(separator: "\n").first { $0.hasPrefix("fed_privacy_epsilon ") })
        let served = try #require(Double(epsilonLine.split(separator: " ").last ?? ""))
        #expect(abs(served - epsilons[3]) < 1e-9 * epsilons[3] && served <= target, "\(epsilonLine)")
        #expect(metrics.contains("fed_privacy_rounds 4"), "\(metrics)")
        kill(server.process.processIdentifier, SIGTERM)
        let restarted = server
        #expect(try await offPool { restarted.wait(seconds: 20) } == 0)
        let model = try #require(try CheckpointFile.read(from: checkpoint))
        #expect(model.version == 4, "exactly the 4 rounds within the budget were published")
    }
}

@Suite("FedBuff cohorts under secure aggregation, with client processes")
struct SecureCohortsProcessTests {
    @Test(
        "fed server --strategy fedbuff --secagg: six fed client processes form two cohorts of three that run at once; both are applied through fedbuff's Adam, every sample counted once"
    )
    func twoCohortsAtOnce() async throws {
        let dir = try temporaryDirectory("secagg-cohorts")
        defer { try? FileManager.default.removeItem(at: dir) }
        let checkpoint = dir.appendingPathComponent("m.fedk").path
        let port = reserveStablePort()
        let lines = Locked<[String]>([])
        // The first cohort's clients, stopped (SIGSTOP) as soon as their keys are shared: slow
        // clients, still training while the second cohort forms.
        let slow = Locked<[pid_t]>([])
        let server = try await offPool {
            let child = try Child(
                name: "server",
                [
                    "server", "--port", String(port), "--checkpoint", checkpoint, "--rounds", "3", "--over-selection",
                    "1", "--min-reports", "3", "--round-deadline", "60", "--selection-window", "30", "--total-rounds",
                    "2", "--strategy", "fedbuff/opt=adam:0.001", "--secagg", "t=2", "--cohorts-in-flight", "2",
                    "--log-level", "info",
                ]
            ) { _, line in
                lines.withLock { $0.append(line) }
                if line.contains("round 1: keys shared") { for pid in slow.withLock({ $0 }) { kill(pid, SIGSTOP) } }
            }
            let start = Date()
            while !lines.withLock({ $0.contains { $0.hasPrefix("listening on ") } })
                && Date().timeIntervalSince(start) < 20
            {
                usleep(20_000)
            }
            return child
        }
        defer { if server.process.isRunning { server.kill9() } }
        func client(_ k: Int, samples: Int, epochs: Int) throws -> Child {
            try Child(
                name: "c\(k)",
                [
                    "client", "--server", "127.0.0.1:\(port)", "--id", "c\(k)", "--range", String(k), String(k),
                    "--rounds", "--secagg", "--max-samples", String(samples), "--threads", "1", "--epochs",
                    String(epochs), "--attempts", "1000", "--backoff", "0.1", "--max-backoff", "0.25", "--deadline",
                    "120",
                ]
            ) { _, _ in }
        }
        @Sendable func awaitLine(_ text: String) {
            let start = Date()
            while !lines.withLock({ $0.contains { $0.contains(text) } }) && Date().timeIntervalSince(start) < 60 {
                usleep(10_000)
            }
        }
        var clients = try (1...3).map { try client($0, samples: 1000, epochs: 100) }
        slow.withLock { $0 = clients.map(\.process.processIdentifier) }
        defer { for c in clients where c.process.isRunning { c.kill9() } }
        try await offPool { awaitLine("round 1: keys shared") }
        clients += try (4...6).map { try client($0, samples: 100, epochs: 1) }
        try await offPool { awaitLine("round 2 opened") }
        for pid in slow.withLock({ $0 }) { kill(pid, SIGCONT) }
        let all = clients
        let statuses = try await offPool { all.map { $0.wait(seconds: 120) } }
        #expect(
            statuses == [0, 0, 0, 0, 0, 0],
            "the clients' exit statuses; their last lines: \(clients.map { $0.output.suffix(4).map(\.1) })")
        let log = lines.withLock { $0 }
        #expect(log.contains { $0.contains("secure cohorts of 3 (each a buffer of the strategy), up to 2 at once") })
        #expect(log.contains { $0.contains("round 2 opened") && $0.contains("2 rounds open") }, "\(log.suffix(12))")
        // Both trained from version 0: whichever closes second is one version stale.
        #expect(
            log.contains {
                $0.contains("closed by secure aggregation") && $0.contains("version 2, a buffer 1 versions stale")
            },
            "\(log.suffix(12))")
        #expect(log.filter { $0.contains("closed by secure aggregation") }.count == 2, "\(log.suffix(12))")
        kill(server.process.processIdentifier, SIGTERM)
        #expect(try await offPool { server.wait(seconds: 20) } == 0)
        let model = try #require(try CheckpointFile.read(from: checkpoint))
        #expect(model.version == 2)
        // Each cohort's samples (from its masked sum) counted once.
        let logged = log.filter { $0.contains("closed by secure aggregation") }.compactMap { line in
            line.components(separatedBy: " tasks, ").last?.split(separator: " ").first.flatMap { UInt64($0) }
        }
        #expect(
            logged.count == 2 && model.datasets == logged.reduce(0, +), "datasets \(model.datasets), logged \(logged)")
    }

    @Test(
        "fed server --secagg refuses what cannot see single updates: fedasync, robust combiners, server-side clipping, and a buffer size other than the cohort",
        arguments: [
            ("fedasync", "weighs each update on its own"),
            ("fedbuff/combine=median", "combine=median needs every update on its own"),
            ("fedbuff/clip=1", "the clients clip"),
            ("fedbuff/k=5", "each buffer is a cohort of --rounds 3 clients"),
            ("fedbuff/samples=false", "weighs its updates by their samples"),
        ])
    func refusals(strategy: String, reason: String) async throws {
        let r = try await FedProcess.run([
            "server", "--port", "0", "--rounds", "3", "--strategy", strategy, "--secagg", "t=2",
        ])
        #expect(r.status != 0 && r.output.contains(reason), "\(r.output)")
    }

    @Test(
        "Options that would be ignored are refused by fed server and fed simulate: --cohorts-in-flight outside fedbuff cohorts, --dp survivors= without --secagg, --secagg clip= or w= under --dp",
        arguments: [
            (["--secagg", "t=2", "--cohorts-in-flight", "3"], "--cohorts-in-flight applies to"),
            (["--dp", "population=10,noise=1,clip=1,survivors=0.9"], "survivors= applies to distributed noise"),
            (
                ["--dp", "population=10,noise=1,clip=1,sampling=fixed", "--secagg", "t=2,clip=3"],
                "--secagg clip= does not apply"
            ),
        ])
    func ignoredOptions(arguments: [String], reason: String) async throws {
        let r = try await FedProcess.run(["server", "--port", "0", "--rounds", "3"] + arguments)
        #expect(r.status != 0 && r.output.contains(reason), "\(r.output)")
        let s = try await FedProcess.run(["simulate", "--sync", "0.5", "--clients", "10"] + arguments)
        #expect(s.status != 0 && s.output.contains(reason.prefix(20)), "\(s.output)")
    }
}
