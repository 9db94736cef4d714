import Foundation
import Testing

@testable import FedPrivacy

@Suite("The Gaussian mechanism of one release (local DP)")
struct GaussianMechanismTests {
    /// δ(ε) of noise σ at sensitivity Δ by integrating the privacy loss, an
    /// independent route: L ~ N(η, 2η) with η = Δ²/2σ², δ = E[(1 - e^(ε-L))+].
    static func integratedDelta(epsilon: Double, noise: Double, sensitivity: Double) -> Double {
        let eta = sensitivity * sensitivity / (2 * noise * noise)
        let sd = (2 * eta).squareRoot()
        let steps = 400_000
        let (low, high) = (eta - 12 * sd, eta + 12 * sd)
        let h = (high - low) / Double(steps)
        var sum = 0.0
        for k in 0..<steps {
            let l = low + (Double(k) + 0.5) * h
            guard l > epsilon else { continue }
            let density = exp(-(l - eta) * (l - eta) / (2 * sd * sd)) / (sd * (2 * Double.pi).squareRoot())
            sum += (1 - exp(epsilon - l)) * density * h
        }
        return sum
    }

    @Test(
        "The analytic noise meets delta exactly, agrees with the integrated privacy loss, and beats the classic bound",
        arguments: [(0.5, 1e-5, 1.0), (1.0, 1e-5, 2.0), (4.0, 1e-6, 1.0), (8.0, 1e-5, 0.5)])
    func analyticNoise(epsilon: Double, delta: Double, sensitivity: Double) throws {
        let sigma = try GaussianMechanism.noise(epsilon: epsilon, delta: delta, sensitivity: sensitivity)
        let exact = GaussianMechanism.delta(epsilon: epsilon, noise: sigma, sensitivity: sensitivity)
        #expect(exact <= delta && exact > delta * 0.999, "delta \(exact) at sigma \(sigma)")
        #expect(GaussianMechanism.delta(epsilon: epsilon, noise: sigma * 0.99, sensitivity: sensitivity) > delta)
        let integrated = Self.integratedDelta(epsilon: epsilon, noise: sigma, sensitivity: sensitivity)
        #expect(abs(integrated - exact) < 1e-3 * delta, "integrated \(integrated), closed form \(exact)")
        if epsilon < 1 {
            let classic = sensitivity * (2 * log(1.25 / delta)).squareRoot() / epsilon
            #expect(sigma < classic, "analytic \(sigma), classic \(classic)")
        }
    }

    @Test("Out-of-range parameters are refused")
    func refusals() {
        #expect(throws: PrivacyError.self) { try GaussianMechanism.noise(epsilon: 0, delta: 1e-5, sensitivity: 1) }
        #expect(throws: PrivacyError.self) { try GaussianMechanism.noise(epsilon: 1, delta: 1, sensitivity: 1) }
        #expect(throws: PrivacyError.self) { try GaussianMechanism.noise(epsilon: 1, delta: 1e-5, sensitivity: 0) }
    }
}
