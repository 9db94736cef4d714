import FedPrivacy
import Foundation
import Testing

/// Relative difference `|a - b| / |b|` (0 when both are 0).
func relativeDifference(_ a: Double, _ b: Double) -> Double {
    a == b ? 0 : abs(a - b) / abs(b)
}

@Suite("RDP accountant")
struct RDPAccountantTests {
    @Test("Poisson-sampled Gaussian: dp-accounting's vector (q 0.01, z 2.5, 50 steps) to 1e-6 relative")
    func poissonVector() throws {
        var accountant = RDPAccountant(orders: [1.5, 2.5, 5, 50, 100, .infinity])
        try accountant.compose(.poissonSampledGaussian(samplingRate: 0.01, noise: 2.5), count: 50)
        let expected = [6.70579741e-4, 1.08548710e-3, 2.18075656e-3, 2.38460375e-2, 1.67416308e2]
        for (value, reference) in zip(accountant.rdp, expected) {
            #expect(relativeDifference(value, reference) < 1e-6, "\(value) against \(reference)")
        }
        #expect(accountant.rdp.last == .infinity)
    }

    @Test("Conversion: a constant RDP of 1.1 at orders 2...32 is epsilon 1.32783806176 at delta 1e-5, order 32")
    func pureDPConversion() {
        let orders = (2...32).map(Double.init)
        let rdp = [Double](repeating: 1.1, count: orders.count)
        let (epsilon, order) = RDPAccountant.epsilon(orders: orders, rdp: rdp, delta: 1e-5)
        #expect(relativeDifference(epsilon, 1.32783806176) < 1e-6, "\(epsilon)")
        #expect(order == 32)
        let (delta, deltaOrder) = RDPAccountant.delta(orders: orders, rdp: rdp, epsilon: 1.32783806176)
        #expect(relativeDifference(delta, 1e-5) < 1e-6, "\(delta)")
        #expect(deltaOrder == 32)
    }

    @Test("Grid point within 1% of dp-accounting's RDP epsilon at delta 1e-5", arguments: DPAccountingReference.grid)
    func gridPoint(_ reference: DPAccountingReference) throws {
        var accountant = RDPAccountant()
        try accountant.compose(reference.event, count: reference.steps)
        let (epsilon, order) = accountant.epsilon(delta: DPAccountingReference.delta)
        #expect(relativeDifference(epsilon, reference.epsilon) < 0.01, "\(epsilon) against \(reference.epsilon)")
        #expect(order == reference.order)
    }

    @Test("The grid against dp-accounting, printed (at least 20 Poisson points, q from 0.001 to 1)")
    func printedGrid() throws {
        let grid = DPAccountingReference.grid
        #expect(grid.filter { $0.sampling == "poisson" }.count >= 20)
        #expect(grid.map(\.q).min() == 0.001 && grid.map(\.q).max() == 1)
        var lines = ["sampling     q  noise   steps    epsilon (Swift)  epsilon (dp-accounting)  order   rel. diff"]
        var worst = 0.0
        for reference in grid {
            var accountant = RDPAccountant()
            try accountant.compose(reference.event, count: reference.steps)
            let (epsilon, order) = accountant.epsilon(delta: DPAccountingReference.delta)
            let difference = relativeDifference(epsilon, reference.epsilon)
            worst = max(worst, difference)
            lines.append(
                String(
                    format: "%@ %5.3f %6.2f %7d %18.12f %24.12f %6.1f %11.2e",
                    reference.sampling.padding(toLength: 8, withPad: " ", startingAt: 0),
                    reference.q, reference.noise, reference.steps, epsilon, reference.epsilon, order, difference))
        }
        lines.append(String(format: "largest relative difference: %.2e over %d points", worst, grid.count))
        print(lines.joined(separator: "\n"))
        #expect(worst < 0.01)
    }

    @Test("More steps give a larger epsilon", arguments: ["poisson", "fixed", "none"])
    func monotoneInSteps(_ sampling: String) throws {
        var previous = 0.0
        for steps in [1, 10, 100, 1_000] {
            let event: DPEvent =
                switch sampling {
                case "poisson": .poissonSampledGaussian(samplingRate: 0.01, noise: 1.1)
                case "fixed": .fixedSizeSampledGaussian(sampleSize: 100, populationSize: 10_000, noise: 1.1)
                default: .gaussian(noise: 5)
                }
            var accountant = RDPAccountant()
            try accountant.compose(event, count: steps)
            let epsilon = accountant.epsilon(delta: 1e-5).epsilon
            #expect(epsilon > previous, "\(steps) steps: \(epsilon) after \(previous)")
            previous = epsilon
        }
    }

