import Dispatch
import FedCodec
import FedServer
import FedSimulation
import Foundation
import Synchronization
import Testing

/// Ten IID clients of 500 images, rounds of 5 through check-in, a budget of 7,500 applied samples.
func checkInConfiguration() -> SimulationConfiguration {
    var c = SimulationConfiguration()
    c.strategies = [try! StrategySpec("running-average")]
    c.clients = 10
    c.syncFraction = 0.5
    c.checkIn = true
    c.budget = 7500
    c.evalPoints = 2
    c.centralized = false
    return c
}

/// Values gathered from other threads.
final class Gathered<T: Sendable>: Sendable {
    let items: Mutex<T>
    init(_ initial: T) { items = Mutex(initial) }
    var value: T { items.withLock { $0 } }
}

@Suite("The virtual clock of rounds")
struct VirtualRoundClockTests {
    @Test("Actions run in order of their instants, ties in order scheduled, only once due; now is each one's instant")
    func order() {
        let clock = VirtualRoundClock()
        let queue = DispatchQueue(label: "test.rounds")
        let ran = Gathered<[String]>([])
        let start = clock.now()
        func at(_ ms: Int, _ name: String, then: (@Sendable () -> Void)? = nil) {
            clock.run(at: start + .milliseconds(ms), on: queue) {
                dispatchPrecondition(condition: .onQueue(queue))
                let elapsed = clock.now().uptimeNanoseconds - start.uptimeNanoseconds
                ran.items.withLock { $0.append("\(name)@\(elapsed / 1_000_000)") }
                then?()
            }
        }
        at(300, "c")
        at(100, "a")
        at(200, "b1")
        // An action that schedules another, already due, and one later.
        at(
            200, "b2",
            then: {
                clock.run(at: start + .milliseconds(150), on: queue) { ran.items.withLock { $0.append("late") } }
                clock.run(at: start + .milliseconds(250), on: queue) { ran.items.withLock { $0.append("b3") } }
            })
        #expect(clock.elapsed == .zero && clock.pending == 4)
        #expect(clock.nextDeadline == .milliseconds(100))

        clock.advance(to: .milliseconds(99))
        #expect(ran.value.isEmpty)
        #expect(clock.elapsed == .milliseconds(99))

        clock.advance(to: .milliseconds(200))
        #expect(ran.value == ["a@100", "b1@200", "b2@200", "late"])
        #expect(clock.nextDeadline == .milliseconds(250) && clock.pending == 2)

        clock.advance(by: .milliseconds(100))
        #expect(ran.value == ["a@100", "b1@200", "b2@200", "late", "b3", "c@300"])
        #expect(clock.elapsed == .milliseconds(300) && clock.pending == 0 && clock.nextDeadline == nil)

        // Never back.
        clock.advance(to: .milliseconds(10))
        #expect(clock.elapsed == .milliseconds(300))
    }

    @Test("A server's rounds keep their waits and deadlines on the virtual clock")
    func serverOnVirtualClock() throws {
        let clock = VirtualRoundClock()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fedclock-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let configuration = ServerConfiguration(
            network: .init(port: 0, idleTimeout: .seconds(3600)),
            storage: .init(checkpointPath: dir.appendingPathComponent("c.fedk").path),
            rounds: RoundConfiguration(
                cohortSize: 2, overSelection: 1, minimumReports: 1, deadline: .seconds(600),
                selectionWindow: .seconds(5), maxWait: .seconds(30), clock: clock, seed: 1))
        let server = try FederatedServer.start(
            configuration: configuration, initial: [Tensor(zeros: [2])], threads: 1)
        defer { try? server.shutdown(grace: .milliseconds(100)) }
        let answers = Gathered<[String: Assignment]>([:])
        func checkIn(_ id: String, wait: UInt32) {
            _ = server.checkIn(CheckIn(waitMilliseconds: wait), clientID: id) { a in
                answers.items.withLock { $0[id] = a }
            }
            server.settleRounds()
        }
        checkIn("a", wait: 10_000)
        // Real time passes; virtual time does not: the wait has not ended.
        Thread.sleep(forTimeInterval: 0.2)
        server.settleRounds()
        #expect(answers.value.isEmpty)
        // The selection window (5 s) passes with 1 client, the minimum: a round of one opens.
        clock.advance(to: .seconds(5))
        let task = try #require(answers.value["a"])
        #expect(task.kind == .train && task.deadlineMilliseconds == 600_000)
        // Another client waits 10 s: told at its wait's end (15 s) to come back by the deadline (605 s).
        checkIn("b", wait: 10_000)
        clock.advance(to: .seconds(14))
        #expect(answers.value["b"] == nil)
        clock.advance(to: .seconds(15))
        let comeBack = try #require(answers.value["b"])
        #expect(comeBack.kind == .comeBack && comeBack.reason == .roundFull)
        #expect((590_000...591_000).contains(comeBack.retryAfterMilliseconds))
        // No report: at the virtual deadline the round is abandoned.
        #expect(server.roundStatistics?.closed == 0 && server.roundStatistics?.abandoned == 0)
        clock.advance(to: .seconds(604))
        #expect(server.roundStatistics?.abandoned == 0)
        clock.advance(to: .seconds(605))
        #expect(server.roundStatistics?.abandoned == 1 && server.roundStatistics?.tasksGiven == 1)
    }
}

