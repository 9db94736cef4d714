import Foundation

/// How likely SecAgg+ is to fail for n participants on a ``NeighbourGraph``
/// of degree k with threshold t, when each participant independently fails
/// to answer the unmasking round with probability δ (the drop-out rate), and
/// how likely the server is to learn an individual input.
///
/// - Correctness: the sum cannot be unmasked when some participant whose
///   secret is needed has fewer than t answering neighbours. Its answering
///   neighbours number Bin(k, 1 − δ), so by the union bound over the n
///   participants P(fail) <= n · P(Bin(k, 1 − δ) < t) (``failureUpperBound``),
///   which is also the expected number of participants short of t.
/// - Privacy against an honest-but-curious server with no colluding
///   participants: honest participants reveal, for each neighbour, either its
///   self-mask share or its masking-key share, never both, so the server
///   never holds both of one participant's secrets: probability 0.
/// - With a fraction γ of participants colluding with the server, an honest
///   participant with at least t colluding neighbours has both secrets open
///   to them: P <= n · P(Bin(k, γ) >= t) (``collusionUpperBound``).
/// - An active server (one that tells different neighbours different drop-out
///   sets) without the consistency round gets both secrets of a participant
///   with c colluding neighbours whenever c >= 2t − k: always when 2t <= k,
///   otherwise P <= n · P(Bin(k, γ) >= 2t − k) (``activeServerUpperBound``).
///
/// Bounds are capped at 1. The binomial tails are exact sums, in log space;
/// they treat neighbours as drawn independently (γ: with replacement).
public struct FailureProbability: Hashable, Sendable {
    /// n: the cohort's size.
    public let participants: Int
    /// k: each participant's number of neighbours.
    public let neighbours: Int
    /// t: shares needed to rebuild a secret.
    public let threshold: Int
    /// δ: the probability that a participant does not answer the unmasking round.
    public let dropoutRate: Double
    /// γ: the fraction of participants colluding with the server.
    public let corruptionRate: Double

    /// The analysis for these parameters.
    ///
    /// - Throws: ``FailureProbabilityError`` unless 2 <= n, 1 <= k <= n − 1,
    ///   1 <= t <= k and δ, γ are in [0, 1].
    public init(
        participants: Int, neighbours: Int, threshold: Int, dropoutRate: Double, corruptionRate: Double = 0
    ) throws {
        guard participants >= 2 else { throw FailureProbabilityError("n must be at least 2 (got \(participants))") }
        guard (1...(participants - 1)).contains(neighbours) else {
            throw FailureProbabilityError("k must be in 1...n-1 = 1...\(participants - 1) (got \(neighbours))")
        }
        guard (1...neighbours).contains(threshold) else {
            throw FailureProbabilityError("t must be in 1...k = 1...\(neighbours) (got \(threshold))")
        }
        guard (0...1).contains(dropoutRate) else {
            throw FailureProbabilityError("the drop-out rate must be in [0, 1] (got \(dropoutRate))")
        }
        guard (0...1).contains(corruptionRate) else {
            throw FailureProbabilityError("the corruption rate must be in [0, 1] (got \(corruptionRate))")
        }
        self.participants = participants
        self.neighbours = neighbours
        self.threshold = threshold
        self.dropoutRate = dropoutRate
        self.corruptionRate = corruptionRate
    }

    /// P(Bin(k, 1 − δ) < t): one participant has fewer than t answering neighbours.
    public var shortfallProbability: Double {
        Self.binomialCDF(threshold - 1, trials: neighbours, probability: 1 - dropoutRate)
    }

    /// min(1, n · ``shortfallProbability``): the probability that the sum cannot be unmasked.
    public var failureUpperBound: Double { min(1, Double(participants) * shortfallProbability) }

    /// For the complete graph (k = n − 1, the original SecAgg) the exact
    /// probability that the sum cannot be unmasked: with A of the n clients
    /// answering, an answering client has A − 1 answering neighbours and a
    /// silent one A, so the round fails exactly when A <= t: P(Bin(n, 1 − δ) <= t).
    /// `nil` for other graphs, whose neighbourhoods overlap in ways the union bound covers.
    public var completeGraphFailure: Double? {
        guard neighbours == participants - 1 else { return nil }
        return Self.binomialCDF(threshold, trials: participants, probability: 1 - dropoutRate)
    }

    /// min(1, n · P(Bin(k, γ) >= t)): colluders hold t shares of some honest participant's secrets.
    public var collusionUpperBound: Double {
        min(
            1, Double(participants) * Self.binomialUpperTail(threshold, trials: neighbours, probability: corruptionRate)
        )
    }

    /// min(1, n · P(Bin(k, γ) >= 2t − k)); 1 when 2t <= k: an active server
    /// without the consistency round could unmask someone's input.
    public var activeServerUpperBound: Double {
        let needed = 2 * threshold - neighbours
        guard needed > 0 else { return 1 }
        return min(
            1, Double(participants) * Self.binomialUpperTail(needed, trials: neighbours, probability: corruptionRate))
    }

