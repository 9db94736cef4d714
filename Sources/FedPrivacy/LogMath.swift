import Foundation

/// Arithmetic on numbers held as their natural logarithms, so that the sums of
/// the RDP bounds neither overflow nor underflow.
enum LogMath {
    /// `log(exp(a) + exp(b))`, as `max + log1p(exp(min - max))`.
    static func add(_ a: Double, _ b: Double) -> Double {
        let (low, high) = a < b ? (a, b) : (b, a)
        if low == -.infinity { return high }
        return log1p(exp(low - high)) + high
    }

    /// `log|exp(a) - exp(b)|` and whether `exp(a) - exp(b)` is positive
    /// (true when it is zero, whose logarithm is `-infinity`).
    static func subtractWithSign(_ a: Double, _ b: Double) -> (positive: Bool, magnitude: Double) {
        if a > b { return (true, a + log1p(-exp(b - a))) }
        if a < b { return (false, b + log1p(-exp(a - b))) }
        return (true, -.infinity)
    }

    /// `log|C(n, k)|` for real `n` and `k`: `lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)`,
    /// with `lgamma` the logarithm of the absolute value of the gamma function
    /// (a generalized binomial coefficient may be negative; only its size is used,
    /// as in dp-accounting).
    static func binomial(_ n: Double, _ k: Double) -> Double {
        logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1)
    }

    /// `log|Γ(x)|` (the C library's `lgamma`; the annotation picks it over the overlay's `(value, sign)` form).
    static func logGamma(_ x: Double) -> Double {
        let value: Double = lgamma(x)
        return value
    }

    /// `log(erfc(x))`, accurate where `erfc(x)` underflows: there the
    /// asymptotic series of the tail,
    /// `log erfc(x) ≈ -x² - log(x) - log(π)/2 - 1/(2x²) + 5/(8x⁴) - 37/(24x⁶) + 353/(64x⁸)`.
    static func erfcLog(_ x: Double) -> Double {
        let r = erfc(x)
        if r > 1e-300 { return log(r) }
        let x2 = x * x
        return -log(Double.pi) / 2 - log(x) - x2 - 0.5 / x2 + 0.625 / (x2 * x2) - 37.0 / 24.0 / (x2 * x2 * x2)
            + 353.0 / 64.0 / (x2 * x2 * x2 * x2)
    }
}
