/// A strategy written as text, for `fed server --strategy` and `fed simulate`:
/// `NAME[/KEY=VALUE]...`, for example `fedbuff/k=10/combine=trimmed:0.2/clip=adaptive`.
///
/// | name | keys (default) |
/// |---|---|
/// | `running-average` | none: the original's rule |
/// | `fedasync` | `alpha` (0.6), `s` (poly:0.5) |
/// | `fedbuff` | `k` (10), `s` (poly:1), `samples` (true: weigh by samples), `combine` (mean; median; trimmed:BETA; krum:F[:KEEP]), `clip` (none; C; adaptive[:C0:QUANTILE:RATE], default adaptive:1:0.5:0.2), `noise` (0: the DP noise multiplier z), `opt` (sgd:1; momentum[:LR:BETA]; adam[:LR]; yogi[:LR]; adagrad[:LR]), `seed` (1) |
/// | `fedavg` | `fedbuff` with s=constant, opt=sgd:1: synchronous FedAvg when `k` is the clients per round |
/// | `fedprox` | `fedavg`'s keys, and `mu` (0.01): FedProx, the clients' proximal coefficient (``proximalMu``) |
/// | `scaffold` | `fedavg`'s keys: SCAFFOLD, FedAvg of the models beside control variates (``controlVariates``) |
///
/// `s` is `constant`, `poly:A` ((1+tau)^-A) or `hinge:A:B`.
///
/// `fedbuff`, `fedavg`, `fedprox` and `scaffold` also take `local`: the
/// clients' local optimizer, `adam` (the default: the run's Adam) or
/// `sgd:LR`, plain SGD of learning rate LR (``localSGD``), SCAFFOLD's local
/// optimizer in the paper. Only `fed simulate` honours it.
public struct StrategySpec: Sendable, CustomStringConvertible {
    public let text: String
    public let strategy: any FederationStrategy
    /// FedProx's mu, announced to clients with each task (round parameter
    /// `prox.mu`); nil for strategies other than `fedprox`.
    public let proximalMu: Double?
    /// SCAFFOLD: clients correct their steps with control variates, which the
    /// server keeps beside the model (``ServerControlVariate``). Only
    /// `fed simulate` carries the variates; no message of the protocol does.
    public let controlVariates: Bool
    /// `local=sgd:LR`: the clients train with plain SGD of this learning
    /// rate; nil (`local=adam`, the default): with the run's Adam. Only
    /// `fed simulate` carries it to its clients.
    public let localSGD: Double?

