import FedSecureAggregation
import FedTestSupport
import Testing

/// The fixed point with distributed noise: each coordinate noised after clipping, clamped to R.
@Suite("Fixed-point encoding with distributed noise")
struct NoisedEncodingTests {
    @Test(
        "The decoded sum of n noised encodings is the sum of the clipped updates plus noise of variance n sigma^2",
        arguments: [(32, 10, 0.05), (16, 20, 0.2)])
    func noiseOfTheSum(bits: Int, clients: Int, sigma: Double) throws {
        let clip = 1.0
        let encoding = try FixedPointEncoding(
            bits: bits, clipping: .l2Norm(clip), maximumSummands: clients, maximumWeight: 1,
            range: clip + 8 * sigma)
        var generator = SplitMix64(seed: UInt64(bits * 100 + clients))
        let dimension = 20_000
        var sum = [UInt32](repeating: 0, count: encoding.encodedCount(dimension: dimension))
        var clippedSum = [Double](repeating: 0, count: dimension)
        for _ in 0..<clients {
            // Norm about 2.9: clipped to 1.
            let update = (0..<dimension).map { _ in Float.random(in: -0.035...0.035, using: &generator) }
            let norm = update.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            for i in 0..<dimension { clippedSum[i] += Double(update[i]) * clip / norm }
            let encoded = try encoding.encode(update, weight: 1, noise: sigma, using: &generator)
            #expect(encoded.clipped)
            try encoding.ring.add(encoded.values, to: &sum)
        }
        let (mean, total) = try encoding.decode(sum, summands: clients)
        #expect(total == clients)
        let residual = (0..<dimension).map { mean[$0] * Double(clients) - clippedSum[$0] }
        let m = residual.reduce(0, +) / Double(dimension)
        let variance = residual.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(dimension - 1)
        // The rounding adds at most n / (4 s^2): far below n sigma^2 here.
        let expected = Double(clients) * sigma * sigma
        let rounding = Double(clients) / (4 * encoding.scale * encoding.scale)
        #expect(rounding < 0.01 * expected)
        // 20,000 coordinates: the sample variance is within 5% (about 5 standard errors).
        #expect(abs(variance - expected) < 0.05 * expected, "variance \(variance), expected \(expected)")
        #expect(abs(m) < 5 * expected.squareRoot() / Double(dimension).squareRoot(), "mean \(m)")
    }

    @Test("Noise is clamped to the range R; a range below C, or negative noise, is refused")
    func rangeAndRefusals() throws {
        let encoding = try FixedPointEncoding(
            bits: 32, clipping: .l2Norm(1), maximumSummands: 3, maximumWeight: 1, range: 1.5)
        var generator = SplitMix64(seed: 9)
        // Noise of sd 100 on a range of 1.5: almost every coordinate is clamped to +-R, never beyond.
        let encoded = try encoding.encode([Float](repeating: 0, count: 1_000), weight: 1, noise: 100, using: &generator)
        let (mean, _) = try encoding.decode(encoded.values, summands: 1)
        #expect(mean.allSatisfy { abs($0) <= 1.5 + 1 / encoding.scale })
        #expect(mean.filter { abs($0) > 1.49 }.count > 980)
        #expect(throws: FixedPointError.self) {
            try FixedPointEncoding(bits: 32, clipping: .l2Norm(1), maximumSummands: 3, range: 0.5)
        }
        #expect(throws: FixedPointError.self) {
            try encoding.encode([0, 0], weight: 1, noise: -1, using: &generator)
        }
        // Without noise the range only coarsens the scale: s = M / R.
        #expect(encoding.scale == Double(encoding.unitBound) / 1.5)
    }
}
