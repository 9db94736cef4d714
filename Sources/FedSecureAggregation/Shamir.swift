/// A point (x, y) of a sharing polynomial: the share that the holder at
/// x-coordinate `x` keeps. `x` is never zero (the secret sits at x = 0).
public struct FieldShare<F: PrimeFieldElement>: Hashable, Sendable {
    /// The holder's x-coordinate, not zero.
    public let x: F
    /// The polynomial's value at `x`.
    public let y: F

    /// A share; no check is made here: ``Shamir/recover(_:threshold:)`` rejects a zero or repeated `x`.
    public init(x: F, y: F) {
        self.x = x
        self.y = y
    }
}

/// Why a secret could not be shared or recovered.
public enum SecretSharingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The threshold t must satisfy 1 <= t <= n, the number of shares made.
    case thresholdOutOfRange(threshold: Int, shareCount: Int)
    /// An x-coordinate of zero would be the secret itself.
    case zeroXCoordinate
    /// Two shares (or two holders) with the same x-coordinate.
    case duplicateXCoordinate(UInt128)
    /// Fewer shares than the threshold: nothing can be recovered.
    case tooFewShares(have: Int, need: Int)
    /// More than t shares were given and the extra ones do not lie on the
    /// polynomial through the first t: at least one share is corrupt.
    case inconsistentShares
    /// A byte secret must be 1 to ``SecretShare/maximumSecretByteCount`` bytes long.
    case secretLengthOutOfRange(Int)
    /// Shares of different secrets (their lengths differ), or a share whose
    /// bytes do not parse: the reason in words.
    case malformedShare(String)

    public var description: String {
        switch self {
        case .thresholdOutOfRange(let t, let n): "threshold \(t) is out of range for \(n) shares (1 <= t <= n)"
        case .zeroXCoordinate: "x-coordinate 0 is the secret's own; shares need x != 0"
        case .duplicateXCoordinate(let x): "x-coordinate \(x) appears more than once"
        case .tooFewShares(let have, let need): "\(have) shares cannot recover a secret of threshold \(need)"
        case .inconsistentShares: "the shares beyond the threshold do not lie on one polynomial: a share is corrupt"
        case .secretLengthOutOfRange(let count):
            "a secret of \(count) bytes cannot be shared (1 to \(SecretShare.maximumSecretByteCount) bytes)"
        case .malformedShare(let reason): "malformed share: \(reason)"
        }
    }
}

/// Shamir's t-of-n secret sharing (Shamir 1979) over a prime field: the
/// secret is the constant term of a polynomial of degree t - 1 whose other
/// coefficients are uniformly random; share i is the polynomial's value at
/// the holder's x-coordinate.
///
/// Guarantees: any t shares with distinct non-zero x-coordinates determine
/// the secret (Lagrange interpolation at 0); any t - 1 of them are uniformly
/// distributed whatever the secret, so they reveal nothing about it (for each
/// candidate secret exactly one polynomial passes through them). Secrecy rests
/// on the coefficients being uniform and secret: use a cryptographically secure
/// generator (the default, `SystemRandomNumberGenerator`).
public enum Shamir {
    /// Shares `secret` among holders at `xs` so that any `threshold` of them recover it.
    ///
    /// - Throws: ``SecretSharingError/thresholdOutOfRange(threshold:shareCount:)`` unless
    ///   1 <= threshold <= xs.count; ``SecretSharingError/zeroXCoordinate`` or
    ///   ``SecretSharingError/duplicateXCoordinate(_:)`` for a bad x-coordinate.
    public static func split<F: PrimeFieldElement, G: RandomNumberGenerator>(
        _ secret: F, threshold: Int, at xs: [F], using generator: inout G
    ) throws -> [FieldShare<F>] {
        guard threshold >= 1, threshold <= xs.count else {
            throw SecretSharingError.thresholdOutOfRange(threshold: threshold, shareCount: xs.count)
        }
        let coefficients = (1..<threshold).map { _ in F.random(using: &generator) }
        return try split(secret, coefficients: coefficients, at: xs)
    }

    /// Shares `secret` with a CSPRNG (`SystemRandomNumberGenerator`).
    public static func split<F: PrimeFieldElement>(_ secret: F, threshold: Int, at xs: [F]) throws -> [FieldShare<F>] {
        var generator = SystemRandomNumberGenerator()
        return try split(secret, threshold: threshold, at: xs, using: &generator)
    }

    /// The shares of the polynomial secret + c1·x + ... + c(t-1)·x^(t-1) at `xs`,
    /// where `coefficients` are c1 ... c(t-1) (the threshold is their count + 1).
    /// Sharing is secret only when the coefficients are uniformly random; this
    /// form exists so that tests can enumerate them.
    ///
    /// - Throws: as ``split(_:threshold:at:using:)``.
    public static func split<F: PrimeFieldElement>(
        _ secret: F, coefficients: [F], at xs: [F]
    ) throws -> [FieldShare<F>] {
        guard coefficients.count < xs.count else {
            throw SecretSharingError.thresholdOutOfRange(threshold: coefficients.count + 1, shareCount: xs.count)
        }
        try checkCoordinates(xs)
        let polynomial = [secret] + coefficients
        return xs.map { x in
            // Horner's rule, highest coefficient first.
            let y = polynomial.reversed().reduce(F.zero) { $0 * x + $1 }
            return FieldShare(x: x, y: y)
        }
    }

    /// The secret behind `shares`, of which at least `threshold` are needed.
    /// The first `threshold` shares determine the polynomial; any further
    /// shares must lie on it.
    ///
    /// - Throws: ``SecretSharingError/tooFewShares(have:need:)``,
    ///   ``SecretSharingError/zeroXCoordinate``, ``SecretSharingError/duplicateXCoordinate(_:)``,
    ///   ``SecretSharingError/inconsistentShares``.
    public static func recover<F: PrimeFieldElement>(_ shares: [FieldShare<F>], threshold: Int) throws -> F {
        guard threshold >= 1 else {
            throw SecretSharingError.thresholdOutOfRange(threshold: threshold, shareCount: shares.count)
        }
        guard shares.count >= threshold else {
            throw SecretSharingError.tooFewShares(have: shares.count, need: threshold)
        }
        try checkCoordinates(shares.map(\.x))
        let basis = Array(shares.prefix(threshold))
        for extra in shares.dropFirst(threshold) where interpolate(basis, at: extra.x) != extra.y {
            throw SecretSharingError.inconsistentShares
        }
        return interpolate(basis, at: .zero)
    }

    /// The value at `x` of the polynomial of degree < points.count through
    /// `points` (Lagrange's form). Precondition: the points' x-coordinates are distinct.
    public static func interpolate<F: PrimeFieldElement>(_ points: [FieldShare<F>], at x: F) -> F {
        var numerator = F.zero
        var denominator = F.one
        // Σ y_i·n_i/d_i is accumulated as one fraction, so that only one inverse is taken.
        for (i, point) in points.enumerated() {
            var n = F.one
            var d = F.one
            for (j, other) in points.enumerated() where j != i {
                n = n * (x - other.x)
                d = d * (point.x - other.x)
            }
            numerator = numerator * d + point.y * n * denominator
            denominator = denominator * d
        }
        return numerator * denominator.inverse
    }

    static func checkCoordinates<F: PrimeFieldElement>(_ xs: [F]) throws {
        var seen = Set<F>()
        for x in xs {
            guard x != .zero else { throw SecretSharingError.zeroXCoordinate }
            guard seen.insert(x).inserted else { throw SecretSharingError.duplicateXCoordinate(x.value) }
        }
    }
}
