import FedSecureAggregation
import Foundation
import FedTestSupport
import Testing

/// P(X <= x), X ~ Bin(n, p), by the direct sum with binomial coefficients built by multiplication.
func directBinomialCDF(_ x: Int, _ n: Int, _ p: Double) -> Double {
    var total = 0.0
    var choose = 1.0
    for i in 0...max(0, min(x, n)) {
        if i > 0 { choose = choose * Double(n - i + 1) / Double(i) }
        total += choose * pow(p, Double(i)) * pow(1 - p, Double(n - i))
    }
    return x < 0 ? 0 : total
}

/// P(X >= x), X ~ Bin(n, p), by the direct sum from x up.
func directBinomialUpperTail(_ x: Int, _ n: Int, _ p: Double) -> Double {
    guard x <= n else { return 0 }
    return (max(0, x)...n).reduce(0.0) { total, i in
        let choose = (0..<i).reduce(1.0) { $0 * Double(n - $1) / Double($1 + 1) }
        return total + choose * pow(p, Double(i)) * pow(1 - p, Double(n - i))
    }
}

@Suite("SecAgg+ failure probability")
struct FailureProbabilityTests {
    @Test(
        "Binomial tails in log space agree with the direct sum, and the two tails add to 1",
        arguments: [(20, 0.9, 9), (20, 0.5, 10), (99, 0.7, 49), (40, 0.01, 3), (10, 0.85, 4), (5, 0.3, 0)])
    func binomialTails(trials: Int, probability: Double, x: Int) {
        let cdf = FailureProbability.binomialCDF(x, trials: trials, probability: probability)
        let direct = directBinomialCDF(x, trials, probability)
        #expect(abs(cdf - direct) <= 1e-12 * max(1, direct) + 1e-300, "\(cdf) against \(direct)")
        #expect(abs(cdf / direct - 1) < 1e-9)
        let upper = FailureProbability.binomialUpperTail(x + 1, trials: trials, probability: probability)
        #expect(abs(cdf + upper - 1) < 1e-12)
    }

    @Test("Point masses: no drop-outs never fall short, all drop-outs always do")
    func pointMasses() throws {
        let none = try FailureProbability(participants: 10, neighbours: 4, threshold: 4, dropoutRate: 0)
        #expect(none.shortfallProbability == 0 && none.failureUpperBound == 0)
        let all = try FailureProbability(participants: 10, neighbours: 4, threshold: 1, dropoutRate: 1)
        #expect(all.shortfallProbability == 1 && all.failureUpperBound == 1)
        #expect(none.collusionUpperBound == 0)
    }

    @Test("The bounds: union over n, collusion needs t colluders, an active server needs 2t - k (1 when 2t <= k)")
    func bounds() throws {
        let plus = try FailureProbability(
            participants: 100, neighbours: 20, threshold: 10, dropoutRate: 0.1, corruptionRate: 0.05)
        #expect(abs(plus.failureUpperBound / (100 * directBinomialCDF(9, 20, 0.9)) - 1) < 1e-9)
        #expect(abs(plus.collusionUpperBound / (100 * directBinomialUpperTail(10, 20, 0.05)) - 1) < 1e-9)
        #expect(plus.activeServerUpperBound == 1)
        let original = try FailureProbability(
            participants: 100, neighbours: 99, threshold: 60, dropoutRate: 0.3, corruptionRate: 0.05)
        #expect(abs(original.activeServerUpperBound / (100 * directBinomialUpperTail(21, 99, 0.05)) - 1) < 1e-9)
        let honest = try FailureProbability(participants: 100, neighbours: 99, threshold: 60, dropoutRate: 0.3)
        #expect(honest.activeServerUpperBound == 0)
    }

    @Test(
        "Parameters out of range are refused",
        arguments: [(1, 1, 1, 0.1), (10, 10, 2, 0.1), (10, 4, 5, 0.1), (10, 4, 0, 0.1), (10, 4, 2, 1.5)])
    func refusals(n: Int, k: Int, t: Int, dropout: Double) {
        #expect(throws: FailureProbabilityError.self) {
            try FailureProbability(participants: n, neighbours: k, threshold: t, dropoutRate: dropout)
        }
    }

    @Test(
        "Harary graphs: symmetric, no self-loops, degree k (k + 1 for odd k and odd n), complete at k = n - 1",
        arguments: [(2, 1), (10, 4), (10, 9), (11, 10), (11, 3), (12, 5), (100, 20), (7, 6)])
    func hararyGraph(n: Int, k: Int) {
        var generator = SplitMix64(seed: UInt64(n * 100 + k))
        let graph = NeighbourGraph.harary(participants: n, degree: k, using: &generator)
        #expect(graph.count == n)
        for (node, list) in graph.neighbours.enumerated() {
            #expect(!list.contains(node))
            #expect(list == list.sorted() && Set(list).count == list.count)
            #expect(list.count == (k % 2 == 1 && n % 2 == 1 ? k + 1 : k))
            for other in list { #expect(graph.neighbours[other].contains(node)) }
        }
        // Connected: the ring itself is in the graph.
        var seen: Set<Int> = [0]
        var stack = [0]
        while let node = stack.popLast() {
            for next in graph.neighbours[node] where seen.insert(next).inserted { stack.append(next) }
        }
        #expect(seen.count == n)
    }

    @Test(
        "Monte Carlo on Harary graphs: short clients per trial average n · P(Bin(k, 1 - δ) < t); at k = n - 1 rounds fail at P(Bin(n, 1 - δ) <= t)",
        arguments: [(20, 10, 5, 0.15), (30, 6, 4, 0.3), (50, 49, 30, 0.35), (20, 19, 12, 0.35)])
    func monteCarloAgrees(n: Int, k: Int, t: Int, dropout: Double) throws {
        let analysis = try FailureProbability(participants: n, neighbours: k, threshold: t, dropoutRate: dropout)
        var generator = SplitMix64(seed: 3)
        let trials = 20_000
        let simulation = FailureSimulation.run(analysis, trials: trials, using: &generator)
        let expected = Double(n) * analysis.shortfallProbability
        let observed = Double(simulation.shortParticipants) / Double(trials)
        // The count per trial is a sum of n Bernoulli variables; its variance is at most n² p (1 - p).
        let p = analysis.shortfallProbability
        let standardError = (Double(n * n) * p * (1 - p) / Double(trials)).squareRoot()
        #expect(abs(observed - expected) < 4 * standardError, "\(observed) against \(expected)")
        // P(some client short) lies between one client's probability and the union bound.
        let rate = Double(simulation.shortfalls) / Double(trials)
        #expect(rate <= analysis.failureUpperBound + 4 * (rate * (1 - rate) / Double(trials)).squareRoot())
        #expect(rate >= p - 4 * (p * (1 - p) / Double(trials)).squareRoot())
        if let exact = analysis.completeGraphFailure {
            #expect(
                abs(rate - exact) < 4 * (exact * (1 - exact) / Double(trials)).squareRoot(), "\(rate) against \(exact)")
        } else {
            #expect(k < n - 1)
        }
    }
}
