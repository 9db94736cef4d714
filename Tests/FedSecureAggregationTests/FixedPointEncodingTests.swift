import FedSecureAggregation
import FedTestSupport
import Testing

/// An encoding's ring width, clipping and cohort, and what the clients send.
struct EncodingCase: Sendable, CustomTestStringConvertible {
    let bits: Int
    let clipping: FixedPointEncoding.Clipping
    let clients: Int
    let maximumSummands: Int
    let maximumWeight: Int
    let seed: UInt64
    var testDescription: String {
        "\(bits) bits, \(clipping), \(clients) of at most \(maximumSummands) clients, weights up to \(maximumWeight)"
    }
}

@Suite("Fixed-point encoding")
struct FixedPointEncodingTests {
    static let cases = [
        EncodingCase(
            bits: 32, clipping: .l2Norm(4), clients: 3, maximumSummands: 3, maximumWeight: 600, seed: 1),
        EncodingCase(
            bits: 32, clipping: .l2Norm(4), clients: 100, maximumSummands: 100, maximumWeight: 3000, seed: 2),
        EncodingCase(
            bits: 32, clipping: .perCoordinate(0.1), clients: 70, maximumSummands: 100, maximumWeight: 1 << 30, seed: 3),
        EncodingCase(
            bits: 16, clipping: .perCoordinate(0.1), clients: 10, maximumSummands: 10, maximumWeight: 3000, seed: 4),
        EncodingCase(bits: 8, clipping: .perCoordinate(1), clients: 5, maximumSummands: 5, maximumWeight: 1, seed: 5),
    ]

    /// The clipped update, in Double, as the encoding defines it.
    func clipped(_ update: [Float], _ clipping: FixedPointEncoding.Clipping) -> [Double] {
        let values = update.map(Double.init)
        switch clipping {
        case .l2Norm(let bound):
            let norm = values.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return norm > bound ? values.map { $0 * bound / norm } : values
        case .perCoordinate(let bound):
            return values.map { min(max($0, -bound), bound) }
        }
    }

