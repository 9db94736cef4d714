import FedServer
import FedSimulation
import Foundation
import Testing

@Suite("Simulation with secure aggregation (the real protocol in virtual time)")
struct SecureSimulationTests {
    /// Ten IID clients of 500 images, secure rounds of 5 (t 3 of k 4), a budget of 7,500 samples.
    func secureConfiguration(_ strategy: String) throws -> SimulationConfiguration {
        var c = checkInConfiguration()
        c.strategies = [try StrategySpec(strategy)]
        c.secureAggregation = SecureAggregation(threshold: 3, neighbours: 4)
        try c.validate()
        return c
    }

    @Test("Synchronous secure rounds: one round at a time, none abandoned, the budget reached, the model learns")
    func rounds() throws {
        let report = try Simulation(try secureConfiguration("running-average"), data: try mnist.get()).runBlocking()
        let r = try #require(report.results.first)
        #expect(r.strategy == "fedavg-rounds" && r.scenario.contains("secagg 32-bit"), "\(r.strategy) \(r.scenario)")
        let f = try #require(r.rounds)
        // The run ends at the first ACK of the round that reaches the budget.
        #expect(f.completed == 3 && f.abandoned == 0 && f.tasks == 15 && f.applied >= 11, "\(f)")
        #expect(r.curve.last?.samples == 7500)
        #expect(r.finalAccuracy > 0.6, "accuracy \(r.finalAccuracy)")
    }

    @Test(
        "fedbuff under secure aggregation runs in cohorts, two at once: the ten clients form two cohorts from the same version, so the budget takes about half the virtual time of rounds one at a time"
    )
    func cohorts() throws {
        let data = try mnist.get()
        let rounds = try #require(
            try Simulation(try secureConfiguration("running-average"), data: data).runBlocking().results.first)
        var c = try secureConfiguration("fedbuff/s=constant")
        c.budget = 10_000
        let cohorts = try #require(try Simulation(c, data: data).runBlocking().results.first)
        #expect(cohorts.strategy == "fedbuff/s=constant")
        let f = try #require(cohorts.rounds)
        // 10,000 samples: four cohorts of 5 x 500, in about two cohort-times (two run at once).
        #expect(f.completed == 4 && f.abandoned == 0 && f.tasks >= 20 && f.applied >= 16, "\(f)")
        #expect(cohorts.curve.last?.samples == 10_000)
        #expect(cohorts.versions == 4)
        let roundsTime = try #require(rounds.curve.last?.virtualSeconds)
        let cohortsTime = try #require(cohorts.curve.last?.virtualSeconds)
        // Three rounds one after another against four cohorts two at a time.
        #expect(cohortsTime < roundsTime, "cohorts \(cohortsTime) s, rounds \(roundsTime) s")
        #expect(cohorts.finalAccuracy > 0.6, "accuracy \(cohorts.finalAccuracy)")
    }
}
