import FedPrivacy
import Foundation

/// Client-level differential privacy for synchronous rounds (DP-FedAvg,
/// McMahan et al. 2018): the server samples each round's cohort, clips each
/// report's update, adds Gaussian noise to their sum, and accounts for every
/// published version with an RDP accountant.
///
/// Threat model: central DP with a trusted server. The guarantee is about
/// what the published model versions (and anything computed from them)
/// reveal of whether one client took part: any client's whole data set, over
/// every round, changes them by at most (ε, δ). The server itself sees each
/// report in clear (secure aggregation is what hides them from it).
///
/// A round's noise has standard deviation `z_value × C` on the sum of the
/// clipped updates, which is divided by the expected cohort `K` (the fixed
/// denominator of McMahan et al., so the noise does not depend on who
/// reported): every client weighs the same, whatever its samples. With
/// adaptive clipping (Andrew et al. 2021) the norm `C` follows a quantile of
/// the update norms through a noised count, and the noise is split so that
/// the total noise multiplier is `z`:
/// `z_value = (z^-2 - (2 σ_count)^-2)^(-1/2)`, as TensorFlow Federated does.
public struct DifferentialPrivacy: Sendable, Equatable {
    /// How a round's clients are sampled from those checked in.
    public enum Sampling: String, Sendable, Equatable {
        /// Each waiting client is selected independently with probability
        /// `K / population` (`K` the cohort size); accounted as the
        /// Poisson-sampled Gaussian at that rate (add-or-remove-one
        /// neighbours). A client not checked in is selected with probability
        /// 0, which the accounting covers.
        case poisson
        /// Exactly `K` of the `M` waiting clients, uniformly without
        /// replacement; accounted with the `M` of that round (replace-one
        /// neighbours: one client's data replaced by another's, so the
        /// sensitivity is twice the clip and the accountant sees z/2), so fewer
        /// clients waiting than the population cost more epsilon, as they should.
        case fixed
    }

    /// How a report's update `W - W_v` is bounded.
    public enum Clipping: Sendable, Equatable {
        /// Scaled down to L2 norm at most `norm`.
        case fixed(norm: Double)
        /// Starts at `initialNorm`; after each round `C ← C exp(-rate (b - quantile))`,
        /// `b` the noised fraction of updates not clipped (Andrew et al. 2021;
        /// defaults as theirs: quantile 0.5, rate 0.2), kept within 1e-6...1e6.
        case adaptive(initialNorm: Double, quantile: Double, rate: Double)
    }

    /// The noise multiplier `z`: the total noise over the sensitivity, as the accountant sees it.
    public var noiseMultiplier: Double
    public var clipping: Clipping
    public var sampling: Sampling
    /// Clients that may take part (the accounting's population); a rate is `K / population`.
    public var population: Int
    /// The δ that epsilon is stated at. Default 1e-5.
    public var delta: Double
    /// No version is published that would bring epsilon above this; nil: no limit.
    public var targetEpsilon: Double?
    /// The standard deviation of the noise on the count of unclipped updates
    /// (adaptive clipping only); nil: 5% of the expected cohort, as TensorFlow Federated.
    public var countNoise: Double?
    /// With secure aggregation (distributed noise): F, the fraction of a
    /// round's drawn cohort whose noised inputs must arrive. Each of n drawn
    /// clients adds noise of variance σ²/m, m = ceil(F n), so any m inputs
    /// carry the round's whole noise σ² (σ = z_value × C) and a sum of fewer
    /// is never unmasked; when all n arrive the noise is sqrt(n/m) ≈ F^-1/2
    /// times σ (F = 0.6: 1.29x). Default 0.8.
    public var survivors: Double = 0.8

    public init(
        noiseMultiplier: Double, clipping: Clipping = .adaptive(initialNorm: 0.1, quantile: 0.5, rate: 0.2),
        sampling: Sampling = .poisson, population: Int, delta: Double = 1e-5, targetEpsilon: Double? = nil,
        countNoise: Double? = nil
    ) {
        self.noiseMultiplier = noiseMultiplier
        self.clipping = clipping
        self.sampling = sampling
        self.population = population
        self.delta = delta
        self.targetEpsilon = targetEpsilon
        self.countNoise = countNoise
    }

