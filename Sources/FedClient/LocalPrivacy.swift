import FedCodec
import FedPrivacy

/// Local differential privacy: the client clips its update and adds
/// Gaussian noise itself before the update leaves the device, so that each
/// report is (ε, δ)-differentially private on its own, whoever receives it
/// (no trust in the server).
///
/// The update `U = W - W_v` is scaled to L2 norm at most `clip`; any two
/// data sets of the client then give updates at most `2 clip` apart, the
/// sensitivity, and noise of standard deviation ``noise`` (the analytic
/// Gaussian mechanism, Balle and Wang 2018) is added to every coordinate.
/// The guarantee is per report: a client that reports k times spends the
/// composition of k such releases (`fed privacy epsilon --sampling none
/// --noise noise/(2 clip) --steps k` bounds it). The noise is large: a
/// model of d weights gets noise of norm about `noise √d` per report, which
/// only many clients' averaging can absorb. A report under local privacy
/// states 1 sample (its true count would be published unnoised), so the
/// server weighs such clients equally.
public struct LocalPrivacy: Sendable, Equatable {
    public let epsilon: Double
    public let delta: Double
    public let clip: Double
    /// The noise's standard deviation on each coordinate.
    public let noise: Double

    /// Throws if a parameter is out of range (ε in (0, 100], δ in (0, 1), a positive clip).
    public init(epsilon: Double, delta: Double, clip: Double) throws(PrivacyError) {
        guard clip > 0, clip.isFinite else { throw PrivacyError("the clipping norm must be positive (got \(clip))") }
        self.epsilon = epsilon
        self.delta = delta
        self.clip = clip
        self.noise = try GaussianMechanism.noise(epsilon: epsilon, delta: delta, sensitivity: 2 * clip)
    }

    /// `base + clip(weights - base) + N(0, noise²)`, coordinate by coordinate
    /// (binary64, rounded to binary32); an update with a non-finite value
    /// counts as zero (noise alone is sent). `weights` has `base`'s shapes.
    public func privatize<G: RandomNumberGenerator>(_ weights: [Tensor], base: [Tensor], using random: inout G)
        -> [Tensor]
    {
        precondition(weights.map(\.shape) == base.map(\.shape), "the update's shapes differ from its base's")
        var squared = 0.0
        for (w, b) in zip(weights, base) {
            for (x, y) in zip(w.values, b.values) {
                let d = Double(x) - Double(y)
                squared += d * d
            }
        }
        let norm = squared.squareRoot()
        // A non-finite update (a diverged trainer) sends noise alone: never the update unclipped.
        let scale = !norm.isFinite ? 0 : norm > clip ? clip / norm : 1
        var out = base
        var gaussian = GaussianSampler()
        for t in out.indices {
            let w = weights[t].values
            for i in out[t].values.indices {
                let b = Double(base[t].values[i])
                out[t].values[i] = Float(b + scale * (Double(w[i]) - b) + noise * gaussian.next(using: &random))
            }
        }
        return out
    }
}
