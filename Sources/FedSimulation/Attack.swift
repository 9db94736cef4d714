/// What attacking clients push instead of their honest weights.
public enum Attack: String, CaseIterable, Sendable, CustomStringConvertible {
    /// `W_base - 10 * delta`: the honest step, reversed and ten times larger.
    case signflip
    /// Weights drawn from N(0, 1).
    case noise
    /// Honest weights times 1e6.
    case scale
    /// Honest weights, claiming 60,000 samples.
    case claim

    /// The raw value, as `fed simulate --attack` takes it.
    public var description: String { rawValue }
}
