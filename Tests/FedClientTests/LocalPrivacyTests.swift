import FedClient
import FedCodec
import FedPrivacy
import Testing

@Suite("Local differential privacy on the client")
struct LocalPrivacyTests {
    @Test("An update is clipped to the norm and noised with the calibrated spread; the base is kept")
    func clipsAndNoises() throws {
        let privacy = try LocalPrivacy(epsilon: 4, delta: 1e-5, clip: 2)
        #expect(abs(privacy.noise - (try GaussianMechanism.noise(epsilon: 4, delta: 1e-5, sensitivity: 4))) < 1e-12)
        let n = 100_000
        let base = [try Tensor(shape: [n], values: (0..<n).map { Float($0 % 7) })]
        // An update of norm 10 x sqrt(n): clipped to norm 2.
        var weights = base
        for i in weights[0].values.indices { weights[0].values[i] += 10 }
        var random = SystemRandomNumberGenerator()
        let out = privacy.privatize(weights, base: base, using: &random)
        let clippedStep = 2 / Double(n).squareRoot()
        let residual = zip(out[0].values, base[0].values).map { Double($0) - Double($1) - clippedStep }
        let mean = residual.reduce(0, +) / Double(n)
        let sd = (residual.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)).squareRoot()
        #expect(abs(mean) < 5 * privacy.noise / Double(n).squareRoot(), "mean \(mean)")
        #expect(abs(sd - privacy.noise) < 0.02 * privacy.noise, "spread \(sd), noise \(privacy.noise)")
    }

    @Test("A bad clip, epsilon or delta is refused")
    func refusals() {
        #expect(throws: PrivacyError.self) { try LocalPrivacy(epsilon: 1, delta: 1e-5, clip: 0) }
        #expect(throws: PrivacyError.self) { try LocalPrivacy(epsilon: -1, delta: 1e-5, clip: 1) }
        #expect(throws: PrivacyError.self) { try LocalPrivacy(epsilon: 1, delta: 2, clip: 1) }
    }
}
