import FedClient
import FedCodec
import FedTestSupport
import Foundation
import Synchronization
import Testing

@testable import FedServer

/// A one-feature binary classifier as a user might write it: the model is
/// one tensor `(a, b)`, predicting 1 when `a x + b > 0`. Training adds `step`
/// to both weights; evaluation runs on the client's held-out examples.
private struct HeldOutTrainer: LocalTrainer {
    let step: Float
    let samples: UInt64
    let heldOut: [(x: Float, label: Int)]
    private(set) var evaluated: [UInt64] = []

    init(step: Float, samples: UInt64, heldOut: [(x: Float, label: Int)]) {
        self.step = step
        self.samples = samples
        self.heldOut = heldOut
    }

    mutating func train(_ task: TrainingTask) async throws -> TrainingOutcome {
        let weights = task.weights.map { t in
            var t = t
            for i in t.values.indices { t.values[i] += step }
            return t
        }
        return TrainingOutcome(weights: weights, samples: samples)
    }

    mutating func evaluate(_ task: EvaluationTask) async throws -> EvaluationOutcome? {
        evaluated.append(task.modelVersion)
        let (correct, loss) = score(task.weights[0].values, heldOut)
        return EvaluationOutcome(
            examples: UInt64(heldOut.count), loss: loss / Double(heldOut.count),
            metrics: ["accuracy": Double(correct) / Double(heldOut.count)])
    }
}

/// The correct answers and the summed logistic loss of weights `w` on `examples`.
private func score(_ w: [Float], _ examples: [(x: Float, label: Int)]) -> (correct: Int, loss: Double) {
    var correct = 0
    var loss = 0.0
    for e in examples {
        let z = Double(w[0] * e.x + w[1])
        if (z > 0 ? 1 : 0) == e.label { correct += 1 }
        loss += log1p(exp(-(e.label == 1 ? z : -z)))
    }
    return (correct, loss)
}

/// Client `i`'s held-out share: `5 + 6 i` examples on [-3, 3], labels
/// `x > -1.2` with every fifth one flipped.
private func heldOut(_ i: Int) -> [(x: Float, label: Int)] {
    (0..<(5 + 6 * i)).map { k in
        let x = Float((k * 37 + i * 11) % 61 - 30) / 10
        let label = x > -1.2 ? 1 : 0
        return (x, (k + i) % 5 == 0 ? 1 - label : label)
    }
}

private let evaluating = CheckIn(features: .evaluation, abilities: [.train, .evaluate], waitMilliseconds: 0)

