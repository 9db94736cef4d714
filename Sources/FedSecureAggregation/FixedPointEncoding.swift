import FedPrivacy

/// Why an update could not be encoded or a sum decoded.
public enum FixedPointError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The ring has no room for this many summands at any resolution.
    case noHeadroom(bits: Int, summands: Int)
    /// A clipping bound that is not finite and positive, or a weight cap below 1 or above 2^48.
    case invalidParameter(String)
    /// An update with a NaN or infinite coordinate.
    case nonFinite
    /// A weight (sample count) outside 0...maximumWeight.
    case weightOutOfRange(weight: Int, maximum: Int)
    /// A sum of more summands than the encoding has headroom for: it may have wrapped around.
    case tooManySummands(summands: Int, maximum: Int)
    /// A sum whose weights add to 0: there is no mean.
    case zeroTotalWeight
    /// A vector of the wrong length.
    case lengthMismatch(expected: Int, got: Int)

    public var description: String {
        switch self {
        case .noHeadroom(let bits, let summands): "a \(bits)-bit ring has no headroom for \(summands) summands"
        case .invalidParameter(let reason): reason
        case .nonFinite: "the update has a NaN or infinite coordinate"
        case .weightOutOfRange(let weight, let maximum): "weight \(weight) is outside 0...\(maximum)"
        case .tooManySummands(let summands, let maximum):
            "\(summands) summands exceed the encoding's headroom of \(maximum): the sum may have wrapped around"
        case .zeroTotalWeight: "the summed weights are 0: no mean"
        case .lengthMismatch(let expected, let got): "a vector of \(got) elements where \(expected) are expected"
        }
    }
}

/// Fixed-point encoding of model updates into Z_(2^b), so that a masked sum
/// of up to n of them decodes to their weighted mean.
///
/// Encoding one update x (d floats) of weight w (its sample count, 0 <= w <= W):
/// 1. Clip: ``Clipping/l2Norm(_:)`` scales x down to L2 norm at most C (a
///    direction-preserving clip), ``Clipping/perCoordinate(_:)`` clamps each
///    coordinate to [-C, C]. Either way every coordinate of the clipped x' is in [-C, C].
/// 2. Weight and scale: u = (w / W) · x' · s, with s = ``scale`` = M / C, so u is in [-M, M].
/// 3. Stochastic rounding: z = floor(u) + 1 with probability u - floor(u), else floor(u).
///    Unbiased (E[z] = u) with variance (u - floor u)(1 - (u - floor u)) <= 1/4,
///    that is at most s^-2 / 4 per coordinate in the update's units (times (W/w)^2 before weighting).
/// 4. z is stored modulo 2^b (two's complement); then the weight w follows in
///    ``weightLimbs`` coordinates, base 2^h digits (h = ``weightLimbBits``), least significant first.
///
/// With distributed noise (``encode(_:weight:noise:using:)``, differential
/// privacy under secure aggregation): after step 1, each coordinate gains an
/// independent N(0, σ²) draw and is then clamped to [-R, R], R = ``range``
/// (chosen as C + 8σ, so a clamp happens with probability below 1.3e-15 per
/// coordinate); s = M / R instead of M / C. The rounding of step 3 then acts on
/// a noised value: it is unbiased and adds at most s^-2 / 4 of variance per
/// coordinate and summand, below the noise's σ² whenever σ · s >= 1/2.
///
/// Headroom: M = floor((2^(b-1) - 1) / n), so a sum of n values in [-M, M] stays
/// in [-(2^(b-1) - 1), 2^(b-1) - 1] and reads back exactly as a signed number;
/// h = b - bitWidth(n), so n digits below 2^h sum below 2^b. A sum of more than
/// n encodings is refused by ``decode(_:summands:)``: it may have wrapped.
///
/// Decoding a sum S of n' <= n encodings: W_sum = Σ of the weight digits' sums
/// · 2^(h·k) (exact), and coordinate i is signed(S_i) / s · W / W_sum, the weighted
/// mean Σ w_c x'_c / Σ w_c plus an error e_i = (W / W_sum) / s · Σ_c r_c, the r_c
/// being the independent rounding errors: E[e_i] = 0 (unbiased), Var[e_i] <=
/// n' / 4 · (W / (W_sum · s))^2, and |e_i| < n' · W / (W_sum · s) always.
public struct FixedPointEncoding: Hashable, Sendable {
    /// How an update is bounded before it is scaled.
    public enum Clipping: Hashable, Sendable {
        /// Scale the whole update down to L2 norm at most C.
        case l2Norm(Double)
        /// Clamp each coordinate to [-C, C].
        case perCoordinate(Double)

