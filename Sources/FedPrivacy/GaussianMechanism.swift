import Foundation

/// The Gaussian mechanism on its own (no sampling, one release): the noise
/// a single release of a value of L2 sensitivity Δ needs to be
/// (ε, δ)-differentially private.
public enum GaussianMechanism {
    /// The δ of adding Gaussian noise of standard deviation `noise` to a
    /// value of L2 sensitivity `sensitivity`, at `epsilon`: the exact
    /// privacy profile of Balle and Wang 2018 (Theorem 8),
    /// `Φ(Δ/2σ - εσ/Δ) - e^ε Φ(-Δ/2σ - εσ/Δ)`.
    public static func delta(epsilon: Double, noise: Double, sensitivity: Double) -> Double {
        let a = sensitivity / (2 * noise)
        let b = epsilon * noise / sensitivity
        return max(0, normalCDF(a - b) - exp(epsilon) * normalCDF(-a - b))
    }

    /// The smallest standard deviation σ (to 1e-6 relative) that makes one
    /// release (`epsilon`, `delta`)-differentially private for L2
    /// sensitivity `sensitivity`: the analytic Gaussian mechanism (Balle and
    /// Wang 2018), valid for any ε > 0, unlike the classic
    /// `σ = Δ √(2 ln(1.25/δ)) / ε` (ε < 1 only, and larger).
    ///
    /// Throws if `epsilon` is not in (0, 100], `delta` not in (0, 1) or
    /// `sensitivity` not positive.
    public static func noise(epsilon: Double, delta: Double, sensitivity: Double) throws(PrivacyError) -> Double {
        guard epsilon > 0, epsilon <= 100 else { throw PrivacyError("epsilon must be in (0, 100] (got \(epsilon))") }
        guard delta > 0, delta < 1 else { throw PrivacyError("delta must be in (0, 1) (got \(delta))") }
        guard sensitivity > 0, sensitivity.isFinite else {
            throw PrivacyError("the sensitivity must be positive (got \(sensitivity))")
        }
        var high = sensitivity
        while Self.delta(epsilon: epsilon, noise: high, sensitivity: sensitivity) > delta { high *= 2 }
        var low = 0.0
        while high - low > 1e-6 * high {
            let mid = (low + high) / 2
            if Self.delta(epsilon: epsilon, noise: mid, sensitivity: sensitivity) > delta {
                low = mid
            } else {
                high = mid
            }
        }
        return high
    }

    /// Φ, the standard normal distribution function.
    static func normalCDF(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }
}
