import FedCodec
import Foundation

/// One round of DP-FedAvg's aggregation (``DifferentialPrivacy``), pure:
/// clip each update `W_i - W_v` to L2 norm `clip`, sum, add Gaussian noise
/// of standard deviation `valueNoise` to every coordinate, divide by the
/// expected cohort, add to `W_v`.
///
/// Invariants: one report changes the noised sum by at most `clip` in L2
/// norm (that bound is what the accountant assumes); the result depends on
/// the reports only through that sum and the noised count of unclipped
/// updates. Sums are binary64, the result binary32.
struct PrivateMean {
    var clip: Double
    /// The noise's standard deviation on the sum (`z_value × clip`).
    var valueNoise: Double
    /// The noise's standard deviation on the count of unclipped updates.
    var countNoise: Double
    /// The fixed denominator: the expected cohort size.
    var expectedCohort: Double

    struct Result {
        var weights: [Tensor]
        /// The noised fraction of updates whose norm was at most `clip`.
        var unclippedFraction: Double
        /// How many updates were scaled down.
        var clipped: Int
    }

    func aggregate(base: [Tensor], reports: [[Tensor]], using random: inout any RandomNumberGenerator) -> Result {
        var sum = base.map { [Double](repeating: 0, count: $0.values.count) }
        var clipped = 0
        for weights in reports {
            var squared = 0.0
            for t in base.indices {
                for (w, b) in zip(weights[t].values, base[t].values) {
                    let d = Double(w) - Double(b)
                    squared += d * d
                }
            }
            let norm = squared.squareRoot()
            let scale = norm > clip ? clip / norm : 1
            if norm > clip { clipped += 1 }
            for t in base.indices {
                let w = weights[t].values
                let b = base[t].values
                for i in sum[t].indices { sum[t][i] += scale * (Double(w[i]) - Double(b[i])) }
            }
        }
        var out = base
        var gaussian = Gaussian()
        for t in out.indices {
            for i in sum[t].indices {
                let noised = sum[t][i] + valueNoise * gaussian.next(using: &random)
                out[t].values[i] = Float(Double(base[t].values[i]) + noised / expectedCohort)
            }
        }
        // Centred at 1/2 (sensitivity 1/2 under adding or removing a client), as Andrew et al.
        let centred = Double(reports.count - clipped) - 0.5 * Double(reports.count)
        let noisedCount = centred + countNoise * gaussian.next(using: &random)
        return Result(weights: out, unclippedFraction: noisedCount / expectedCohort + 0.5, clipped: clipped)
    }
}

/// Standard normal draws by the Box-Muller transform, two per pair of
/// uniforms, in binary64. (Floating-point Gaussian noise is not exactly the
/// distribution the accountant assumes at the level of single bits; Mironov
/// 2012 shows such gaps matter for Laplace noise at extreme tails. Stated, not
/// mitigated: secure aggregation's discrete noise is the remedy.)
struct Gaussian {
    private var spare: Double?

    mutating func next(using random: inout any RandomNumberGenerator) -> Double {
        if let s = spare {
            spare = nil
            return s
        }
        // u1 in (0, 1]: log never sees 0.
        let u1 = 1 - Double.random(in: 0..<1, using: &random)
        let u2 = Double.random(in: 0..<1, using: &random)
        let r = (-2 * log(u1)).squareRoot()
        spare = r * sin(2 * .pi * u2)
        return r * cos(2 * .pi * u2)
    }
}
