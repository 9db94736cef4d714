import FedPrivacy

/// The privacy spent by the rounds published so far, kept in the
/// checkpoint's scalars so that it survives restarts: one scalar per distinct
/// event (`privacy.event.poisson:Q:Z` or `privacy.event.fixed:M:N:Z`, the
/// count of rounds that composed it), the current clipping norm
/// (`privacy.clip`) and the rounds published (`privacy.rounds`). They are
/// written in the same checkpoint write as the version they account for, so
/// a crash can lose neither.
struct PrivacyLedger: Sendable {
    static let eventPrefix = "privacy.event."
    static let clipKey = "privacy.clip"
    static let roundsKey = "privacy.rounds"

    let configuration: DifferentialPrivacy
    private(set) var accountant = RDPAccountant()
    private(set) var counts: [DPEvent: Int] = [:]
    /// The clipping norm of the next round.
    private(set) var clip: Double
    private(set) var rounds: UInt64

    /// Reads the ledger from a checkpoint's scalars. Throws if they hold an
    /// event this build cannot read or events that cannot compose with this
    /// configuration's sampling.
    init(_ configuration: DifferentialPrivacy, scalars: [String: Double]) throws(PrivacyError) {
        self.configuration = configuration
        switch configuration.clipping {
        case .fixed(let c): clip = c
        case .adaptive(let c, _, _): clip = scalars[Self.clipKey] ?? c
        }
        guard let stored = UInt64(exactly: scalars[Self.roundsKey] ?? 0) else {
            throw PrivacyError("the checkpoint's count of private rounds is not a count: \(scalars[Self.roundsKey]!)")
        }
        rounds = stored
        for (key, value) in scalars where key.hasPrefix(Self.eventPrefix) {
            guard let event = Self.event(named: String(key.dropFirst(Self.eventPrefix.count))),
                let count = Int(exactly: value), count >= 0
            else {
                throw PrivacyError("the checkpoint holds a privacy event this build cannot read: \(key) = \(value)")
            }
            try accountant.compose(event, count: count)
            counts[event] = count
        }
        let mine = configuration.event(cohort: 1, waiting: configuration.population).neighboringRelation
        if let theirs = accountant.neighboringRelation, let mine, theirs != mine {
            throw PrivacyError(
                "the checkpoint's rounds were accounted for \(theirs) neighbours (another sampling); this server's sampling (\(configuration.sampling.rawValue)) is for \(mine) neighbours: they do not compose"
            )
        }
    }

    /// Epsilon at the configuration's delta for the rounds published so far.
    var epsilon: Double { accountant.epsilon(delta: configuration.delta).epsilon }

    /// Epsilon if one more round of `event` were published.
    func epsilon(adding event: DPEvent) -> Double {
        var next = accountant
        try? next.compose(event)
        return next.epsilon(delta: configuration.delta).epsilon
    }

    /// Whether publishing `event` keeps epsilon within the target.
    func allows(_ event: DPEvent) -> Bool {
        guard let target = configuration.targetEpsilon else { return true }
        return epsilon(adding: event) <= target
    }

    /// The scalars after a round of `event` is published with the clipping norm `nextClip` for the next one.
    func scalars(publishing event: DPEvent, nextClip: Double, into scalars: inout [String: Double]) {
        scalars[Self.eventPrefix + Self.name(of: event)] = Double((counts[event] ?? 0) + 1)
        scalars[Self.clipKey] = nextClip
        scalars[Self.roundsKey] = Double(rounds + 1)
    }

    /// Records a round that the checkpoint now holds.
    mutating func published(_ event: DPEvent, nextClip: Double) {
        try? accountant.compose(event)
        counts[event, default: 0] += 1
        clip = nextClip
        rounds += 1
    }

    static func name(of event: DPEvent) -> String {
        switch event {
        case .gaussian(let z): "gaussian:\(z)"
        case .poissonSampledGaussian(let q, let z): "poisson:\(q):\(z)"
        case .fixedSizeSampledGaussian(let m, let n, let z): "fixed:\(m):\(n):\(z)"
        }
    }

    static func event(named name: String) -> DPEvent? {
        let parts = name.split(separator: ":").map(String.init)
        switch (parts.first, parts.count) {
        case ("gaussian", 2): return Double(parts[1]).map { .gaussian(noise: $0) }
        case ("poisson", 3):
            guard let q = Double(parts[1]), let z = Double(parts[2]) else { return nil }
            return .poissonSampledGaussian(samplingRate: q, noise: z)
        case ("fixed", 4):
            guard let m = Int(parts[1]), let n = Int(parts[2]), let z = Double(parts[3]) else { return nil }
            return .fixedSizeSampledGaussian(sampleSize: m, populationSize: n, noise: z)
        default: return nil
        }
    }
}

/// The privacy a server's published versions spent (``FederatedServer/privacySpent``).
public struct PrivacySpent: Sendable, Equatable, Codable {
    /// Epsilon at ``delta`` over every version published so far.
    public var epsilon: Double
    public var delta: Double
    /// Rounds published and accounted for.
    public var rounds: UInt64
    /// The clipping norm of the next round.
    public var clip: Double
}