    /// P(X <= x) for X ~ Bin(trials, probability).
    public static func binomialCDF(_ x: Int, trials: Int, probability: Double) -> Double {
        if x < 0 { return 0 }
        if x >= trials { return 1 }
        return logSumExp((0...x).map { logBinomialPMF($0, trials: trials, probability: probability) })
    }

    /// P(X >= x) for X ~ Bin(trials, probability).
    public static func binomialUpperTail(_ x: Int, trials: Int, probability: Double) -> Double {
        if x <= 0 { return 1 }
        if x > trials { return 0 }
        return logSumExp((x...trials).map { logBinomialPMF($0, trials: trials, probability: probability) })
    }

    static func logBinomialPMF(_ i: Int, trials n: Int, probability p: Double) -> Double {
        let logChoose = lgamma(Double(n + 1)) - lgamma(Double(i + 1)) - lgamma(Double(n - i + 1))
        // 0 · log 0 counts as 0, so that p = 0 and p = 1 give point masses.
        let successes = i == 0 ? 0 : Double(i) * log(p)
        let failures = i == n ? 0 : Double(n - i) * log1p(-p)
        return logChoose + successes + failures
    }

    static func logSumExp(_ terms: [Double]) -> Double {
        guard let top = terms.max(), top > -.infinity else { return 0 }
        return min(1, exp(top) * terms.reduce(0) { $0 + exp($1 - top) })
    }
}

/// Parameters that ``FailureProbability`` cannot analyse.
public struct FailureProbabilityError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong, in a sentence.
    public let message: String

    init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// A Monte Carlo check of ``FailureProbability`` on real graphs: each trial
/// draws a ``NeighbourGraph`` and a drop-out pattern (each participant out
/// independently with probability δ) and records whether some participant
/// has fewer than t answering neighbours, and whether the answering
/// participants' subgraph is disconnected (then the server learns the sum of
/// each component separately, which SecAgg+ permits only when each is large).
public struct FailureSimulation: Hashable, Sendable {
    /// Trials run.
    public let trials: Int
    /// Trials in which some participant had fewer than t answering neighbours.
    public let shortfalls: Int
    /// Participants short of t answering neighbours, summed over all trials (its
    /// mean per trial estimates n · P(Bin(k, 1 − δ) < t) for a k-regular graph).
    public let shortParticipants: Int
    /// Trials in which the answering participants' graph was disconnected.
    public let disconnected: Int
    /// The fewest answering participants in one connected component, over all trials.
    public let smallestComponent: Int

    /// Runs `trials` trials of `analysis`'s parameters with `generator`.
    public static func run<G: RandomNumberGenerator>(
        _ analysis: FailureProbability, trials: Int, using generator: inout G
    ) -> FailureSimulation {
        var shortfalls = 0
        var shortParticipants = 0
        var disconnected = 0
        var smallestComponent = analysis.participants
        for _ in 0..<trials {
            let graph = NeighbourGraph.harary(
                participants: analysis.participants, degree: analysis.neighbours, using: &generator)
            let answering = (0..<graph.count).map { _ in
                Double.random(in: 0..<1, using: &generator) >= analysis.dropoutRate
            }
            let short = graph.neighbours.count { list in list.count(where: { answering[$0] }) < analysis.threshold }
            shortParticipants += short
            if short > 0 { shortfalls += 1 }
            let components = Self.componentSizes(graph, answering)
            if components.count > 1 { disconnected += 1 }
            if let smallest = components.min() { smallestComponent = min(smallestComponent, smallest) }
        }
        return FailureSimulation(
            trials: trials, shortfalls: shortfalls, shortParticipants: shortParticipants, disconnected: disconnected,
            smallestComponent: smallestComponent)
    }

    /// The sizes of the connected components of the subgraph on the `included` nodes.
    static func componentSizes(_ graph: NeighbourGraph, _ included: [Bool]) -> [Int] {
        var seen = [Bool](repeating: false, count: graph.count)
        var sizes: [Int] = []
        for start in 0..<graph.count where included[start] && !seen[start] {
            var stack = [start]
            seen[start] = true
            var size = 0
            while let node = stack.popLast() {
                size += 1
                for next in graph.neighbours[node] where included[next] && !seen[next] {
                    seen[next] = true
                    stack.append(next)
                }
            }
            sizes.append(size)
        }
        return sizes
    }

    /// An upper 95% confidence bound on a probability seen `events` times in
    /// `trials`: one-sided Clopper-Pearson for 0 events (1 - 0.05^(1/trials),
    /// about 3/trials), otherwise the upper end of Wilson's score interval.
    public static func upper95(events: Int, trials: Int) -> Double {
        guard trials > 0 else { return 1 }
        if events == 0 { return 1 - pow(0.05, 1 / Double(trials)) }
        let p = Double(events) / Double(trials)
        // Wilson score interval's upper end, z = 1.96.
        let z = 1.96
        let n = Double(trials)
        let centre = p + z * z / (2 * n)
        let spread = z * (p * (1 - p) / n + z * z / (4 * n * n)).squareRoot()
        return min(1, (centre + spread) / (1 + z * z / n))
    }
}
