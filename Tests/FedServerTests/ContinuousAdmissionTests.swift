import FedClient
import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Logging
import Testing

@testable import FedServer

/// `ContinuousAdmission` over a small model whose strategy is FedBuff, with
/// an in-memory checkpoint store; check-ins and reports as a connection
/// makes them.
private final class AdmissionFixture: Sendable {
    static let shapes = [[2, 3], [3]]
    let store: ModelStore
    let committer: GroupCommitter
    let admission: ContinuousAdmission

    init(places: Int, deadline: Duration = .seconds(20), k: Int = 2, initialSamples: UInt64 = 0) {
        store = ModelStore(
            initial: ModelSnapshot(
                version: 0, datasets: initialSamples, tensors: constantTensors(0, shapes: Self.shapes)),
            configuration: .init(strategy: FedBuff(bufferSize: k), maxStaleness: 16))
        committer = GroupCommitter(store: store, checkpoints: InMemoryCheckpointStore())
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        admission = ContinuousAdmission(
            configuration: RoundConfiguration(cohortSize: places, deadline: deadline, admission: .continuous),
            store: store, committer: committer, logger: logger)
    }

    func checkIn(_ id: String, wait: UInt32 = 10_000) -> Box<Assignment> {
        let box = Box<Assignment>()
        _ = admission.checkIn(CheckIn(waitMilliseconds: wait), clientID: id) { box.set($0) }
        return box
    }

    func report(_ taskID: UInt64, as id: String, value: Float, samples: UInt64) -> Box<
        Result<Acknowledgement, ErrorMessage>
    > {
        let box = Box<Result<Acknowledgement, ErrorMessage>>()
        admission.report(
            Report(taskID: taskID, samples: samples, tensors: constantTensors(value, shapes: Self.shapes)),
            clientID: id
        ) { box.set($0) }
        return box
    }

    var model: [Float] { store.snapshot().tensors.flatMap(\.values) }
}

@Suite("Continuous admission (fedbuff under --rounds)")
struct ContinuousAdmissionTests {
    @Test("At most the limit of tasks are outstanding; a report gives its place to the client waiting longest")
    func placesAreLimited() throws {
        let f = AdmissionFixture(places: 2, k: 1)
        let a = try #require(f.checkIn("a").get())
        let b = try #require(f.checkIn("b").get())
        #expect(a.kind == .train && b.kind == .train && a.taskID != b.taskID)
        let c = f.checkIn("c")
        let d = f.checkIn("d")
        #expect(c.get(within: 0.3) == nil && !d.isSet)  // both places taken
        let ack = try #require(f.report(a.taskID, as: "a", value: 1, samples: 10).get())
        #expect(try ack.get().version == 1)
        let next = try #require(c.get())
        #expect(next.kind == .train && next.modelVersion == 1)
        #expect(!d.isSet)
        #expect(f.admission.statistics.mostOutstanding == 2 && f.admission.statistics.tasksGiven == 3)
    }