    @Test("A smaller sampling rate gives a smaller epsilon; more noise too")
    func monotoneInRateAndNoise() throws {
        func epsilon(_ q: Double, _ z: Double) throws -> Double {
            var accountant = RDPAccountant()
            try accountant.compose(.poissonSampledGaussian(samplingRate: q, noise: z), count: 100)
            return accountant.epsilon(delta: 1e-5).epsilon
        }
        #expect(try epsilon(0.001, 1) < epsilon(0.01, 1))
        #expect(try epsilon(0.01, 1) < epsilon(0.1, 1))
        #expect(try epsilon(0.1, 1) < epsilon(1, 1))
        #expect(try epsilon(0.01, 2) < epsilon(0.01, 1))
    }

    @Test("Sampling everything is no amplification: q = 1 equals the plain Gaussian")
    func fullSamplingIsGaussian() throws {
        let plain = try RDPAccountant.rdp(of: .gaussian(noise: 1.3), orders: RDPAccountant.defaultOrders)
        let poisson = try RDPAccountant.rdp(
            of: .poissonSampledGaussian(samplingRate: 1, noise: 1.3), orders: RDPAccountant.defaultOrders)
        let fixed = try RDPAccountant.rdp(
            of: .fixedSizeSampledGaussian(sampleSize: 50, populationSize: 50, noise: 1.3),
            orders: RDPAccountant.defaultOrders)
        #expect(poisson == plain)
        #expect(fixed == plain)
        #expect(plain[0] == 1.1 / (2 * 1.3 * 1.3))
    }

    @Test("Composition adds: one compose of n steps equals n composes of one")
    func compositionAdds() throws {
        var once = RDPAccountant()
        try once.compose(.poissonSampledGaussian(samplingRate: 0.02, noise: 1), count: 4)
        var four = RDPAccountant()
        for _ in 0..<4 { try four.compose(.poissonSampledGaussian(samplingRate: 0.02, noise: 1)) }
        for (a, b) in zip(once.rdp, four.rdp) { #expect(relativeDifference(a, b) < 1e-12) }
        #expect(RDPAccountant().epsilon(delta: 1e-5).epsilon == 0)
    }

    @Test("delta(epsilon:) inverts epsilon(delta:)")
    func deltaInvertsEpsilon() throws {
        var accountant = RDPAccountant()
        try accountant.compose(.poissonSampledGaussian(samplingRate: 0.01, noise: 1.1), count: 1_000)
        let (epsilon, order) = accountant.epsilon(delta: 1e-5)
        let (delta, deltaOrder) = accountant.delta(epsilon: epsilon)
        #expect(relativeDifference(delta, 1e-5) < 1e-6, "\(delta)")
        #expect(deltaOrder == order)
    }

    @Test("Parameters out of range and mixed neighbouring relations are refused")
    func invalidInput() throws {
        var accountant = RDPAccountant()
        #expect(throws: PrivacyError.self) {
            try accountant.compose(.poissonSampledGaussian(samplingRate: 1.5, noise: 1))
        }
        #expect(throws: PrivacyError.self) { try accountant.compose(.gaussian(noise: -1)) }
        #expect(throws: PrivacyError.self) {
            try accountant.compose(.fixedSizeSampledGaussian(sampleSize: 11, populationSize: 10, noise: 1))
        }
        try accountant.compose(.poissonSampledGaussian(samplingRate: 0.1, noise: 1))
        try accountant.compose(.gaussian(noise: 10))
        #expect(throws: PrivacyError.self) {
            try accountant.compose(.fixedSizeSampledGaussian(sampleSize: 1, populationSize: 10, noise: 1))
        }
        #expect(accountant.neighboringRelation == .addOrRemoveOne)
    }

    @Test("No noise is no privacy; no sampling probability is no cost")
    func extremes() throws {
        var noiseless = RDPAccountant()
        try noiseless.compose(.poissonSampledGaussian(samplingRate: 0.1, noise: 0))
        #expect(noiseless.epsilon(delta: 1e-5).epsilon == .infinity)
        var unsampled = RDPAccountant()
        try unsampled.compose(.poissonSampledGaussian(samplingRate: 0, noise: 1), count: 1_000)
        #expect(unsampled.epsilon(delta: 1e-5).epsilon == 0)
    }
}
