import FedSecureAggregation

/// SplitMix64: a seeded generator, so that a failing case can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// GF(13): a field small enough to enumerate every sharing polynomial.
struct GF13: PrimeFieldElement {
    static let modulus: UInt128 = 13
    let value: UInt128

    init(_ value: UInt128) { self.value = value % 13 }

    static func * (lhs: GF13, rhs: GF13) -> GF13 { GF13(lhs.value * rhs.value) }
}

func randomBytes<G: RandomNumberGenerator>(_ count: Int, using generator: inout G) -> [UInt8] {
    (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
}