    @Test("Each report is one update for the strategy, its samples read as a count, weighted by them")
    func reportsAreCountedUpdates() throws {
        // The model already counts 100 samples: a running-total reading would take 300 as 200.
        let f = AdmissionFixture(places: 2, k: 2, initialSamples: 100)
        let a = try #require(f.checkIn("a").get())
        let b = try #require(f.checkIn("b").get())
        let first = f.report(a.taskID, as: "a", value: 1, samples: 300)
        let second = f.report(b.taskID, as: "b", value: 3, samples: 100)
        let acks = try [first, second].map { try #require($0.get()).get() }
        #expect(acks.map(\.version).max() == 1)
        let model = f.store.snapshot()
        #expect(model.version == 1 && model.datasets == 500)
        // FedBuff's step: the sample-weighted mean of the deltas, (300 x 1 + 100 x 3) / 400.
        for v in f.model { #expect(abs(v - 1.5) < 1e-5) }
    }

    @Test("A report after its task's deadline is a stale update, taken; a repeat counts once; unknown tasks refused")
    func lateAndRepeated() throws {
        let f = AdmissionFixture(places: 1, deadline: .milliseconds(200), k: 1)
        let a = try #require(f.checkIn("a").get())
        // The deadline frees the place: the next client gets a task.
        let b = try #require(f.checkIn("b").get(within: 5))
        #expect(b.kind == .train)
        #expect(f.admission.statistics.expired == 1)
        let late = try #require(f.report(a.taskID, as: "a", value: 2, samples: 10).get()).get()
        #expect(late.version == 1 && f.admission.statistics.lateReports == 1)
        let again = try #require(f.report(a.taskID, as: "a", value: 2, samples: 10).get()).get()
        #expect(again == late && f.store.snapshot().version == 1 && f.store.snapshot().datasets == 10)
        let stranger = try #require(f.report(b.taskID, as: "a", value: 2, samples: 10).get())
        #expect((try? stranger.get()) == nil)
        if case .failure(let e) = stranger { #expect(e.code == .unknownTask) }
        let unknown = try #require(f.report(12345, as: "a", value: 2, samples: 10).get())
        if case .failure(let e) = unknown { #expect(e.code == .unknownTask) } else { Issue.record("accepted") }
    }

    @Test("A check-in that waits past its wait is told to come back (places full); shutdown answers the others")
    func waitsAndShutdown() throws {
        let f = AdmissionFixture(places: 1)
        _ = try #require(f.checkIn("a").get())
        let short = try #require(f.checkIn("b", wait: 100).get())
        #expect(short.kind == .comeBack && short.reason == .roundFull && short.retryAfterMilliseconds >= 1_000)
        let long = f.checkIn("c")
        f.admission.shutdown()
        let answer = try #require(long.get())
        #expect(answer.kind == .comeBack && answer.reason == .shuttingDown)
    }

    @Test("fed server's setting over TCP: three clients, each a single run call, push to fedbuff through tasks")
    func overTCP() async throws {
        let s = try RunningServer(tensors: constantTensors(0, shapes: [[4, 3], [3]])) { c in
            c.aggregation.strategy = FedBuff(bufferSize: 3)
            c.rounds = RoundConfiguration(cohortSize: 2, deadline: .seconds(20), admission: .continuous)
        }
        let port = s.port
        let summaries = try await withThrowingTaskGroup(of: FederationClient.RunSummary.self) { group in
            for i in 0..<3 {
                group.addTask {
                    let client = FederationClient(
                        host: "127.0.0.1", port: port, configuration: .init(clientID: "device-\(i)"))
                    var trainer = AddingTrainer(step: Float(i + 1), samples: UInt64(10 * (i + 1)))
                    let summary = try await client.run(trainer: &trainer, options: .init(maxTasks: 3))
                    await client.close()
                    return summary
                }
            }
            var out: [FederationClient.RunSummary] = []
            for try await r in group { out.append(r) }
            return out
        }
        for summary in summaries { #expect(summary.tasks == 3 && summary.reportsApplied == 3) }
        let model = s.server.store.snapshot()
        // Nine updates, three a version; every sample counted once: 3 x (10 + 20 + 30).
        #expect(model.version == 3 && model.datasets == 180)
        for v in model.tensors.flatMap(\.values) { #expect(v.isFinite && v > 0) }
        let admission = try #require(s.server.rounds as? ContinuousAdmission)
        #expect(admission.statistics.mostOutstanding <= 2 && admission.statistics.reportsApplied == 9)
    }
}

/// Adds `step` to every weight and says it trained on `samples` samples.
private struct AddingTrainer: LocalTrainer {
    let step: Float
    let samples: UInt64

    func train(_ task: TrainingTask) async throws -> TrainingOutcome {
        let weights = task.weights.map { t in
            var t = t
            for i in t.values.indices { t.values[i] += step }
            return t
        }
        return TrainingOutcome(weights: weights, samples: samples)
    }
}