        /// C: after clipping, every coordinate lies in [-C, C].
        public var bound: Double {
            switch self {
            case .l2Norm(let c), .perCoordinate(let c): c
            }
        }
    }

    /// An encoded update and what clipping did to it.
    public struct Encoded: Hashable, Sendable {
        /// The d scaled, rounded coordinates, then the weight's digits: elements of the ring.
        public let values: [UInt32]
        /// Whether clipping changed the update.
        public let clipped: Bool
    }

    /// The ring Z_(2^b).
    public let ring: MaskRing
    /// The clipping rule and its bound C.
    public let clipping: Clipping
    /// n: the most encodings a decodable sum may hold.
    public let maximumSummands: Int
    /// W: the largest weight (sample count) an update may carry.
    public let maximumWeight: Int
    /// R >= C: the bound each coordinate is scaled from (C unless noise is added).
    public let range: Double
    /// M: the bound on each encoded coordinate's magnitude, floor((2^(b-1) - 1) / n).
    public let unitBound: Int
    /// h: bits in each of the weight's digits, b - bitWidth(n).
    public let weightLimbBits: Int
    /// How many coordinates carry the weight: ceil(bitWidth(W) / h).
    public let weightLimbs: Int

    /// s = M / R: ring units per unit of the update.
    public var scale: Double { Double(unitBound) / range }

    /// An encoding into `bits`-bit integers for sums of at most `maximumSummands` updates.
    ///
    /// - Throws: ``FixedPointError/invalidParameter(_:)`` unless C is finite and positive
    ///   and 1 <= W <= 2^48, or when `range` (nil: C) is below C or not finite;
    ///   ``SecureAggregationError/ringWidthOutOfRange(_:)``;
    ///   ``FixedPointError/noHeadroom(bits:summands:)`` when M or h would be below 1
    ///   (n >= 2^(b-1), or n < 1).
    public init(
        bits: Int, clipping: Clipping, maximumSummands: Int, maximumWeight: Int = 1, range: Double? = nil
    ) throws {
        self.ring = try MaskRing(bits: bits)
        guard clipping.bound.isFinite, clipping.bound > 0 else {
            throw FixedPointError.invalidParameter(
                "the clipping bound must be finite and positive (got \(clipping.bound))")
        }
        let range = range ?? clipping.bound
        guard range.isFinite, range >= clipping.bound else {
            throw FixedPointError.invalidParameter(
                "the coordinate range must be finite and at least the clipping bound \(clipping.bound) (got \(range))")
        }
        self.range = range
        guard (1...(1 << 48)).contains(maximumWeight) else {
            throw FixedPointError.invalidParameter("the weight cap must be in 1...2^48 (got \(maximumWeight))")
        }
        guard maximumSummands >= 1 else { throw FixedPointError.noHeadroom(bits: bits, summands: maximumSummands) }
        let signedMaximum = (1 << (bits - 1)) - 1
        let summandBits = Int.bitWidth - maximumSummands.leadingZeroBitCount
        guard signedMaximum / maximumSummands >= 1, bits - summandBits >= 1 else {
            throw FixedPointError.noHeadroom(bits: bits, summands: maximumSummands)
        }
        self.clipping = clipping
        self.maximumSummands = maximumSummands
        self.maximumWeight = maximumWeight
        self.unitBound = signedMaximum / maximumSummands
        self.weightLimbBits = bits - summandBits
        let weightBits = Int.bitWidth - maximumWeight.leadingZeroBitCount
        self.weightLimbs = (weightBits + weightLimbBits - 1) / weightLimbBits
    }

    /// The length of an encoded update of `dimension` coordinates.
    public func encodedCount(dimension: Int) -> Int { dimension + weightLimbs }

    /// `update` clipped, weighted by `weight` / W, scaled and stochastically
    /// rounded with `generator`, followed by `weight`'s digits.
    ///
    /// - Throws: ``FixedPointError/nonFinite``, ``FixedPointError/weightOutOfRange(weight:maximum:)``.
    public func encode<G: RandomNumberGenerator>(
        _ update: [Float], weight: Int, using generator: inout G
    ) throws -> Encoded {
        try encode(update, weight: weight, noise: 0, using: &generator)
    }

