import FedPrivacy
import Testing

/// One point of the grid: dp-accounting's RDP epsilon at delta 1e-5 with its default orders.
struct DPAccountingReference: Sendable, CustomTestStringConvertible {
    /// "poisson", "fixed" (q × 10,000 of a population of 10,000, without replacement) or "none".
    let sampling: String
    let q: Double
    let noise: Double
    let steps: Int
    let epsilon: Double
    let order: Double

    static let delta = 1e-5
    static let population = 10_000

    var testDescription: String { "\(sampling) q=\(q) z=\(noise) steps=\(steps)" }

    /// The event this row composes `steps` times.
    var event: DPEvent {
        switch sampling {
        case "poisson": .poissonSampledGaussian(samplingRate: q, noise: noise)
        case "fixed":
            .fixedSizeSampledGaussian(
                sampleSize: Int((q * Double(Self.population)).rounded()), populationSize: Self.population, noise: noise)
        default: .gaussian(noise: noise)
        }
    }

    /// Printed by `python3 Benchmarks/dp_accounting_reference.py --swift` (needs `pip install dp-accounting`).
    static let grid: [DPAccountingReference] = [
        // dp-accounting 0.6.0, delta 1e-05, population 10000 (fixed)
        .init(sampling: "poisson", q: 0.001, noise: 0.5, steps: 1000, epsilon: 4.382144962527826, order: 3.4),
        .init(sampling: "poisson", q: 0.001, noise: 1.0, steps: 10000, epsilon: 0.7876595344277387, order: 13.0),
        .init(sampling: "poisson", q: 0.001, noise: 2.0, steps: 100000, epsilon: 0.6623569939268874, order: 25.0),
        .init(sampling: "poisson", q: 0.002, noise: 0.8, steps: 5000, epsilon: 1.7464117947214644, order: 7.2),
        .init(sampling: "poisson", q: 0.005, noise: 1.1, steps: 1000, epsilon: 0.963163077106372, order: 12.0),
        .init(sampling: "poisson", q: 0.005, noise: 0.7, steps: 20000, epsilon: 10.366421920042477, order: 3.0),
        .init(sampling: "poisson", q: 0.01, noise: 1.1, steps: 1000, epsilon: 1.7117701662429012, order: 9.6),
        .init(sampling: "poisson", q: 0.01, noise: 0.6, steps: 100, epsilon: 4.831306715068717, order: 3.4),
        .init(sampling: "poisson", q: 0.01, noise: 2.5, steps: 50, epsilon: 0.1447863792989789, order: 57.0),
        .init(sampling: "poisson", q: 0.01, noise: 4.0, steps: 10000, epsilon: 1.0354900660362436, order: 17.0),
        .init(sampling: "poisson", q: 0.02, noise: 1.0, steps: 2500, epsilon: 6.928493938395322, order: 3.9),
        .init(sampling: "poisson", q: 0.05, noise: 1.5, steps: 200, epsilon: 2.6026197216830376, order: 7.4),
        .init(sampling: "poisson", q: 0.05, noise: 0.9, steps: 1000, epsilon: 14.923717994878434, order: 2.5),
        .init(sampling: "poisson", q: 0.1, noise: 1.0, steps: 100, epsilon: 7.903850223578231, order: 3.2),
        .init(sampling: "poisson", q: 0.1, noise: 3.0, steps: 1000, epsilon: 5.288294066635081, order: 4.9),
        .init(sampling: "poisson", q: 0.2, noise: 2.0, steps: 50, epsilon: 3.8498338465384045, order: 5.6),
        .init(sampling: "poisson", q: 0.25, noise: 0.8, steps: 10, epsilon: 10.032427508011203, order: 2.6),
        .init(sampling: "poisson", q: 0.5, noise: 1.0, steps: 20, epsilon: 16.57523846008367, order: 2.3),
        .init(sampling: "poisson", q: 0.5, noise: 5.0, steps: 1000, epsilon: 20.183228319633113, order: 3.0),
        .init(sampling: "poisson", q: 0.75, noise: 2.0, steps: 5, epsilon: 4.326068556540553, order: 5.4),
        .init(sampling: "poisson", q: 1.0, noise: 1.0, steps: 1, epsilon: 4.728507067217623, order: 5.4),
        .init(sampling: "poisson", q: 1.0, noise: 2.0, steps: 10, epsilon: 8.079406222420491, order: 3.9),
        .init(sampling: "poisson", q: 1.0, noise: 5.0, steps: 100, epsilon: 10.725509696418232, order: 3.3),
        .init(sampling: "poisson", q: 1.0, noise: 10.0, steps: 1000, epsilon: 19.05359753163139, order: 2.5),
        .init(sampling: "fixed", q: 0.001, noise: 1.0, steps: 1000, epsilon: 0.7033246750676585, order: 13.0),
        .init(sampling: "fixed", q: 0.01, noise: 1.1, steps: 1000, epsilon: 3.1899987783606503, order: 7.0),
        .init(sampling: "fixed", q: 0.01, noise: 2.0, steps: 100, epsilon: 0.43473118331365956, order: 34.0),
        .init(sampling: "fixed", q: 0.05, noise: 1.5, steps: 200, epsilon: 5.4270041466111305, order: 5.0),
        .init(sampling: "fixed", q: 0.1, noise: 1.0, steps: 100, epsilon: 14.053750225346512, order: 3.0),
        .init(sampling: "fixed", q: 0.5, noise: 2.0, steps: 20, epsilon: 11.964469696066578, order: 4.0),
        .init(sampling: "fixed", q: 1.0, noise: 2.0, steps: 10, epsilon: 8.079406222420491, order: 3.9),
        .init(sampling: "none", q: 1.0, noise: 1.0, steps: 1, epsilon: 4.728507067217623, order: 5.4),
        .init(sampling: "none", q: 1.0, noise: 3.0, steps: 100, epsilon: 20.392520209469453, order: 2.4),
    ]
}
