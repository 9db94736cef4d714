import FedClient
import FedCodec
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

/// A model of one's own, as a user writes it: adds `step` to every weight
/// and says it trained on `samples` samples.
private struct StepTrainer: LocalTrainer {
    let step: Float
    let samples: UInt64
    private(set) var rounds: [UInt64] = []
    private(set) var parameters: [String: String] = [:]
    private(set) var features: Features = []

    init(step: Float, samples: UInt64) {
        self.step = step
        self.samples = samples
    }

    mutating func train(_ task: TrainingTask) async throws -> TrainingOutcome {
        rounds.append(task.round)
        parameters = task.parameters
        features = task.features
        let weights = task.weights.map { t in
            var t = t
            for i in t.values.indices { t.values[i] += step }
            return t
        }
        return TrainingOutcome(weights: weights, samples: samples)
    }
}

@Suite("Rounds over TCP (version 4)")
struct RoundsOverTCPTests {
    @Test(
        "Three clients, each a single run call with its own model, take part in every round until the server finishes")
    func threeClients() async throws {
        let s = try RunningServer(tensors: constantTensors(0, shapes: [[4, 3], [3]])) { c in
            c.rounds = RoundConfiguration(
                cohortSize: 3, overSelection: 1, deadline: .seconds(20), selectionWindow: .seconds(20),
                totalRounds: 3, parameters: ["epochs": "1"])
        }
        let port = s.port
        let summaries = try await withThrowingTaskGroup(
            of: (Int, FederationClient.RunSummary, [UInt64], [String: String]).self
        ) { group in
            for i in 0..<3 {
                group.addTask {
                    let client = FederationClient(
                        host: "127.0.0.1", port: port, configuration: .init(clientID: "device-\(i)"))
                    var trainer = StepTrainer(step: Float(i + 1), samples: UInt64(10 * (i + 1)))
                    let summary = try await client.run(trainer: &trainer)
                    await client.close()
                    return (i, summary, trainer.rounds, trainer.parameters)
                }
            }
            var out: [(Int, FederationClient.RunSummary, [UInt64], [String: String])] = []
            for try await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        for (_, summary, rounds, parameters) in summaries {
            #expect(summary.finished && summary.tasks == 3 && summary.reportsApplied == 3)
            #expect(parameters == ["epochs": "1"])
            #expect(summary.modelVersion == 3 && rounds == [1, 2, 3])
        }
        // Each round adds the sample-weighted mean step (10 x 1 + 20 x 2 + 30 x 3) / 60.
        let model = s.server.store.snapshot()
        #expect(model.version == 3 && model.datasets == 180)
        for v in model.tensors.flatMap(\.values) { #expect(abs(v - 7) < 1e-5) }
        // The rounds' series of /metrics.
        let metrics = try MetricsTests().scrape(port)
        for (series, value) in [
            ("fed_rounds_closed_total", 3.0), ("fed_rounds_abandoned_total", 0), ("fed_round_tasks_total", 9),
            ("fed_round_reports_applied_total", 9), ("fed_checkins_waiting", 0), ("fed_round_seconds_count", 3),
        ] {
            #expect(MetricsTests().value(metrics, series) == value, "\(series)")
        }
    }

    @Test(
        "Differential privacy over TCP: the server's noise and the clients' local noise reach the model with the stated spread; tasks carry the dp parameters and feature bit 0"
    )
    func privateRounds() async throws {
        let shapes = [[100, 100]]
        let s = try RunningServer(tensors: constantTensors(0, shapes: shapes)) { c in
            c.rounds = RoundConfiguration(
                cohortSize: 3, deadline: .seconds(20), selectionWindow: .seconds(20), totalRounds: 1,
                privacy: DifferentialPrivacy(
                    noiseMultiplier: 0.01, clipping: .fixed(norm: 10_000), population: 3, targetEpsilon: nil))
        }
        let port = s.port
        // Each client's step (norm 100) clipped to 10 and noised: norm about 100 x its noise, under the server's clip.
        let local = try LocalPrivacy(epsilon: 2, delta: 1e-5, clip: 10)
        let tasks = try await withThrowingTaskGroup(of: ([String: String], Features).self) { group in
            for i in 0..<3 {
                group.addTask {
                    let client = FederationClient(
                        host: "127.0.0.1", port: port, configuration: .init(clientID: "device-\(i)"))
                    var trainer = StepTrainer(step: 1, samples: 10)
                    let summary = try await client.run(
                        trainer: &trainer,
                        options: .init(maxTasks: 1, features: .differentialPrivacy, localPrivacy: local))
                    #expect(summary.reportsApplied == 1)
                    await client.close()
                    return (trainer.parameters, trainer.features)
                }
            }
            var out: [([String: String], Features)] = []
            for try await p in group { out.append(p) }
            return out
        }
        for (p, features) in tasks {
            #expect(p["dp.clip"] == "10000.0" && p["dp.noise"] == "0.01" && p["dp.epsilon"] == "0.0", "\(p)")
            #expect(features == .differentialPrivacy)
        }
        // Each client's step 0.1 (its step of norm 100 clipped to 10) plus its local noise; the server
        // adds N(0, (0.01 x 10000)^2) to the sum and divides by 3.
        let values = s.server.store.snapshot().tensors.flatMap(\.values).map(Double.init)
        let n = Double(values.count)
        let mean = values.reduce(0, +) / n
        let sd = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot()
        #expect(local.noise > 20 && local.noise < 200, "local noise \(local.noise)")
        let expected = ((3 * local.noise * local.noise + 100 * 100) / 9).squareRoot()
        #expect(abs(sd - expected) < 0.03 * expected, "spread \(sd), expected \(expected)")
        #expect(abs(mean - 0.1) < 5 * expected / n.squareRoot(), "mean \(mean)")
        let spent = try #require(s.server.privacySpent)
        #expect(spent.rounds == 1 && spent.epsilon > 0)
    }

    @Test("A server without rounds answers a check-in unexpected_message; a version-3 server is named as such")
    func noRounds() async throws {
        let s = try RunningServer()
        let client = FederationClient(host: "127.0.0.1", port: s.port, configuration: .init(clientID: "x"))
        do throws(ClientError) {
            let answer = try await client.checkIn(CheckIn())
            Issue.record("a server without rounds answered CHECK_IN with \(answer)")
        } catch {
            #expect(error.code == .server(.unexpectedMessage))
        }
        await client.close()
    }

    @Test("A client that vanishes after its task leaves a round that closes at its deadline with the others")
    func vanishedClient() async throws {
        let s = try RunningServer(tensors: constantTensors(0, shapes: [[2]])) { c in
            c.rounds = RoundConfiguration(
                cohortSize: 3, overSelection: 1, minimumReports: 2, deadline: .seconds(5),
                selectionWindow: .seconds(20), totalRounds: 1)
        }
        let port = s.port
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            // One client takes its task and closes its connection without reporting.
            group.addTask {
                let client = FederationClient(host: "127.0.0.1", port: port, configuration: .init(clientID: "gone"))
                let task = try await client.checkIn(CheckIn())
                #expect(task.kind == .train)
                await client.close()
            }
            for i in 0..<2 {
                group.addTask {
                    let client = FederationClient(
                        host: "127.0.0.1", port: port, configuration: .init(clientID: "stays-\(i)"))
                    var trainer = StepTrainer(step: 2, samples: 5)
                    let summary = try await client.run(trainer: &trainer, options: .init(maxTasks: 1))
                    #expect(summary.reportsApplied == 1 && summary.modelVersion == 1)
                    await client.close()
                }
            }
            try await group.waitForAll()
        }
        // Only the deadline closes a round of three tasks with two reports (and not before it);
        // a round waiting for the vanished client would time the reports out instead. No upper
        // bound on the time: the full suite's blocking tests can hold the task pool for seconds.
        let took = ContinuousClock.now - start
        #expect(took >= .seconds(5), "closed before its deadline: \(took)")
        #expect(s.server.store.snapshot().tensors[0].values == [2, 2])
    }

    @Test("A client that half-closes (or exits) while its check-in waits is not selected")
    func halfClosedCheckIn() async throws {
        let s = try RunningServer(tensors: constantTensors(0, shapes: [[2]])) { c in
            c.rounds = RoundConfiguration(cohortSize: 2, overSelection: 1, selectionWindow: .seconds(20))
        }
        let port = s.port
        let raw = try TestClient(port: port)
        _ = try raw.send(.hello(Hello(minVersion: 4, maxVersion: 4, compressions: 1, clientID: "leaver")))
        _ = try raw.receive()
        _ = try raw.send(.other(AnyProtocolMessage(CheckIn(waitMilliseconds: 20_000))), version: 4)
        raw.finishSending()
        #expect(raw.closedByServer(), "nothing is left to answer: the server closes")
        // Had the leaver been selected with the first of them, the second would wait
        // out its 10 s and be told to come back instead of getting a task.
        try await withThrowingTaskGroup(of: Assignment.self) { group in
            for i in 0..<2 {
                group.addTask {
                    let client = FederationClient(
                        host: "127.0.0.1", port: port, configuration: .init(clientID: "c\(i)"))
                    let task = try await client.checkIn(CheckIn(waitMilliseconds: 10_000))
                    await client.close()
                    return task
                }
            }
            for try await task in group { #expect(task.kind == .train && task.round == 1) }
        }

    }
}