    /// The noise on the count of unclipped updates, for an expected cohort of `cohort`.
    func countStandardDeviation(cohort: Int) -> Double { countNoise ?? 0.05 * Double(cohort) }

    /// The noise multiplier of the updates' sum: `z`, less the share the count takes when adaptive.
    func valueNoiseMultiplier(cohort: Int) -> Double {
        guard case .adaptive = clipping, noiseMultiplier > 0 else { return noiseMultiplier }
        let countMultiplier = 2 * countStandardDeviation(cohort: cohort)
        return 1 / (1 / (noiseMultiplier * noiseMultiplier) - 1 / (countMultiplier * countMultiplier)).squareRoot()
    }

    /// m: the fewest inputs of a secure round of `drawn` clients whose sum may be unmasked.
    public func minimumInputs(drawn: Int) -> Int { max(1, Int((survivors * Double(drawn)).rounded(.up))) }

    /// σ/sqrt(m): the standard deviation of the noise each of `drawn` clients
    /// adds to each coordinate of its update clipped to `clip`, so that any
    /// ``minimumInputs(drawn:)`` of them carry `z_value × clip` in all.
    public func clientNoise(clip: Double, expectedCohort: Int, drawn: Int) -> Double {
        valueNoiseMultiplier(cohort: expectedCohort) * clip / Double(minimumInputs(drawn: drawn)).squareRoot()
    }

    /// The clipping norm after a round of `clip` in which a (noised)
    /// `unclippedFraction` of the updates was not clipped: the same for a fixed norm.
    func clip(after clip: Double, unclippedFraction: Double) -> Double {
        guard case .adaptive(_, let quantile, let rate) = clipping else { return clip }
        return min(1e6, max(1e-6, clip * exp(-rate * (unclippedFraction - quantile))))
    }

    /// The event one round composes: `cohort` the cohort size, `waiting` the clients it was drawn from.
    func event(cohort: Int, waiting: Int) -> DPEvent {
        switch sampling {
        case .poisson:
            .poissonSampledGaussian(
                samplingRate: min(1, Double(cohort) / Double(population)), noise: noiseMultiplier)
        case .fixed:
            // Replace-one neighbours: replacing a client moves the clipped sum by up to 2C
            // (and the centred count by 1, not 1/2), so the noise is z/2 of that sensitivity.
            .fixedSizeSampledGaussian(
                sampleSize: min(cohort, waiting), populationSize: max(waiting, 1), noise: noiseMultiplier / 2)
        }
    }

    /// Why this cannot run with rounds of `cohort` clients, or nil.
    public func problem(cohort: Int) -> String? {
        if !(noiseMultiplier >= 0 && noiseMultiplier.isFinite) {
            return "the noise multiplier must be a finite number >= 0 (got \(noiseMultiplier))"
        }
        if population < cohort {
            return "the population (\(population)) must be at least the cohort size (\(cohort))"
        }
        if !(delta > 0 && delta < 1) { return "delta must be in (0, 1) (got \(delta))" }
        if let e = targetEpsilon, !(e > 0) { return "the target epsilon must be positive (got \(e))" }
        if !(survivors > 0 && survivors <= 1) { return "survivors must be in (0, 1] (got \(survivors))" }
        switch clipping {
        case .fixed(let c):
            if !(c > 0 && c.isFinite) { return "the clipping norm must be positive (got \(c))" }
        case .adaptive(let c, let quantile, let rate):
            if !(c > 0 && c.isFinite) { return "the initial clipping norm must be positive (got \(c))" }
            if !(quantile > 0 && quantile < 1) { return "the clipping quantile must be in (0, 1) (got \(quantile))" }
            if !(rate > 0 && rate <= 10) { return "the clipping rate must be in (0, 10] (got \(rate))" }
            let sigma = countStandardDeviation(cohort: cohort)
            if !(sigma > 0) { return "the count's noise must be positive (got \(sigma))" }
            if noiseMultiplier > 0 && !(noiseMultiplier < 2 * sigma) {
                return
                    "adaptive clipping spends part of the noise on the count of unclipped updates: the noise multiplier must be below 2 x the count's noise (\(2 * sigma) for an expected cohort of \(cohort)); use a larger cohort, a fixed clip, or less noise"
            }
        }
        return nil
    }
}
