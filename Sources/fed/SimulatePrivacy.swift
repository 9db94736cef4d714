import ArgumentParser
import FedPrivacy
import FedServer
import FedSimulation

extension SimulateCommand {
    /// `--dp` (and `--dp-sweep`): runs with differential privacy in the
    /// server's rounds, each target's noise calibrated to the rounds the
    /// budget makes; with a sweep, one more set of runs without privacy.
    func runPrivate(_ base: SimulationConfiguration, data: SimulationData, spec: String) throws -> SimulationReport {
        let perClient = Double(data.train.count) / Double(base.clients)
        let rounds = UInt64(
            max(1, (Double(base.budget) / (Double(base.cohortSize) * perClient * Double(base.localEpochs))).rounded()))
        let withPopulation = spec.contains("population=") ? spec : spec + ",population=\(base.clients)"
        var specs: [(String, Double?)] = [(withPopulation, nil)]
        if let targets = sweep { specs = targets.map { (withPopulation + ",target-epsilon=\($0)", $0) } }
        var results: [SimulationResult] = []
        var centralized: [Double] = []
        for (text, _) in specs {
            var c = base
            let privacy: DifferentialPrivacy
            do throws(PrivacyError) {
                privacy = try DifferentialPrivacy(spec: text, cohort: base.cohortSize, rounds: rounds)
            } catch {
                throw ValidationError("--dp \(text): \(error)")
            }
            c.privacy = privacy
            if privacy.targetEpsilon != nil {
                // The privacy budget ends the run (after the calibrated rounds), not the sample budget.
                c.budget = base.budget * 2
            }
            c.centralized = base.centralized && centralized.isEmpty
            print(
                "differential privacy: \(privacy.summary); \(rounds) rounds of an expected \(base.cohortSize) clients (--budget / (cohort x \(Int(perClient.rounded())) samples x \(base.localEpochs) epochs))"
            )
            try c.validate()
            let report = try Simulation(c, data: data).runBlocking { print($0) }
            results += report.results
            centralized += report.centralized
        }
        if sweep != nil {
            var c = base
            c.centralized = false
            print("the same runs without differential privacy:")
            let report = try Simulation(c, data: data).runBlocking { print($0) }
            results += report.results
        }
        return SimulationReport(results: results, centralized: centralized)
    }
}
