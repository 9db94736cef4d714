/// An element of a prime field GF(p) with p < 2^127, the arithmetic that
/// ``Shamir`` sharing is written over.
///
/// Invariant: ``value`` is the canonical representative, in `[0, p)`; two
/// elements are equal exactly when their values are.
public protocol PrimeFieldElement: Hashable, Sendable, CustomStringConvertible {
    /// The field's prime p (below 2^127, so that a sum of two values fits in a `UInt128`).
    static var modulus: UInt128 { get }

    /// The element congruent to `value` modulo p.
    init(_ value: UInt128)

    /// The canonical representative, in `[0, p)`.
    var value: UInt128 { get }

    /// Product modulo p.
    static func * (lhs: Self, rhs: Self) -> Self
}

extension PrimeFieldElement {
    /// The additive identity.
    public static var zero: Self { Self(0) }

    /// The multiplicative identity.
    public static var one: Self { Self(1) }

    /// Sum modulo p.
    public static func + (lhs: Self, rhs: Self) -> Self {
        Self(lhs.value + rhs.value)
    }

    /// Difference modulo p.
    public static func - (lhs: Self, rhs: Self) -> Self {
        lhs.value >= rhs.value ? Self(lhs.value - rhs.value) : Self(lhs.value + (modulus - rhs.value))
    }

    /// `self` raised to `exponent`, by square and multiply.
    public func power(_ exponent: UInt128) -> Self {
        var result = Self.one
        var base = self
        var exponent = exponent
        while exponent > 0 {
            if exponent & 1 == 1 { result = result * base }
            base = base * base
            exponent >>= 1
        }
        return result
    }

    /// The multiplicative inverse, by Fermat's little theorem (x^(p-2)).
    /// Precondition: `self` is not zero.
    public var inverse: Self {
        precondition(self != .zero, "zero has no inverse")
        return power(Self.modulus - 2)
    }

    /// An element drawn uniformly from the whole field with `generator`.
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> Self {
        Self(UInt128.random(in: 0..<modulus, using: &generator))
    }

    public var description: String { String(value) }
}

/// GF(2^127 - 1), the Mersenne prime field: secrets are shared here, 15 bytes
/// (120 bits) to an element.
public struct Mersenne127: PrimeFieldElement {
    /// 2^127 - 1.
    public static let modulus: UInt128 = (1 << 127) - 1

    public let value: UInt128

    /// The element congruent to `value` (any `UInt128`) modulo 2^127 - 1.
    public init(_ value: UInt128) {
        // 2^127 ≡ 1, so value = high·2^127 + low ≡ high + low, at most p + 1.
        let folded = (value & Self.modulus) + (value >> 127)
        self.value = folded >= Self.modulus ? folded - Self.modulus : folded
    }

    public static func * (lhs: Self, rhs: Self) -> Self {
        // The 254-bit product is high·2^128 + low, and 2^128 ≡ 2: high < 2^126, so
        // 2·high + fold(low) < 2^127 + 2^127 + 1 fits, and one more fold reduces it.
        let (high, low) = lhs.value.multipliedFullWidth(by: rhs.value)
        let foldedLow = (low & modulus) + (low >> 127)
        return Self((high << 1) + foldedLow)
    }
}
