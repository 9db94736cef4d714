import FedPrivacy

extension DifferentialPrivacy {
    /// The syntax of `--dp`, for help texts.
    public static let specHelp = """
        Comma-separated KEY=VALUE: population=N (required: the clients that may take part), \
        noise=Z (the noise multiplier; omit it to calibrate it so that the run's rounds reach \
        target-epsilon exactly), clip=adaptive (default; adaptive:C0 starts at C0, default 0.1) \
        or clip=C (a fixed L2 norm), quantile=Q (adaptive clipping's target, default 0.5), \
        delta=D (default 1e-5), target-epsilon=E (no version is published beyond it), \
        sampling=poisson (default; each client with probability cohort/population) or fixed \
        (exactly the cohort, without replacement); with --secagg (sampling=fixed), survivors=F (default 0.8): \
        the clients add the noise, each enough that any F of a round's cohort carry all of it, \
        and a round with fewer inputs is abandoned (noise costs F^-1/2: 1.12x at 0.8).
        """

    /// Reads `--dp` (``specHelp``) for rounds of `cohort` expected clients;
    /// `rounds` (0: unknown) is what calibrating the noise to the target
    /// epsilon needs. Throws a message naming the key at fault.
    public init(spec: String, cohort: Int, rounds: UInt64) throws(PrivacyError) {
        var values: [String: String] = [:]
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw PrivacyError("\(item): give KEY=VALUE") }
            guard values.updateValue(parts[1], forKey: parts[0]) == nil else {
                throw PrivacyError("\(parts[0]) given twice")
            }
        }
        let known: Set = [
            "population", "noise", "clip", "quantile", "delta", "target-epsilon", "sampling", "survivors",
        ]
        if let unknown = values.keys.sorted().first(where: { !known.contains($0) }) {
            throw PrivacyError("unknown key \(unknown); the keys are \(known.sorted().joined(separator: ", "))")
        }
        func number(_ key: String) throws(PrivacyError) -> Double? {
            guard let text = values[key] else { return nil }
            guard let v = Double(text), v.isFinite else { throw PrivacyError("\(key)=\(text): give a number") }
            return v
        }
        guard let populationText = values["population"] else {
            throw PrivacyError("give population=N, the number of clients that may take part (the accounting needs it)")
        }
        guard let population = Int(populationText), population >= 1 else {
            throw PrivacyError("population=\(populationText): give a whole number >= 1")
        }
        let sampling: Sampling
        switch values["sampling"] ?? "poisson" {
        case "poisson": sampling = .poisson
        case "fixed": sampling = .fixed
        case let other: throw PrivacyError("sampling=\(other): give poisson or fixed")
        }
        let quantile = try number("quantile") ?? 0.5
        let clipping: Clipping
        switch values["clip"] ?? "adaptive" {
        case "adaptive": clipping = .adaptive(initialNorm: 0.1, quantile: quantile, rate: 0.2)
        case let text where text.hasPrefix("adaptive:"):
            guard let c = Double(text.dropFirst("adaptive:".count)) else {
                throw PrivacyError("clip=\(text): give adaptive:C0, C0 a number")
            }
            clipping = .adaptive(initialNorm: c, quantile: quantile, rate: 0.2)
        case let text:
            guard let c = Double(text) else { throw PrivacyError("clip=\(text): give a norm, adaptive or adaptive:C0") }
            if values["quantile"] != nil { throw PrivacyError("quantile applies to adaptive clipping only") }
            clipping = .fixed(norm: c)
        }
        let delta = try number("delta") ?? 1e-5
        let target = try number("target-epsilon")
        var noise = try number("noise")
        let draft = DifferentialPrivacy(
            noiseMultiplier: noise ?? 1, clipping: clipping, sampling: sampling, population: population, delta: delta,
            targetEpsilon: target)
        if noise == nil {
            guard let target, rounds > 0 else {
                throw PrivacyError(
                    "give noise=Z, or target-epsilon=E with a number of rounds to calibrate the noise to (fed server: --total-rounds)"
                )
            }
            noise = try RDPAccountant.noiseMultiplier(epsilon: target, delta: delta, steps: Int(clamping: rounds)) {
                z in
                var d = draft
                d.noiseMultiplier = z
                return d.event(cohort: cohort, waiting: population)
            }
        }
        self = draft
        noiseMultiplier = noise!
        if let f = try number("survivors") { survivors = f }
        if let problem = problem(cohort: cohort) { throw PrivacyError(problem) }
    }

    /// One line for logs and tables: `z 1.13, adaptive clip from 0.1 (quantile 0.5), poisson q 0.1 of 1000, delta 1e-05, target epsilon 2.0`.
    public var summary: String {
        let clip =
            switch clipping {
            case .fixed(let c): "clip \(c)"
            case .adaptive(let c, let q, _): "adaptive clip from \(c) (quantile \(q))"
            }
        let target = targetEpsilon.map { ", target epsilon \($0)" } ?? ""
        return
            "noise \(noiseMultiplier), \(clip), \(sampling.rawValue) sampling of \(population), delta \(delta)\(target)"
    }
}
