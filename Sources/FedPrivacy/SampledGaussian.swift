import Foundation

/// The Rényi differential privacy (RDP) of the Gaussian mechanism, alone and
/// after sampling, at one order α > 1. The formulas are those of Google's
/// dp-accounting (`dp_accounting/rdp/rdp_privacy_accountant.py`), written
/// anew from the papers they cite, so that both give the same numbers.
///
/// Notation: `q` is the sampling rate, `σ` the noise multiplier (the noise's
/// standard deviation over the L2 sensitivity), `α` the order.
enum SampledGaussian {
    /// RDP of the Gaussian mechanism with no sampling: `α / (2σ²)`
    /// (Mironov 2017, Proposition 7).
    static func gaussian(noise σ: Double, order α: Double) -> Double {
        if α.isInfinite || σ == 0 { return .infinity }
        return α / (2 * σ * σ)
    }

    // MARK: Poisson sampling

    /// RDP of the Poisson-sampled Gaussian mechanism under add-or-remove-one
    /// neighbours (Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of
    /// the Sampled Gaussian Mechanism"): `log(A_α) / (α - 1)`, where
    /// `A_α = E_{z~μ0}[((1 - q) + q·μ1(z)/μ0(z))^α]`, `μ0 = N(0, σ²)`, `μ1 = N(1, σ²)`.
    /// `q = 0` gives 0, `q = 1` the Gaussian's `α / (2σ²)`.
    static func poisson(rate q: Double, noise σ: Double, order α: Double) -> Double {
        if q == 0 { return 0 }
        if α.isInfinite || σ == 0 { return .infinity }
        if q == 1 { return α / (2 * σ * σ) }
        let logA = α.rounded() == α ? logAInteger(q: q, σ: σ, α: Int(α)) : logAFractional(q: q, σ: σ, α: α)
        return logA / (α - 1)
    }

    /// `log(A_α)` for an integer α, by the binomial expansion (MTZ19, Section 3.2):
    /// `A_α = Σ_{i=0}^{α} C(α, i) qⁱ (1 - q)^{α-i} exp((i² - i) / (2σ²))`.
    static func logAInteger(q: Double, σ: Double, α: Int) -> Double {
        var logA = -Double.infinity
        let logQ = log(q)
        let log1mQ = log1p(-q)
        let a = Double(α)
        for index in 0...α {
            let i = Double(index)
            let term = LogMath.binomial(a, i) + i * logQ + (a - i) * log1mQ + (i * i - i) / (2 * σ * σ)
            logA = LogMath.add(logA, term)
        }
        return logA
    }

    /// The most terms `logAFractional` sums before giving up (dp-accounting's limit).
    static let maxFractionalTerms = 1000

    /// `log(A_α)` for a fractional α (MTZ19, Section 3.3): `A_α` splits at
    /// `z0 = σ² log(1/q - 1) + 1/2` into two series, `A_α = Σ_i (s0_i + s1_i)` with,
    /// for `j = α - i`,
    /// `s0_i = |C(α, i)| qⁱ (1-q)^j exp((i² - i)/(2σ²)) · erfc((i - z0)/(√2 σ)) / 2` and
    /// `s1_i = |C(α, i)| q^j (1-q)ⁱ exp((j² - j)/(2σ²)) · erfc((z0 - j)/(√2 σ)) / 2`.
    /// The sum stops once both terms decrease and are below `e⁻³⁰` of the total;
    /// if that has not happened after 1,000 terms the order is unusable and the
    /// result is `+infinity` (as in dp-accounting, which then skips the order).
    static func logAFractional(q: Double, σ: Double, α: Double) -> Double {
        var logA0 = -Double.infinity
        var logA1 = -Double.infinity
        let z0 = σ * σ * log(1 / q - 1) + 0.5
        let logQ = log(q)
        let log1mQ = log1p(-q)
        let logHalf = log(0.5)
        let root2σ = 2.0.squareRoot() * σ
        var lastS0 = -Double.infinity
        var lastS1 = -Double.infinity
        for index in 0..<maxFractionalTerms {
            let i = Double(index)
            let coefficient = LogMath.binomial(α, i)
            let j = α - i
            let logT0 = coefficient + i * logQ + j * log1mQ
            let logT1 = coefficient + j * logQ + i * log1mQ
            let logE0 = logHalf + LogMath.erfcLog((i - z0) / root2σ)
            let logE1 = logHalf + LogMath.erfcLog((z0 - j) / root2σ)
            let logS0 = logT0 + (i * i - i) / (2 * σ * σ) + logE0
            let logS1 = logT1 + (j * j - j) / (2 * σ * σ) + logE1
            logA0 = LogMath.add(logA0, logS0)
            logA1 = LogMath.add(logA1, logS1)
            let total = LogMath.add(logA0, logA1)
            if logS0 < lastS0 && logS1 < lastS1 && max(logS0, logS1) < total - 30 { return total }
            lastS0 = logS0
            lastS1 = logS1
        }
        return .infinity
    }

    // MARK: Sampling a fixed number without replacement

    /// Orders above this use the simpler bound of `logWithoutReplacement` (dp-accounting's limit).
    static let maxExactWithoutReplacementOrder = 256