    @Test(
        "decode(sum of encodings) is the weighted mean of the clipped updates within the stated error", arguments: cases
    )
    func weightedMeanWithinBound(_ c: EncodingCase) throws {
        let encoding = try FixedPointEncoding(
            bits: c.bits, clipping: c.clipping, maximumSummands: c.maximumSummands, maximumWeight: c.maximumWeight)
        var generator = SplitMix64(seed: c.seed)
        let dimension = 4000
        let spread = Float(c.clipping.bound) * 1.5  // some updates need clipping
        var sum = [UInt32](repeating: 0, count: encoding.encodedCount(dimension: dimension))
        var weightedSum = [Double](repeating: 0, count: dimension)
        var totalWeight = 0
        for client in 0..<c.clients {
            let scale = client % 2 == 0 ? spread : spread / 1000
            let update = (0..<dimension).map { _ in Float.random(in: -scale...scale, using: &generator) }
            let weight = client == 0 ? c.maximumWeight : Int.random(in: 1...c.maximumWeight, using: &generator)
            let encoded = try encoding.encode(update, weight: weight, using: &generator)
            #expect(encoded.values.count == encoding.encodedCount(dimension: dimension))
            #expect(encoded.values.allSatisfy { $0 <= encoding.ring.mask })
            try encoding.ring.add(encoded.values, to: &sum)
            for (index, value) in clipped(update, c.clipping).enumerated() {
                weightedSum[index] += Double(weight) * value
            }
            totalWeight += weight
        }
        let (mean, decodedWeight) = try encoding.decode(sum, summands: c.clients)
        #expect(decodedWeight == totalWeight)
        let unit = Double(c.maximumWeight) / (Double(totalWeight) * encoding.scale)
        let errors = zip(mean, weightedSum).map { $0 - $1 / Double(totalWeight) }
        // Always: each of the n roundings moves less than one unit.
        let worst = errors.map(abs).max()!
        #expect(
            worst < Double(c.clients) * unit * (1 + 1e-9), "worst error \(worst), bound \(Double(c.clients) * unit)")
        // Unbiased with variance at most n/4 units^2: over 4,000 coordinates the mean square error
        // is at most that (up to sampling: 1.2x) and the mean error near 0 (5 standard errors).
        let variance = Double(c.clients) / 4 * unit * unit
        let meanSquare = errors.reduce(0) { $0 + $1 * $1 } / Double(dimension)
        #expect(meanSquare <= 1.2 * variance, "mean square error \(meanSquare), stated variance bound \(variance)")
        let meanError = errors.reduce(0, +) / Double(dimension)
        #expect(abs(meanError) < 5 * (variance / Double(dimension)).squareRoot())
    }

    @Test(
        "Stochastic rounding is unbiased: 40,000 encodings of one value average to it within 5 standard errors",
        arguments: [0.3, -0.55, 0.999, 0.0001])
    func roundingUnbiased(fraction: Double) throws {
        let encoding = try FixedPointEncoding(bits: 32, clipping: .perCoordinate(1), maximumSummands: 1)
        var generator = SplitMix64(seed: 11)
        let value = Float((12.0 + fraction) / encoding.scale)  // 12 units plus a fraction
        let units = Double(value) * encoding.scale
        let draws = 40_000
        var total = 0.0
        for _ in 0..<draws {
            let z = try encoding.encode([value], weight: 1, using: &generator).values[0]
            total += Double(Int32(bitPattern: z))
            #expect(
                Double(Int32(bitPattern: z)) == units.rounded(.down)
                    || Double(Int32(bitPattern: z)) == units.rounded(.up))
        }
        let p = units - units.rounded(.down)
        let standardError = (p * (1 - p) / Double(draws)).squareRoot()
        #expect(abs(total / Double(draws) - units) < 5 * max(standardError, 1e-12))
    }

    @Test(
        "At the headroom: n clients all at +C or all at -C (the largest weight) decode without wrapping",
        arguments: [(32, 1000), (16, 10), (8, 3), (2, 1)])
    func extremesAtFullHeadroom(bits: Int, summands: Int) throws {
        let encoding = try FixedPointEncoding(
            bits: bits, clipping: .perCoordinate(2), maximumSummands: summands, maximumWeight: 50)
        for sign: Float in [1, -1] {
            var sum = [UInt32](repeating: 0, count: encoding.encodedCount(dimension: 3))
            for _ in 0..<summands {
                try encoding.ring.add(encoding.encode([5 * sign, 2 * sign, 2 * sign], weight: 50).values, to: &sum)
            }
            let (mean, weight) = try encoding.decode(sum, summands: summands)
            #expect(weight == 50 * summands)
            #expect(mean.allSatisfy { abs($0 - 2 * Double(sign)) < 1e-9 }, "\(mean)")
        }
    }

    @Test("More summands than the headroom are refused, and a ring too narrow for n is refused up front")
    func overflowRefused() throws {
        let encoding = try FixedPointEncoding(bits: 16, clipping: .l2Norm(1), maximumSummands: 10)
        let sum = try encoding.encode([0.5, 0.5], weight: 1).values
        #expect(throws: FixedPointError.tooManySummands(summands: 11, maximum: 10)) {
            try encoding.decode(sum, summands: 11)
        }
        // Beyond the headroom the sum does wrap: 2·M + 2·M > 2^(b-1) - 1 reads back negative.
        let tight = try FixedPointEncoding(bits: 8, clipping: .perCoordinate(1), maximumSummands: 2)
        var wrapped = [UInt32](repeating: 0, count: tight.encodedCount(dimension: 1))
        for _ in 0..<4 { try tight.ring.add(tight.encode([1], weight: 1).values, to: &wrapped) }
        let m = Double(tight.unitBound)
        #expect(4 * m > 127)
        #expect(Int8(bitPattern: UInt8(wrapped[0])) < 0)
        #expect(throws: FixedPointError.tooManySummands(summands: 4, maximum: 2)) {
            try tight.decode(wrapped, summands: 4)
        }
        #expect(throws: FixedPointError.noHeadroom(bits: 8, summands: 128)) {
            try FixedPointEncoding(bits: 8, clipping: .l2Norm(1), maximumSummands: 128)
        }
        #expect(throws: FixedPointError.noHeadroom(bits: 32, summands: 0)) {
            try FixedPointEncoding(bits: 32, clipping: .l2Norm(1), maximumSummands: 0)
        }
    }

    @Test("L2 clipping scales the update down and says so; small updates pass unchanged")
    func clippingReported() throws {
        let encoding = try FixedPointEncoding(bits: 32, clipping: .l2Norm(1), maximumSummands: 1)
        let large = try encoding.encode([3, 4], weight: 1)
        #expect(large.clipped)
        let (mean, _) = try encoding.decode(large.values, summands: 1)
        #expect(abs(mean[0] - 0.6) <= 1 / encoding.scale && abs(mean[1] - 0.8) <= 1 / encoding.scale)
        #expect(try !encoding.encode([0.3, 0.4], weight: 1).clipped)
        let perCoordinate = try FixedPointEncoding(bits: 32, clipping: .perCoordinate(1), maximumSummands: 1)
        #expect(try perCoordinate.encode([0.5, -1.5], weight: 1).clipped)
    }

    @Test("Bad inputs are refused: NaN, infinite, weights outside 0...W, zero total weight, bad bounds")
    func refusals() throws {
        let encoding = try FixedPointEncoding(bits: 32, clipping: .l2Norm(1), maximumSummands: 4, maximumWeight: 10)
        #expect(throws: FixedPointError.nonFinite) { try encoding.encode([.nan], weight: 1) }
        #expect(throws: FixedPointError.nonFinite) { try encoding.encode([.infinity], weight: 1) }
        #expect(throws: FixedPointError.weightOutOfRange(weight: 11, maximum: 10)) {
            try encoding.encode([0], weight: 11)
        }
        #expect(throws: FixedPointError.weightOutOfRange(weight: -1, maximum: 10)) {
            try encoding.encode([0], weight: -1)
        }
        #expect(throws: FixedPointError.zeroTotalWeight) {
            try encoding.decode(encoding.encode([0.1], weight: 0).values, summands: 1)
        }
        #expect(throws: FixedPointError.self) {
            try FixedPointEncoding(bits: 32, clipping: .l2Norm(0), maximumSummands: 1)
        }
        #expect(throws: FixedPointError.self) {
            try FixedPointEncoding(bits: 32, clipping: .l2Norm(.infinity), maximumSummands: 1)
        }
    }
}
