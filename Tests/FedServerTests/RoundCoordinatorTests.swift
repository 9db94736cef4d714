import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@testable import FedServer

/// A `RoundCoordinator` over a small model with an in-memory checkpoint
/// store: check-ins and reports as a connection would make them, answers
/// collected as they come.
final class RoundsFixture: Sendable {
    static let shapes = [[2, 3], [3]]
    let store: ModelStore
    let committer: GroupCommitter
    let checkpoints: InMemoryCheckpointStore
    let rounds: RoundCoordinator

    init(_ configuration: RoundConfiguration, checkpoints: InMemoryCheckpointStore = InMemoryCheckpointStore()) throws {
        self.checkpoints = checkpoints
        let (snapshot, durable) =
            try checkpoints.loadState()
            ?? (ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes)), .init())
        store = ModelStore(initial: snapshot, durable: durable)
        committer = GroupCommitter(store: store, checkpoints: checkpoints)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        rounds = try RoundCoordinator(
            configuration: configuration, store: store, committer: committer, logger: logger)
    }

    /// Checks in as `id`; the answer arrives in the returned box.
    func checkIn(_ id: String, wait: UInt32 = 10_000) -> Box<Assignment> {
        let box = Box<Assignment>()
        _ = rounds.checkIn(CheckIn(waitMilliseconds: wait), clientID: id) { box.set($0) }
        return box
    }

    /// Reports `value` everywhere, trained on `samples`, for `task`.
    func report(_ task: Assignment, as id: String, value: Float, samples: UInt64) -> Box<
        Result<Acknowledgement, ErrorMessage>
    > {
        let box = Box<Result<Acknowledgement, ErrorMessage>>()
        rounds.report(
            Report(taskID: task.taskID, samples: samples, tensors: constantTensors(value, shapes: Self.shapes)),
            clientID: id
        ) { box.set($0) }
        return box
    }

    /// Checks in every one of `ids` at once and waits for their answers.
    func tasks(_ ids: [String]) throws -> [Assignment] {
        let boxes = ids.map { checkIn($0) }
        return try boxes.map { try #require($0.get()) }
    }

    var model: [Float] { store.snapshot().tensors.flatMap(\.values) }
}

/// One answer, waited for.
final class Box<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    private let arrived = DispatchSemaphore(value: 0)

    func set(_ v: T) {
        value.withLock { $0 = v }
        arrived.signal()
    }

    /// The answer, waiting at most `seconds`; nil if none came.
    func get(within seconds: Double = 5) -> T? {
        if let v = value.withLock({ $0 }) { return v }
        guard arrived.wait(timeout: .now() + seconds) == .success else { return nil }
        arrived.signal()
        return value.withLock { $0 }
    }

    var isSet: Bool { value.withLock { $0 } != nil }
}