    /// Parses `text`; the error says which part is wrong and what is allowed.
    public init(_ text: String) throws(StrategySpecError) {
        self.text = text
        let parts = text.split(separator: "/").map(String.init)
        guard let name = parts.first else { throw StrategySpecError("an empty strategy") }
        var options: [String: String] = [:]
        for part in parts.dropFirst() {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw StrategySpecError("\(part) is not KEY=VALUE") }
            options[kv[0]] = kv[1]
        }
        func take(_ key: String) -> String? { options.removeValue(forKey: key) }
        func number(_ key: String, _ fallback: Double) throws(StrategySpecError) -> Double {
            guard let v = take(key) else { return fallback }
            guard let d = Double(v), d.isFinite else { throw StrategySpecError("\(key)=\(v) is not a number") }
            return d
        }
        func staleness(_ fallback: StalenessWeight) throws(StrategySpecError) -> StalenessWeight {
            guard let v = take("s") else { return fallback }
            guard let s = StalenessWeight(v) else {
                throw StrategySpecError("s=\(v): use constant, poly:A or hinge:A:B")
            }
            return s
        }
        var mu: Double?
        var local: Double?
        switch name {
        case "running-average":
            strategy = RunningAverage()
        case "fedasync":
            strategy = FedAsync(alpha: try number("alpha", 0.6), staleness: try staleness(.polynomial(0.5)))
        case "fedbuff", "fedavg", "fedprox", "scaffold":
            let sync = name != "fedbuff"
            if name == "fedprox" {
                let m = try number("mu", 0.01)
                guard m >= 0 else { throw StrategySpecError("mu=\(m) must be at least 0") }
                mu = m
            }
            let k = try number("k", 10)
            guard k >= 1, k <= 10_000 else { throw StrategySpecError("k=\(k) must be in 1...10000") }
            let s = try staleness(sync ? .constant : .polynomial(1))
            let samples = take("samples").map { $0 != "false" } ?? true
            let combine = try Self.combiner(take("combine") ?? "mean")
            let clip = try Self.clipping(take("clip") ?? (sync ? "none" : "none"))
            let noise = try number("noise", 0)
            guard noise >= 0, noise == 0 || clip != .none else {
                throw StrategySpecError("noise needs clipping (clip=C or clip=adaptive)")
            }
            let opt = try Self.optimizer(take("opt") ?? "sgd:1")
            let seed = UInt64(try number("seed", 1))
            local = try Self.localOptimizer(take("local") ?? "adam")
            strategy = FedBuff(
                bufferSize: Int(k), staleness: s, weighBySamples: samples, combiner: combine, clipping: clip,
                noiseMultiplier: noise, optimizer: opt, seed: seed)
        default:
            throw StrategySpecError(
                "unknown strategy \(name): use running-average, fedasync, fedbuff, fedavg, fedprox or scaffold")
        }
        proximalMu = mu
        controlVariates = name == "scaffold"
        localSGD = local
        if let unknown = options.keys.sorted().first {
            throw StrategySpecError("\(name) has no option \(unknown)")
        }
    }

    public var description: String { text }

    static func combiner(_ v: String) throws(StrategySpecError) -> FedBuff.Combiner {
        if v == "mean" { return .mean }
        if v == "median" { return .median }
        if v.hasPrefix("trimmed") {
            let beta = v == "trimmed" ? 0.2 : Double(v.dropFirst("trimmed:".count))
            guard let beta, beta >= 0, beta < 0.5 else { throw StrategySpecError("combine=\(v): beta in [0, 0.5)") }
            return .trimmedMean(beta: beta)
        }
        if v.hasPrefix("krum:") {
            let p = v.split(separator: ":").dropFirst().map { Int($0) }
            guard (1...2).contains(p.count), let f = p[0], f >= 0, let keep = p.count == 2 ? p[1] : 1, keep >= 1 else {
                throw StrategySpecError("combine=\(v): krum:F or krum:F:KEEP (F >= 0 hostile updates, KEEP >= 1)")
            }
            return .krum(f: f, keep: keep)
        }
        throw StrategySpecError("combine=\(v): use mean, median, trimmed:BETA, krum:F or krum:F:KEEP")
    }

    static func clipping(_ v: String) throws(StrategySpecError) -> FedBuff.Clipping {
        if v == "none" { return .none }
        if v.hasPrefix("adaptive") {
            let p = v.split(separator: ":").dropFirst().compactMap { Double($0) }
            if v != "adaptive" && p.count != 3 { throw StrategySpecError("clip=\(v): adaptive or adaptive:C0:Q:RATE") }
            return p.count == 3
                ? .adaptive(initial: p[0], quantile: p[1], rate: p[2])
                : .adaptive(initial: 1, quantile: 0.5, rate: 0.2)
        }
        guard let c = Double(v), c > 0 else { throw StrategySpecError("clip=\(v): none, a norm C > 0, or adaptive") }
        return .fixed(c)
    }

    /// `adam`: nil; `sgd:LR`: LR, a number above 0.
    static func localOptimizer(_ v: String) throws(StrategySpecError) -> Double? {
        if v == "adam" { return nil }
        guard v.hasPrefix("sgd:"), let lr = Double(v.dropFirst("sgd:".count)), lr.isFinite, lr > 0 else {
            throw StrategySpecError("local=\(v): use adam or sgd:LR (LR above 0)")
        }
        return lr
    }

    static func optimizer(_ v: String) throws(StrategySpecError) -> ServerOptimizer {
        let p = v.split(separator: ":").map(String.init)
        let nums = p.dropFirst().compactMap { Double($0) }
        guard nums.count == p.count - 1 else { throw StrategySpecError("opt=\(v): numbers after the name") }
        switch (p[0], nums.count) {
        case ("sgd", 0): return .sgd(learningRate: 1)
        case ("sgd", 1): return .sgd(learningRate: nums[0])
        case ("momentum", 0): return .momentum(learningRate: 1, beta: 0.9)
        case ("momentum", 2): return .momentum(learningRate: nums[0], beta: nums[1])
        case ("adam", 0): return .adamDefault
        case ("adam", 1): return .adam(learningRate: nums[0], beta1: 0.9, beta2: 0.99, tau: 1e-3)
        case ("yogi", 0): return .yogiDefault
        case ("yogi", 1): return .yogi(learningRate: nums[0], beta1: 0.9, beta2: 0.99, tau: 1e-3)
        case ("adagrad", 0): return .adagradDefault
        case ("adagrad", 1): return .adagrad(learningRate: nums[0], beta1: 0, tau: 1e-3)
        default:
            throw StrategySpecError(
                "opt=\(v): sgd[:LR], momentum[:LR:BETA], adam[:LR], yogi[:LR] or adagrad[:LR]")
        }
    }
}

/// A strategy text that does not parse; `description` says why.
public struct StrategySpecError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
