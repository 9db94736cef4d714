import ArgumentParser
import FedModel
import FedSecureAggregation
import Foundation

extension BenchCommand {
    struct SecAgg: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "secagg",
            abstract: "SecAgg+'s failure probability for a cohort of n, k neighbours, threshold t and a drop-out rate.",
            discussion: """
                Each client shares its secrets with, and masks against, its k neighbours on a random \
                Harary graph (Bell et al. 2020); k = n - 1 is the original SecAgg (Bonawitz et al. 2017). \
                Every client independently fails to answer the unmasking round with probability \
                --dropout. Prints:
                - correctness: the probability that one client has fewer than t answering neighbours \
                (an exact binomial tail, P(Bin(k, 1 - dropout) < t)), and the union bound over n clients \
                on the probability that the round cannot be unmasked (for k = n - 1 also the exact \
                figure, P(Bin(n, 1 - dropout) <= t));
                - privacy: 0 for an honest-but-curious server with no colluding clients (a client never \
                reveals both shares of one neighbour); with --colluding G, the union bound on some \
                client having t colluding neighbours; for an active server without the consistency \
                round, the bound for 2t - k colluding neighbours (1 when 2t <= k);
                - a Monte Carlo check on real graphs (--trials, --seed): rounds with a client short of \
                t, rounds whose answering clients are disconnected (the server then learns each \
                component's sum), with 95% upper bounds;
                - the protocol's own steps on a cohort of n (Participant, CohortUnmasking): the CPU \
                time of one client's steps for an update of --dimension weights in a --bits ring \
                (shares and their encryption, opening its inbox, encoding, masks, revealing), its \
                messages' bytes against a raw Float32 push, and the server's unmasking of the sum \
                with a fraction --dropout of the cohort gone after sharing their keys, measured. \
                Build with -c release for meaningful times.

                Example: fed bench secagg --n 100 --k 20 --t 10 --dropout 0.1
                """)

        @Option(name: .customLong("n"), help: "Clients in the cohort (at least 2).") var participants: Int
        @Option(name: .customLong("k"), help: "Neighbours of each client, 1...n-1 (n-1: the original SecAgg).")
        var neighbours: Int
        @Option(name: .customLong("t"), help: "Threshold: shares needed to rebuild a secret, 1...k.") var threshold: Int
        @Option(help: "Probability that a client does not answer the unmasking round, in [0, 1].") var dropout: Double
        @Option(help: "Fraction of clients colluding with the server, in [0, 1].") var colluding = 0.0
        @Option(help: "Monte Carlo trials (0 for none).") var trials = 10_000
        @Option(help: "Seed of the Monte Carlo graphs and drop-outs.") var seed: UInt64 = 1
        @Option(help: "Weights of the update whose cryptography is timed (the MLP's 199,210; 0: no timing).")
        var dimension = 199_210
        @Option(help: "The ring's width for the cost measurement, 2...32 (16: the low-bit mode).") var bits = 32

        func validate() throws {
            guard trials >= 0 else { throw ValidationError("--trials must be at least 0") }
            guard dimension >= 0 else { throw ValidationError("--dimension must be at least 0") }
            guard (2...32).contains(bits), (1 << (bits - 1)) - 1 >= participants else {
                throw ValidationError("--bits must be 2...32 with room for n summands (2^(bits-1) - 1 >= n)")
            }
            do {
                _ = try analysis()
            } catch let error as FailureProbabilityError {
                throw ValidationError(error.message)
            }
        }

        func analysis() throws -> FailureProbability {
            try FailureProbability(
                participants: participants, neighbours: neighbours, threshold: threshold, dropoutRate: dropout,
                corruptionRate: colluding)
        }

        func run() throws {
            let a = try analysis()
            let n = participants
            let k = neighbours
            let t = threshold
            let graph = k == n - 1 ? "complete graph: the original SecAgg" : "random Harary graph: SecAgg+"
            print("SecAgg+ failure probability: n \(n), k \(k), t \(t), drop-out \(dropout) (\(graph))")
            print(
                "correctness: P(a client has < t answering neighbours) = P(Bin(\(k), \(1 - dropout)) < \(t)) = "
                    + sci(a.shortfallProbability))
            print("  P(the round cannot be unmasked) <= \(sci(a.failureUpperBound)) (union bound over \(n) clients)")
            if let exact = a.completeGraphFailure {
                print("  complete graph, exactly: P(at most t of the n clients answer) = \(sci(exact))")
            }
            print("privacy, honest-but-curious server, no colluding clients: 0 (no client reveals both shares of one)")
            print(
                "privacy, a fraction \(colluding) of clients colluding: P(some client has >= t colluding neighbours) <= "
                    + sci(a.collusionUpperBound))
            let active = 2 * t - k
            print(
                "active server without the consistency round: "
                    + (active <= 0
                        ? "1 (2t <= k: it can obtain both shares of a client; t must exceed k/2)"
                        : "P(some client has >= 2t - k = \(active) colluding neighbours) <= \(sci(a.activeServerUpperBound))")
            )
            if trials > 0 { monteCarlo(a) }
            if dimension > 0 {
                try SecAggCost(
                    dimension: dimension, participants: n, neighbours: k, threshold: t, dropout: dropout, bits: bits
                ).run()
            }
        }

        private func monteCarlo(_ a: FailureProbability) {
            let clock = ContinuousClock()
            let start = clock.now
            var generator = SeededGenerator(seed: seed)
            let simulation = FailureSimulation.run(a, trials: trials, using: &generator)
            let elapsed = clock.now - start
            let short = FailureSimulation.upper95(events: simulation.shortfalls, trials: trials)
            let split = FailureSimulation.upper95(events: simulation.disconnected, trials: trials)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            print("Monte Carlo (seed \(seed), \(trials) trials, \(String(format: "%.1f", seconds)) s):")
            print(
                "  a client short of t answering neighbours: \(simulation.shortfalls) trials (95% upper bound \(sci(short)))"
            )
            print(
                "  answering clients disconnected: \(simulation.disconnected) trials (95% upper bound \(sci(split))); "
                    + "fewest answering clients in one component: \(simulation.smallestComponent)")
        }

        private func sci(_ value: Double) -> String {
            value == 0 ? "0" : String(format: "%.3g", value)
        }
    }
}