@Suite("Rounds: selection, deadlines, reports (in process)")
struct RoundCoordinatorTests {
    @Test(
        "A round opens with the selection size, closes at the cohort's last report with the sample-weighted mean, in one write; a later report is round_closed"
    )
    func closesAtCohort() throws {
        let f = try RoundsFixture(RoundConfiguration(cohortSize: 2, overSelection: 1.5, selectionWindow: .seconds(60)))
        let boxes = ["a", "b", "c"].map { f.checkIn($0) }
        let tasks = try boxes.map { try #require($0.get()) }
        #expect(tasks.allSatisfy { $0.kind == .train && $0.round == 1 && $0.modelVersion == 0 && $0.taskID != 0 })
        #expect(Set(tasks.map(\.taskID)).count == 3)
        let first = f.report(tasks[0], as: "a", value: 1, samples: 100)
        #expect(first.get(within: 0.2) == nil, "the ACK waits for the round to close")
        let second = f.report(tasks[1], as: "b", value: 5, samples: 300)
        let ack = try #require(second.get()).get()
        #expect(ack.version == 1 && ack.datasets == 400)
        let firstAck = try #require(first.get()).get()
        #expect(firstAck == ack)
        #expect(f.model.allSatisfy { $0 == 4 }, "(100 x 1 + 300 x 5) / 400: \(f.model)")
        #expect(f.checkpoints.saves == 1)
        #expect(f.store.durable().scalars[RoundCoordinator.roundsClosedKey] == 1)
        let late = try #require(f.report(tasks[2], as: "c", value: 9, samples: 10).get())
        #expect(late.errorCode == .roundClosed)
        // A report repeated after its round closed (its ACK was lost) gets that ACK again.
        let again = try #require(f.report(tasks[1], as: "b", value: 5, samples: 300).get()).get()
        #expect(again == ack && f.store.snapshot().datasets == 400)
        #expect(f.model.allSatisfy { $0 == 4 } && f.store.snapshot().version == 1)
    }

    @Test(
        "At the deadline a round with the minimum closes with what arrived; with fewer it is abandoned, nothing applied, and selected anew"
    )
    func deadlines() throws {
        let f = try RoundsFixture(
            RoundConfiguration(
                cohortSize: 3, overSelection: 1, minimumReports: 2, deadline: .milliseconds(400),
                selectionWindow: .seconds(60)))
        var tasks = try f.tasks(["a", "b", "c"])
        let start = ContinuousClock.now
        let a = f.report(tasks[0], as: "a", value: 2, samples: 10)
        let b = f.report(tasks[1], as: "b", value: 4, samples: 30)
        let ack = try #require(a.get()).get()
        let took = ContinuousClock.now - start
        #expect(took >= .milliseconds(350) && took < .milliseconds(1_400), "closed at the deadline: \(took)")
        let bAck = try #require(b.get()).get()
        #expect(bAck == ack && ack.version == 1)
        #expect(f.model.allSatisfy { abs($0 - 3.5) < 1e-6 })

        // Round 2: one report of the minimum two: abandoned at the deadline.
        tasks = try f.tasks(["a", "b", "c"])
        #expect(tasks.allSatisfy { $0.round == 2 && $0.modelVersion == 1 })
        let lone = try #require(f.report(tasks[0], as: "a", value: 100, samples: 10).get())
        #expect(lone.errorCode == .roundClosed)
        #expect(f.store.snapshot().version == 1 && f.model.allSatisfy { abs($0 - 3.5) < 1e-6 })
        #expect(f.checkpoints.saves == 1, "an abandoned round writes nothing")
        // Selected anew: the same round number, new tasks.
        let again = try f.tasks(["a", "b", "c"])
        #expect(again.allSatisfy { $0.round == 2 && !tasks.map(\.taskID).contains($0.taskID) })
        #expect(f.rounds.statistics.abandoned == 1 && f.rounds.statistics.closed == 1)
    }

    @Test("A task reported twice counts once, and both answers are its ACK; unknown or foreign tasks are unknown_task")
    func duplicatesAndUnknown() throws {
        let f = try RoundsFixture(RoundConfiguration(cohortSize: 2, overSelection: 1, selectionWindow: .seconds(60)))
        let tasks = try f.tasks(["a", "b"])
        let once = f.report(tasks[0], as: "a", value: 1, samples: 10)
        let twice = f.report(tasks[0], as: "a", value: 1, samples: 10)
        #expect(try #require(f.report(tasks[1], as: "a", value: 7, samples: 10).get()).errorCode == .unknownTask)
        var forged = tasks[1]
        forged.taskID &+= 1
        #expect(try #require(f.report(forged, as: "b", value: 7, samples: 10).get()).errorCode == .unknownTask)
        let last = try #require(f.report(tasks[1], as: "b", value: 3, samples: 10).get()).get()
        #expect(last.datasets == 20, "the repeated report counted once")
        let onceAck = try #require(once.get()).get()
        let twiceAck = try #require(twice.get()).get()
        #expect(onceAck == last && twiceAck == last)
        #expect(f.model.allSatisfy { $0 == 2 })
    }

    @Test(
        "A check-in waits; a smaller round opens when the selection window passes; a wait ending during a round is told when to come back"
    )
    func longPollAndWindow() throws {
        let f = try RoundsFixture(
            RoundConfiguration(
                cohortSize: 4, overSelection: 1, minimumReports: 2, deadline: .seconds(3),
                selectionWindow: .milliseconds(300)))
        let start = ContinuousClock.now
        let a = f.checkIn("a")
        let b = f.checkIn("b")
        let task = try #require(a.get())
        let opened = ContinuousClock.now - start
        let other = try #require(b.get())
        #expect(task.kind == .train && other.kind == .train)
        #expect(opened >= .milliseconds(250) && opened < .milliseconds(1_500), "opened after the window: \(opened)")
        let c = try #require(f.checkIn("c", wait: 200).get())
        #expect(c.kind == .comeBack && c.reason == .roundFull)
        #expect(c.retryAfterMilliseconds >= 1_500 && c.retryAfterMilliseconds <= 4_000)
    }

    @Test(
        "After the configured rounds every check-in is told finished; shutdown answers waiting check-ins and abandons the round"
    )
    func finishedAndShutdown() throws {
        let f = try RoundsFixture(
            RoundConfiguration(cohortSize: 1, overSelection: 1, selectionWindow: .seconds(60), totalRounds: 1))
        let t = try #require(f.checkIn("a").get())
        _ = try #require(f.report(t, as: "a", value: 1, samples: 1).get()).get()
        let done = try #require(f.checkIn("b").get())
        #expect(done.kind == .comeBack && done.reason == .finished)

        let g = try RoundsFixture(RoundConfiguration(cohortSize: 2, overSelection: 1, selectionWindow: .seconds(60)))
        let tasks = try g.tasks(["a", "b"])
        let pending = g.report(tasks[0], as: "a", value: 1, samples: 1)
        let waiting = g.checkIn("c")
        #expect(!waiting.isSet)
        g.rounds.shutdown()
        #expect(try #require(waiting.get()).reason == .shuttingDown)
        #expect(try #require(pending.get()).errorCode == .shuttingDown)
        #expect(g.store.snapshot().version == 0)
    }

    @Test("After a restart the rounds go on from the count in the checkpoint, and tasks given before are unknown")
    func restart() throws {
        let disk = InMemoryCheckpointStore()
        let config = RoundConfiguration(cohortSize: 1, overSelection: 2, selectionWindow: .seconds(60))
        var stale: Assignment?
        do {
            let f = try RoundsFixture(config, checkpoints: disk)
            let first = try f.tasks(["a", "b"])
            _ = try #require(f.report(first[0], as: "a", value: 2, samples: 5).get()).get()
            // Round 2 opens; the server "crashes" before anyone reports.
            stale = try f.tasks(["a", "b"])[1]
        }
        let f = try RoundsFixture(config, checkpoints: disk)
        #expect(f.store.snapshot().version == 1)
        let next = try f.tasks(["a", "b"])
        #expect(next.allSatisfy { $0.round == 2 })
        let staleTask = try #require(stale)
        #expect(try #require(f.report(staleTask, as: "b", value: 9, samples: 5).get()).errorCode == .unknownTask)
    }

    @Test("A report of the wrong shapes or with a NaN is refused at once and the round goes on")
    func badReports() throws {
        let f = try RoundsFixture(RoundConfiguration(cohortSize: 1, overSelection: 1, selectionWindow: .seconds(60)))
        let t = try #require(f.checkIn("a").get())
        var bad = constantTensors(1, shapes: RoundsFixture.shapes)
        bad[0].values[0] = .nan
        let box = Box<Result<Acknowledgement, ErrorMessage>>()
        f.rounds.report(Report(taskID: t.taskID, samples: 1, tensors: bad), clientID: "a") { box.set($0) }
        #expect(try #require(box.get()).errorCode == .nonFiniteValue)
        let ack = try #require(f.report(t, as: "a", value: 3, samples: 2).get()).get()
        #expect(ack.version == 1 && f.model.allSatisfy { $0 == 3 })
    }
}

@Suite("Rounds: who is selected")
struct RoundSelectionTests {
    @Test("A selector that leaves clients out never opens a round below the minimum; it opens when enough qualify")
    func restrictiveSelector() throws {
        let f = try RoundsFixture(
            RoundConfiguration(
                cohortSize: 3, overSelection: 1, minimumReports: 2, selectionWindow: .milliseconds(100),
                selector: UniformSelector(required: ["region": "eu"])))
        func checkIn(_ id: String, region: String) -> Box<Assignment> {
            let box = Box<Assignment>()
            _ = f.rounds.checkIn(CheckIn(waitMilliseconds: 5_000, properties: ["region": region]), clientID: id) {
                box.set($0)
            }
            return box
        }
        let others = ["x", "y", "z"].map { checkIn($0, region: "us") }
        let first = checkIn("a", region: "eu")
        #expect(first.get(within: 0.6) == nil, "one qualifying client is below the minimum of 2")
        let second = checkIn("b", region: "eu")
        let tasks = try [first, second].map { try #require($0.get()) }
        #expect(tasks.allSatisfy { $0.kind == .train && $0.round == 1 })
        #expect(others.allSatisfy { !$0.isSet }, "clients outside the selector wait")
    }
}

extension Result where Failure == ErrorMessage {
    var errorCode: ErrorCode? {
        if case .failure(let e) = self { return e.code }
        return nil
    }
}