@Suite("Federated evaluation over TCP (version 4, feature evaluation)")
struct EvaluationOverTCPTests {
    @Test(
        "Federated evaluation is consistent: every client reports on its held-out share, and the server's weighted accuracy equals central evaluation of their union"
    )
    func consistentWithCentralEvaluation() async throws {
        let clients = 4
        let s = try RunningServer(tensors: constantTensors(0, shapes: [[2]])) { c in
            c.rounds = RoundConfiguration(
                cohortSize: clients, overSelection: 1, deadline: .seconds(20), selectionWindow: .seconds(20),
                totalRounds: 1)
            c.evaluation = EvaluationConfiguration(fraction: 1)
        }
        let port = s.port
        // Each client: an evaluate task of version 0, the round's train task, an evaluate
        // task of the version the round made, then "finished".
        let runs = try await withThrowingTaskGroup(of: (FederationClient.RunSummary, [UInt64]).self) { group in
            for i in 0..<clients {
                group.addTask {
                    let client = FederationClient(
                        host: "127.0.0.1", port: port, configuration: .init(clientID: "device-\(i)"))
                    var trainer = HeldOutTrainer(step: Float(i + 1), samples: UInt64(10 * (i + 1)), heldOut: heldOut(i))
                    let summary = try await client.run(trainer: &trainer, options: .init(evaluate: true))
                    await client.close()
                    return (summary, trainer.evaluated)
                }
            }
            var out: [(FederationClient.RunSummary, [UInt64])] = []
            for try await r in group { out.append(r) }
            return out
        }
        for (summary, evaluated) in runs {
            #expect(summary.finished && summary.tasks == 1 && summary.reportsApplied == 1)
            #expect(summary.evaluations == 2 && evaluated == [0, 1])
        }
        let final = s.server.store.snapshot()
        #expect(final.version == 1)
        let union = (0..<clients).flatMap(heldOut)
        for (version, weights) in [(UInt64(0), [Float](repeating: 0, count: 2)), (1, final.tensors[0].values)] {
            let central = score(weights, union)
            let summary = try #require(s.server.evaluation(of: version))
            let accuracy = try #require(summary.metrics["accuracy"])
            let loss = try #require(summary.metrics["loss"])
            let counted = Int((accuracy.mean * Double(summary.examples)).rounded())
            print(
                "federated evaluation of version \(version): \(summary.clients) clients, \(summary.examples) held-out examples; the server's weighted accuracy \(accuracy.mean) (\(counted) correct), central evaluation of the union \(Double(central.correct) / Double(union.count)) (\(central.correct) correct of \(union.count)); worst client \(accuracy.min), p10 \(accuracy.p10)"
            )
            #expect(summary.clients == clients && summary.examples == UInt64(union.count))
            #expect(counted == central.correct)
            #expect(abs(accuracy.mean - Double(central.correct) / Double(union.count)) <= 1e-12)
            #expect(abs(loss.mean - central.loss / Double(union.count)) <= 1e-12 * max(1, loss.mean))
            // The distribution over clients is that of their own accuracies.
            let own = (0..<clients).map { i in Double(score(weights, heldOut(i)).correct) / Double(heldOut(i).count) }
            #expect(accuracy.min == own.min() && accuracy.max == own.max())
        }
        // /metrics: the gauges show the highest version reported on.
        let metrics = try MetricsTests().scrape(port)
        let v1 = try #require(s.server.evaluation(of: 1))
        for (series, value) in [
            ("fed_evaluation_tasks_total", Double(2 * clients)), ("fed_evaluation_reports_total", Double(2 * clients)),
            ("fed_evaluation_model_version", 1), ("fed_evaluation_clients", Double(clients)),
            ("fed_evaluation_examples", Double(union.count)),
            ("fed_evaluation_metric{metric=\"accuracy\",statistic=\"mean\"}", v1.metrics["accuracy"]!.mean),
            ("fed_evaluation_metric{metric=\"loss\",statistic=\"max\"}", v1.metrics["loss"]!.max),
        ] {
            #expect(MetricsTests().value(metrics, series) == value, "\(series)")
        }
        for family in ["fed_evaluation_tasks_total", "fed_evaluation_metric", "fed_evaluation_examples"] {
            #expect(metrics.contains("# HELP \(family) "), "\(family) has its help")
        }
        // GET /v1/evaluation: the same history as JSON.
        let history = try httpBody(port, "GET /v1/evaluation HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let document = try JSONDecoder().decode(EvaluationHistoryDocument.self, from: Data(history.utf8))
        #expect(document.versions == s.server.evaluationHistory && document.versions.map(\.modelVersion) == [0, 1])
    }

    @Test("An evaluate task goes to a client that speaks the feature and can evaluate, once per version")
    func handingOut() async throws {
        let s = try RunningServer(tensors: constantTensors(0, shapes: [[2]])) { c in
            c.rounds = RoundConfiguration(cohortSize: 10, selectionWindow: .seconds(20))
            c.evaluation = EvaluationConfiguration(fraction: 1, deadline: .seconds(7))
        }
        func checkIn(_ id: String, _ checkIn: CheckIn) async throws -> Assignment {
            let client = FederationClient(host: "127.0.0.1", port: s.port, configuration: .init(clientID: id))
            let answer = try await client.checkIn(checkIn)
            await client.close()
            return answer
        }
        let task = try await checkIn("a", evaluating)
        #expect(task.kind == .evaluate && task.taskID != 0 && task.modelVersion == 0)
        #expect(task.features == .evaluation && task.deadlineMilliseconds == 7_000)
        // Once per client and version: the next check-in goes on to the rounds.
        #expect(try await checkIn("a", evaluating).kind == .comeBack)
        // Without the feature, or without the ability, the rounds answer.
        #expect(try await checkIn("b", CheckIn(abilities: [.train, .evaluate], waitMilliseconds: 0)).kind == .comeBack)
        // The rounds' answers name the feature as agreed too.
        let c = try await checkIn("c", CheckIn(features: .evaluation, abilities: .train, waitMilliseconds: 0))
        #expect(c.kind == .comeBack && c.features == .evaluation)
    }

    @Test("With a tiny fraction, a client that can train rarely evaluates, and one that cannot train always does")
    func fraction() async throws {
        let s = try RunningServer(tensors: constantTensors(0, shapes: [[2]])) { c in
            c.rounds = RoundConfiguration(cohortSize: 100, selectionWindow: .seconds(20), seed: 5)
            c.evaluation = EvaluationConfiguration(fraction: 1e-9)
        }
        let client = FederationClient(host: "127.0.0.1", port: s.port, configuration: .init(clientID: "only-eval"))
        let only = try await client.checkIn(CheckIn(features: .evaluation, abilities: .evaluate, waitMilliseconds: 0))
        #expect(only.kind == .evaluate)
        await client.close()
        for i in 0..<20 {
            let c = FederationClient(host: "127.0.0.1", port: s.port, configuration: .init(clientID: "t\(i)"))
            #expect(try await c.checkIn(evaluating).kind == .comeBack)
            await c.close()
        }
    }

    @Test("An EVALUATION_REPORT is checked: the task's owner, the examples, finite values, the version")
    func reportChecks() async throws {
        let s = try RunningServer(tensors: constantTensors(0, shapes: [[2]])) { c in
            c.rounds = RoundConfiguration(cohortSize: 10, selectionWindow: .seconds(20))
            c.evaluation = EvaluationConfiguration(fraction: 1)
        }
        let a = FederationClient(host: "127.0.0.1", port: s.port, configuration: .init(clientID: "a"))
        let b = FederationClient(host: "127.0.0.1", port: s.port, configuration: .init(clientID: "b"))
        let task = try await a.checkIn(evaluating)
        #expect(task.kind == .evaluate)
        let good = EvaluationOutcome(examples: 10, loss: 0.5, metrics: ["accuracy": 0.75])
        func refusal(
            _ client: FederationClient, _ outcome: EvaluationOutcome, version: UInt64 = 0, task id: UInt64? = nil
        ) async -> ClientError.Code? {
            do throws(ClientError) {
                _ = try await client.evaluationReport(outcome, modelVersion: version, taskID: id ?? task.taskID)
                return nil
            } catch {
                return error.code
            }
        }
        #expect(await refusal(b, good) == .server(.unknownTask))
        #expect(await refusal(a, good, task: task.taskID &+ 1) == .server(.unknownTask))
        #expect(await refusal(a, EvaluationOutcome(examples: 0, loss: 0.5)) == .server(.invalidDatasets))
        #expect(await refusal(a, EvaluationOutcome(examples: 10, loss: .nan)) == .server(.nonFiniteValue))
        #expect(
            await refusal(a, EvaluationOutcome(examples: 10, loss: 1, metrics: ["accuracy": .infinity]))
                == .server(.nonFiniteValue))
        #expect(await refusal(a, good, version: 1) == .server(.malformedPayload))
        #expect(await refusal(a, EvaluationOutcome(examples: 1, loss: 1, metrics: ["Bad": 1])) == .invalidArgument)
        #expect(s.server.evaluationHistory.isEmpty)
        // Taken, then a retry with other values replaces it: one client, the latest values.
        #expect(await refusal(a, good) == nil)
        #expect(await refusal(a, EvaluationOutcome(examples: 20, loss: 0.25, metrics: ["accuracy": 0.5])) == nil)
        let summary = try #require(s.server.evaluation(of: 0))
        #expect(summary.clients == 1 && summary.examples == 20 && summary.metrics["accuracy"]?.mean == 0.5)
        await a.close()
        await b.close()
    }