@Suite("Simulation rounds through check-in")
struct CheckInSimulationTests {
    @Test("Drop-outs and over-selection: rounds close, the budget is applied, the figures add up, a seed repeats")
    func dropoutsAndOverSelection() throws {
        var c = checkInConfiguration()
        c.overSelection = 1.4
        c.dropouts = 0.3
        let data = try mnist.get()
        let report = try Simulation(c, data: data).runBlocking()
        let r = try #require(report.results.first)
        #expect(report.results.count == 1 && r.strategy == "fedavg-rounds")
        #expect(r.scenario == "iid, sync 0.5, check-in, over-selection 1.4, 30% dropouts")
        let f = try #require(r.rounds)
        // Rounds of 5 reports of 500 samples: 7,500 applied samples take at least 3 rounds.
        #expect(f.completed >= 3, "\(f)")
        #expect(f.applied * 500 >= c.budget && (f.applied - 5) * 500 < c.budget, "\(f)")
        #expect(r.curve.last?.samples == f.applied * 500)
        // 7 selected a round, about 30% of them drop out.
        #expect(f.dropped > 0 && f.tasks >= f.applied + f.dropped + f.late, "\(f)")
        #expect(f.samplesTrained == f.tasks * 500)
        #expect(f.meanSeconds > 1 && f.p90Seconds >= f.meanSeconds && f.p90Seconds <= f.deadlineSeconds, "\(f)")
        #expect(r.versions == UInt64(f.completed))
        #expect(r.pushes >= f.applied && r.rejected == 0)
        #expect(r.finalAccuracy > 0.6, "accuracy \(r.finalAccuracy)")
        // Check-ins and reports are counted: at least the reports' weights went up.
        #expect(r.bytesSent > r.pushes * 4 * 199_210)

        #expect(report.summary.contains("rounds through check-in"))
        #expect(report.roundsCSV.hasPrefix("strategy,scenario,seed,final_accuracy,rounds_completed,rounds_abandoned"))
        #expect(report.roundsCSV.split(separator: "\n").count == 2)
        let json = try JSONSerialization.jsonObject(with: report.summaryJSON()) as? [String: Any]
        let run = (json?["runs"] as? [[String: Any]])?.first
        #expect((run?["rounds"] as? [String: Any])?["completed"] as? Int == f.completed)

        // The same seed: the same rounds, drop-outs and accuracy.
        var again = try #require(try Simulation(c, data: data).runBlocking().results.first)
        again.wallSeconds = r.wallSeconds
        again.wallTime = r.wallTime
        #expect(again == r)
    }

    @Test("Without drop-outs or over-selection every task is applied, no round is abandoned")
    func plain() throws {
        let report = try Simulation(checkInConfiguration(), data: try mnist.get()).runBlocking()
        let f = try #require(report.results.first?.rounds)
        #expect(f.abandoned == 0 && f.dropped == 0 && f.late == 0, "\(f)")
        #expect(f.tasks == f.applied && f.completed == 3 && f.applied == 15, "\(f)")
    }

    @Test("Rounds that miss their minimum at the deadline are abandoned, counted and selected again")
    func abandoned() throws {
        var c = checkInConfiguration()
        // Every one of the 5 must report: a drop-out abandons its round.
        c.dropouts = 0.3
        c.minimumReports = 5
        let report = try Simulation(c, data: try mnist.get()).runBlocking()
        let f = try #require(report.results.first?.rounds)
        #expect(f.abandoned > 0 && f.completed == 3, "\(f)")
        #expect(f.applied == 15 && f.tasks == f.applied + f.dropped + f.late, "\(f)")
        #expect(report.roundsTable.contains("abandoned"))
    }

    @Test("A deadline too short for any report ends the run with an error, not a hang", .timeLimit(.minutes(2)))
    func tooShort() throws {
        var c = checkInConfiguration()
        // A task takes at least two messages, 1 s: every round is abandoned.
        c.roundDeadline = 0.5
        do {
            _ = try Simulation(c, data: try mnist.get()).runBlocking()
            Issue.record("a run whose every round is abandoned ended")
        } catch let e as SimulationError {
            #expect(e.description.contains("in a row were abandoned"), "\(e)")
        }
    }

    @Test("Check-in needs synchronous rounds and lossless reports; its ranges are checked")
    func validation() {
        var c = checkInConfiguration()
        c.syncFraction = nil
        #expect(throws: SimulationError.self) { try c.validate() }
        c = checkInConfiguration()
        c.overSelection = 0.9
        #expect(throws: SimulationError.self) { try c.validate() }
        c = checkInConfiguration()
        c.dropouts = 1
        #expect(throws: SimulationError.self) { try c.validate() }
        c = checkInConfiguration()
        c.minimumReports = 6
        #expect(throws: SimulationError.self) { try c.validate() }
        c = checkInConfiguration()
        c.encodings = [EncodingSetting("int8")!]
        #expect(throws: SimulationError.self) { try c.validate() }
        #expect(throws: Never.self) { try checkInConfiguration().validate() }
    }
}
