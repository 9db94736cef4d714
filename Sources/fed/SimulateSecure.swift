import ArgumentParser
import FedServer
import FedSimulation
import Foundation

extension SimulateCommand {
    /// `--secagg`: the runs with secure aggregation in the server's rounds
    /// (real keys, shares, masks and messages on every client), then the same
    /// runs without it on the same seeds, and the paired difference of their
    /// final accuracy.
    func runSecure(_ base: SimulationConfiguration, data: SimulationData, spec: String) throws -> SimulationReport {
        var c = base
        do throws(SecureAggregationSpecError) {
            c.secureAggregation = try SecureAggregation(spec: spec)
        } catch {
            throw ValidationError("--secagg \(spec): \(error)")
        }
        c.secureDropouts = try secureDropouts()
        c.cohortsInFlight = cohortsInFlight ?? 2
        c.centralized = false
        try c.validate()
        let n = Int((Double(c.cohortSize) * c.overSelection).rounded(.up))
        let a = c.secureAggregation!
        print(
            "secure aggregation: \(n) clients selected a round, k \(a.neighbours(cohort: n)), t \(a.threshold(cohort: n)), a \(a.bits)-bit ring, updates clipped to L2 norm \(a.clip)"
        )
        let secure = try Simulation(c, data: data).runBlocking { print($0) }
        print("the same runs without secure aggregation:")
        var plain = base
        plain.secureDropouts = [:]
        let reference = try Simulation(plain, data: data).runBlocking { print($0) }
        print(Self.pairedSecure(secure.results, against: reference.results))
        return SimulationReport(results: secure.results + reference.results, centralized: reference.centralized)
    }

    /// `--dropout-after STAGE:F,...`.
    func secureDropouts() throws -> [SimulationConfiguration.SecureStage: Double] {
        guard let dropoutAfter else { return [:] }
        var out: [SimulationConfiguration.SecureStage: Double] = [:]
        for item in dropoutAfter.split(separator: ",") {
            let parts = item.split(separator: ":").map(String.init)
            guard parts.count == 2, let stage = SimulationConfiguration.SecureStage(rawValue: parts[0]),
                let f = Double(parts[1]), f >= 0, f <= 1
            else {
                throw ValidationError("--dropout-after \(item): give STAGE:F, STAGE keys, shares or input, F in 0...1")
            }
            out[stage] = f
        }
        return out
    }

    /// Seed by seed, the secure run's final accuracy minus the plain run's
    /// (points), their mean and 95% interval (Student's t).
    static func pairedSecure(_ secure: [SimulationResult], against plain: [SimulationResult]) -> String {
        // FedBuff's cohorts are paired with the server's FedAvg rounds on the same seed.
        let d = secure.compactMap { s in
            (plain.first { $0.seed == s.seed && $0.strategy == s.strategy } ?? plain.first { $0.seed == s.seed }).map {
                (s.finalAccuracy - $0.finalAccuracy) * 100
            }
        }
        guard !d.isEmpty else { return "no paired runs" }
        let n = Double(d.count)
        let mean = d.reduce(0, +) / n
        let sd = (d.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / max(n - 1, 1)).squareRoot()
        let half = d.count > 1 ? SimulationReport.tCritical95(d.count - 1) * sd / n.squareRoot() : .nan
        let perSeed = d.map { String(format: "%+.2f", $0) }.joined(separator: " ")
        return String(
            format:
                "secure aggregation against the same runs without it, paired by seed (final accuracy, points): %d seeds, mean %+.2f, 95%% interval %+.2f..%+.2f; per seed: %@",
            d.count, mean, mean - half, mean + half, perSeed)
    }
}
