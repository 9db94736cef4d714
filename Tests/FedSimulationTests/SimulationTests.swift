import FedServer
import FedSimulation
import Foundation
import Synchronization
import Testing

/// The package's MNIST test set, split in halves: 5,000 images to train, 5,000 to test.
let mnist = Result {
    try SimulationData.load(
        folder: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Data/mnist").path)
}

/// Four IID clients of 1,250 images each and a budget of 6,000 samples: five
/// pushes (four first rounds, then one more while fewer than 6,000 were trained).
func smallConfiguration(_ strategies: [String]) throws -> SimulationConfiguration {
    var c = SimulationConfiguration()
    c.strategies = try strategies.map { try StrategySpec($0) }
    c.clients = 4
    c.budget = 6000
    c.evalPoints = 3
    c.centralized = false
    return c
}

/// Collects progress events from the simulation's thread.
final class EventLog: Sendable {
    private let events = Mutex<[SimulationEvent]>([])
    func append(_ e: SimulationEvent) { events.withLock { $0.append(e) } }
    var all: [SimulationEvent] { events.withLock { $0 } }
}

@Suite("Simulation through the public API")
struct SimulationTests {
    @Test("A small federation learns, with the pushes, versions and curve points configured")
    func smallFederation() async throws {
        let data = try mnist.get()
        #expect(data.train.count == 5000 && data.test.count == 5000)
        let log = EventLog()
        let report = try await Simulation(try smallConfiguration(["running-average", "fedbuff/k=2"]), data: data)
            .run { log.append($0) }
        #expect(report.results.count == 2)
        #expect(report.centralized.isEmpty)
        for r in report.results {
            // Ten classes: chance is 0.1.
            #expect(r.finalAccuracy > 0.6, "\(r.strategy): accuracy \(r.finalAccuracy)")
            #expect(r.pushes == 5 && r.rejected == 0, "\(r.strategy): \(r.pushes) pushes, \(r.rejected) refused")
            #expect(r.curve.count == 3)
            #expect(r.curve.last?.samples == 5 * 1250)
            #expect(r.finalAccuracy == r.curve.last?.accuracy)
            // Five pushes of the 784-200-200-10 MLP's 199,210 Float32 weights, uncompressed.
            #expect(r.bytesSent > 5 * 4 * 199_210, "\(r.bytesSent) B sent")
            #expect(r.bytes == r.bytesSent + r.bytesReceived)
            #expect(r.scenario == "iid" && r.encoding == "fp32" && r.seed == 1)
        }
        // Running average: a version per push; FedBuff with k=2: one per two pushes.
        #expect(report.results.map(\.strategy) == ["running-average", "fedbuff/k=2"])
        #expect(report.results.map(\.versions) == [5, 2])
        let events = log.all
        #expect(events.filter { if case .runStarted = $0 { true } else { false } }.count == 2)
        #expect(events.filter { if case .curvePoint = $0 { true } else { false } }.count == 6)
        #expect(events.first?.description == "seed 1: running-average")
    }

    @Test("The same seed gives the same figures; another seed, others; the centralized reference is reported")
    func deterministic() throws {
        var c = try smallConfiguration(["fedasync"])
        c.budget = 2000
        c.evalPoints = 1
        c.seeds = 2
        c.centralized = true
        let data = try mnist.get()
        let a = try Simulation(c, data: data).runBlocking()
        let b = try Simulation(c, data: data).runBlocking()
        #expect(a.results.count == 2 && a.centralized.count == 2)
        #expect(a.centralized == b.centralized)
        #expect(a.centralized.allSatisfy { $0 > 0.5 }, "\(a.centralized)")
        for (x, y) in zip(a.results, b.results) {
            var y = y
            y.wallSeconds = x.wallSeconds
            y.wallTime = x.wallTime
            #expect(x == y)
        }
        #expect(a.results[0].seed == 1 && a.results[1].seed == 2)
        // Client speeds are drawn from the seed.
        #expect(a.results[0].virtualSeconds != a.results[1].virtualSeconds)
        #expect(a.results.allSatisfy { $0.pushes == 2 && $0.curve.count == 1 })
        #expect(a.table.contains("vs central"))
    }

    @Test("Cancelling the task stops a long simulation at its next fetch or push", .timeLimit(.minutes(1)))
    func cancellation() async throws {
        var c = try smallConfiguration(["running-average"])
        c.budget = 100_000_000
        let data = try mnist.get()
        let (started, signal) = AsyncStream<Void>.makeStream()
        let task = Task {
            try await Simulation(c, data: data).run { event in
                if case .runStarted = event { signal.finish() }
            }
        }
        for await _ in started {}
        // The run is under way: its budget would take hours.
        try await Task.sleep(for: .milliseconds(200))
        let clock = ContinuousClock()
        let cancelledAt = clock.now
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        // Generous: the simulation stops within one client's round (1,250
        // samples), but this test resumes on the shared pool, which other
        // tests' blocking waits may hold for seconds under a full run.
        #expect(clock.now - cancelledAt < .seconds(30))
    }

    @Test("A count out of range is refused before anything runs, naming it")
    func validation() async throws {
        var c = SimulationConfiguration()
        c.clients = 0
        #expect(throws: SimulationError.self) { try c.validate() }
        do {
            _ = try await Simulation(c, data: try mnist.get()).run()
            Issue.record("a configuration of 0 clients ran")
        } catch let e as SimulationError {
            #expect(e.description.contains("clients 0"))
        }
    }

    @Test("Partitions and encodings parse as fed simulate takes them")
    func parsing() {
        #expect(Partition("iid") == .iid)
        #expect(Partition("dirichlet:0.3") == .dirichlet(0.3))
        #expect(Partition("shards:2") == .shards(2))
        #expect(Partition("dirichlet:0") == nil && Partition("shards:0") == nil && Partition("iid:1") == nil)
        #expect(Partition("dirichlet:0.3")?.description == "dirichlet:0.3")
        #expect(EncodingSetting("int8-delta,fetch=fp16")?.description == "int8-delta,fetch=fp16")
        #expect(EncodingSetting("fp32") == EncodingSetting())
        #expect(EncodingSetting("fp32,fetch=nope") == nil)
    }
}
