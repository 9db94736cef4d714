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
            // The centralized reference needs the sample budget itself: it is trained with the runs without privacy.
            c.centralized = false
            print(
                "differential privacy: \(privacy.summary); \(rounds) rounds of an expected \(base.cohortSize) clients (--budget / (cohort x \(Int(perClient.rounded())) samples x \(base.localEpochs) epochs))"
            )
            try c.validate()
            if let secagg {
                results += try runDistributed(c, data: data, secagg: secagg)
                continue
            }
            let report = try Simulation(c, data: data).runBlocking { print($0) }
            results += report.results
        }
        if sweep != nil {
            let c = base
            print("the same runs without differential privacy:")
            let report = try Simulation(c, data: data).runBlocking { print($0) }
            results += report.results
            centralized = report.centralized
        }
        return SimulationReport(results: results, centralized: centralized)
    }

    /// `--dp` with `--secagg`: the runs in which the clients add the noise
    /// under secure aggregation, then the same runs with the server adding
    /// it (the same privacy, the same seeds), and the paired difference.
    private func runDistributed(_ c: SimulationConfiguration, data: SimulationData, secagg: String) throws
        -> [SimulationResult]
    {
        var secure = c
        do throws(SecureAggregationSpecError) {
            secure.secureAggregation = try SecureAggregation(spec: secagg)
        } catch {
            throw ValidationError("--secagg \(secagg): \(error)")
        }
        secure.secureDropouts = try secureDropouts()
        try secure.validate()
        let privacy = c.privacy!
        let m = privacy.minimumInputs(drawn: c.cohortSize)
        print(
            "distributed noise: each client of a secure round adds its share, so that \(m) inputs of an expected \(c.cohortSize) carry the noise (survivors \(privacy.survivors)); the server sees only the noised sum"
        )
        let distributed = try Simulation(secure, data: data).runBlocking { print($0) }
        print("the same runs with the server adding the noise (no secure aggregation):")
        let central = try Simulation(c, data: data).runBlocking { print($0) }
        print(Self.pairedSecure(distributed.results, against: central.results))
        return distributed.results + central.results
    }
}