    /// `update` clipped, each coordinate noised with N(0, `noise`²) drawn from
    /// `generator` and clamped to [-R, R], then weighted by `weight` / W, scaled
    /// and stochastically rounded, followed by `weight`'s digits.
    ///
    /// - Throws: ``FixedPointError/nonFinite``, ``FixedPointError/weightOutOfRange(weight:maximum:)``,
    ///   ``FixedPointError/invalidParameter(_:)`` for a negative or non-finite `noise`.
    public func encode<G: RandomNumberGenerator>(
        _ update: [Float], weight: Int, noise: Double, using generator: inout G
    ) throws -> Encoded {
        guard noise >= 0, noise.isFinite else {
            throw FixedPointError.invalidParameter("the noise must be finite and at least 0 (got \(noise))")
        }
        guard (0...maximumWeight).contains(weight) else {
            throw FixedPointError.weightOutOfRange(weight: weight, maximum: maximumWeight)
        }
        guard update.allSatisfy(\.isFinite) else { throw FixedPointError.nonFinite }
        let bound = clipping.bound
        let weighting = Double(weight) / Double(maximumWeight) * scale
        var factor = 1.0
        var clipped = false
        var clamp = false
        switch clipping {
        case .l2Norm:
            let norm = update.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            if norm > bound {
                factor *= bound / norm
                clipped = true
            }
        case .perCoordinate:
            clamp = true
        }
        let limit = Double(unitBound)
        let mask = ring.mask
        var gaussian = GaussianSampler()
        var values = [UInt32]()
        values.reserveCapacity(encodedCount(dimension: update.count))
        for coordinate in update {
            var x = Double(coordinate) * factor
            if clamp, abs(x) > bound {
                x = x < 0 ? -bound : bound
                clipped = true
            }
            if noise > 0 { x = min(max(x + noise * gaussian.next(using: &generator), -range), range) }
            let u = x * weighting
            let low = u.rounded(.down)
            let up = Double.random(in: 0..<1, using: &generator) < u - low
            // Floating-point rounding can only push u past ±M by far less than a unit.
            let z = Int(min(max(low + (up ? 1 : 0), -limit), limit))
            values.append(UInt32(truncatingIfNeeded: z) & mask)
        }
        let digitMask = (1 << weightLimbBits) - 1
        for limb in 0..<weightLimbs { values.append(UInt32((weight >> (limb * weightLimbBits)) & digitMask)) }
        return Encoded(values: values, clipped: clipped)
    }

    /// `update` encoded with a ``KeystreamGenerator`` keyed from the system's
    /// CSPRNG for the rounding and the `noise` (default none).
    public func encode(_ update: [Float], weight: Int, noise: Double = 0) throws -> Encoded {
        var generator = KeystreamGenerator()
        return try encode(update, weight: weight, noise: noise, using: &generator)
    }

    /// The weighted mean of the `summands` updates whose encodings add up to
    /// `sum` (modulo 2^b), and the total of their weights.
    ///
    /// - Throws: ``FixedPointError/tooManySummands(summands:maximum:)`` when
    ///   `summands` > n, ``FixedPointError/lengthMismatch(expected:got:)`` when `sum`
    ///   is shorter than the weight's digits, ``FixedPointError/zeroTotalWeight``.
    public func decode(_ sum: [UInt32], summands: Int) throws -> (mean: [Double], totalWeight: Int) {
        guard summands <= maximumSummands else {
            throw FixedPointError.tooManySummands(summands: summands, maximum: maximumSummands)
        }
        guard sum.count >= weightLimbs else {
            throw FixedPointError.lengthMismatch(expected: weightLimbs, got: sum.count)
        }
        let dimension = sum.count - weightLimbs
        var totalWeight = 0
        for limb in 0..<weightLimbs {
            totalWeight += Int(ring.reduce(sum[dimension + limb])) << (limb * weightLimbBits)
        }
        guard totalWeight > 0 else { throw FixedPointError.zeroTotalWeight }
        let modulus = Int64(1) << ring.bits
        let half = modulus / 2
        let factor = Double(maximumWeight) / (Double(totalWeight) * scale)
        let mean = sum[..<dimension].map { element -> Double in
            let value = Int64(ring.reduce(element))
            return Double(value >= half ? value - modulus : value) * factor
        }
        return (mean, totalWeight)
    }
}