    /// RDP of the Gaussian mechanism on a uniformly random subset of fixed size
    /// `m = q·n` of `n` records, under replace-one neighbours (Wang, Balle,
    /// Kasiviswanathan 2019, "Subsampled Rényi Differential Privacy and Analytical
    /// Moments Accountant", Theorem 9 with the Gaussian's strengthened form of
    /// Theorem 27). An integer α gives `log(B_α) / (α - 1)` (see `logWithoutReplacement`);
    /// a fractional one interpolates the cumulant generating function `(α - 1)·RDP`
    /// linearly between `⌊α⌋` and `⌈α⌉` (WBK19, Corollary 10):
    /// `((1 - t)·log B_⌊α⌋ + t·log B_⌈α⌉) / (α - 1)`, `t = α - ⌊α⌋`.
    static func withoutReplacement(rate q: Double, noise σ: Double, order α: Double) -> Double {
        if q == 0 { return 0 }
        if q == 1 { return α / (2 * σ * σ) }
        if α.isInfinite || σ == 0 { return .infinity }
        if α.rounded() == α { return logWithoutReplacement(q: q, σ: σ, α: Int(α)) / (α - 1) }
        let low = α.rounded(.down)
        let high = α.rounded(.up)
        let x = logWithoutReplacement(q: q, σ: σ, α: Int(low))
        let y = logWithoutReplacement(q: q, σ: σ, α: Int(high))
        let t = α - low
        return ((1 - t) * x + t * y) / (α - 1)
    }

    /// `log(B_α)` for an integer α ≥ 2, the WBK19 bound for the Gaussian with
    /// `ε(α) = α / (2σ²)` and its cumulant generating function `K(x) = x·ε(x + 1)`:
    /// `B_α = 1 + q² C(α, 2) min(4(e^{ε(2)} - 1), 2e^{ε(2)})
    ///        + Σ_{i=3}^{α} qⁱ C(α, i) min(4·√(|Δ_lo|·|Δ_hi|), 2e^{K(i - 1)})`,
    /// where `Δ_lo`, `Δ_hi` are forward differences of `e^{K}` of orders
    /// `2⌊i/2⌋` and `2⌈i/2⌉` (`forwardDifferences`, indexed as dp-accounting does).
    /// Above order 256 the forward-difference term is dropped (only `2e^{K(i - 1)}`),
    /// which is cheaper and still a valid bound. α = 1 gives 0.
    static func logWithoutReplacement(q: Double, σ: Double, α: Int) -> Double {
        if α == 1 { return 0 }
        func cgf(_ x: Double) -> Double { x * (x + 1) / (2 * σ * σ) }
        func epsilon(_ x: Double) -> Double { x / (2 * σ * σ) }
        let a = Double(α)
        let logQ = log(q)
        let logF2m1 = epsilon(2) + log1p(-exp(-epsilon(2)))
        let second = 2 * logQ + LogMath.binomial(a, 2) + min(log(4.0) + logF2m1, epsilon(2) + log(2.0))
        var logB = LogMath.add(0, second)
        guard α >= 3 else { return logB }
        if α <= maxExactWithoutReplacementOrder {
            let deltas = forwardDifferences(cgf, count: α)
            for index in 3...α {
                let low = deltas[2 * (index / 2) - 1]
                let high = deltas[2 * ((index + 1) / 2) - 1]
                let i = Double(index)
                let term = min(log(4.0) + 0.5 * (low + high), log(2.0) + cgf(i - 1)) + i * logQ + LogMath.binomial(a, i)
                logB = LogMath.add(logB, term)
            }
        } else {
            for index in 3...α {
                let i = Double(index)
                logB = LogMath.add(logB, log(2.0) + cgf(i - 1) + i * logQ + LogMath.binomial(a, i))
            }
        }
        return logB
    }

    /// Logarithms of the magnitudes of forward differences of `exp(f)`, computed
    /// with signs in log space (WBK19, Theorem 27). As in dp-accounting, the
    /// sequence is `s = (1, e^{f(0)}, e^{f(1)}, ..., e^{f(count)})` and entry `k`
    /// (`0...count+1`) is `log|Δ^{k+1} s|` at its start.
    static func forwardDifferences(_ f: (Double) -> Double, count n: Int) -> [Double] {
        var values = [Double](repeating: 0, count: n + 3)
        var positive = [Bool](repeating: true, count: n + 3)
        for i in 1..<(n + 3) { values[i] = f(Double(i - 1)) }
        var deltas = [Double](repeating: 0, count: n + 2)
        for k in 0..<(n + 2) {
            // One more difference, in place, over the entries still needed.
            for j in 0..<(n + 2 - k) {
                if positive[j] == positive[j + 1] {
                    let (sign, magnitude) = LogMath.subtractWithSign(values[j + 1], values[j])
                    values[j] = magnitude
                    positive[j] = positive[j + 1] ? sign : !sign
                } else {
                    values[j] = LogMath.add(values[j], values[j + 1])
                    positive[j] = positive[j + 1]
                }
            }
            deltas[k] = values[0]
        }
        return deltas
    }
}
