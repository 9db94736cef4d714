/// SplitMix64: a small, fast, seedable generator. The same seed gives the same
/// sequence on every platform, so initial weights and shuffles reproduce.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform Float in `[-limit, limit)`, from the top 24 bits.
    public mutating func uniform(_ limit: Float) -> Float {
        let u = Float(next() >> 40) * (1.0 / Float(1 << 24))
        return (2 * u - 1) * limit
    }

    /// Fisher-Yates shuffle of `0..<n`, in place.
    public mutating func shuffle(_ a: inout [Int]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(next() % UInt64(i + 1))
            a.swapAt(i, j)
        }
    }
}
