import Foundation

/// Standard normal draws by the Box-Muller transform, two per pair of
/// uniforms, in binary64, from any generator (the system's CSPRNG in a
/// deployment, a seeded one in a simulation or a test).
///
/// Floating-point Gaussian noise is not exactly the distribution an
/// accountant assumes at the level of single bits (Mironov 2012 shows such
/// gaps matter for Laplace noise in the far tails): stated, not mitigated;
/// discrete noise under secure aggregation is the remedy.
public struct GaussianSampler: Sendable {
    @usableFromInline var spare: Double?

    public init() {}

    /// The next draw of N(0, 1).
    @inlinable
    public mutating func next<G: RandomNumberGenerator>(using random: inout G) -> Double {
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