    @Test("HTTP: POST /v1/evaluation takes a JSON report without a task; a bad one gets 400")
    func http() throws {
        let s = try RunningServer(tensors: constantTensors(0, shapes: [[2]]))
        func post(_ body: String) throws -> String {
            try httpBody(
                s.port,
                "POST /v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)",
                whole: true)
        }
        let ok = try post(
            #"{"client_id": "browser-1", "model_version": 0, "examples": 40, "loss": 0.5, "metrics": {"accuracy": 0.25}}"#
        )
        #expect(ok.hasPrefix("HTTP/1.1 200") && ok.hasSuffix(#"{"datasets": 0, "model_version": 0}"#), "\(ok)")
        _ = try post(#"{"client_id": "browser-2", "model_version": 0, "examples": 60, "loss": 1.5}"#)
        let summary = try #require(s.server.evaluation(of: 0))
        #expect(summary.clients == 2 && summary.examples == 100 && summary.metrics["loss"]?.mean == 1.1)
        #expect(summary.metrics["accuracy"]?.clients == 1)
        for (body, code) in [
            (#"{"client_id": "x", "model_version": 0, "examples": 1}"#, "malformed_payload"),
            (#"{"client_id": "x", "model_version": 3, "examples": 1, "loss": 1}"#, "malformed_payload"),
            (#"{"client_id": "x", "model_version": 0, "examples": 0, "loss": 1}"#, "invalid_datasets"),
            (
                #"{"client_id": "x", "model_version": 0, "examples": 1, "loss": 1, "metrics": {"loss": 1}}"#,
                "malformed_payload"
            ),
            ("not json", "malformed_payload"),
        ] {
            let answer = try post(body)
            #expect(answer.hasPrefix("HTTP/1.1 400") && answer.contains(#""error": "\#(code)""#), "\(body): \(answer)")
        }
        #expect(s.server.evaluation(of: 0)?.clients == 2)
    }
}

/// Sends `request` and returns the answer's body (`whole`: the status line and headers too).
private func httpBody(_ port: Int, _ request: String, whole: Bool = false) throws -> String {
    let c = try TestClient(port: port, timeoutSeconds: 5)
    try c.send(Array(request.utf8))
    let answer = c.receiveAll()
    guard !whole, let split = answer.range(of: "\r\n\r\n") else { return answer }
    return String(answer[split.upperBound...])
}
