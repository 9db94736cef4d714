import FedSecureAggregation
import FedTestSupport

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
