import FedCodec
import Foundation

/// Buffered asynchronous aggregation (FedBuff, Nguyen et al. 2022), with a
/// robust combination rule, clipping, optional central DP noise and a server
/// optimizer (Reddi et al. 2021).
///
/// Each update's delta `Wc - W_base` (its base from the server's retained
/// versions) is clipped (if set) and buffered. Every `bufferSize` updates the
/// buffer is combined into one delta: the mean `sum s(tau_i) n_i d_i / sum n_i`
/// (`n_i` its samples; `sum s(tau_i) d_i / K` when `weighBySamples` is false),
/// so stale updates shrink the step, or a robust rule over the deltas scaled
/// by `s(tau_i)` (coordinate-wise median or trimmed mean, samples not
/// weighed; or the mean of the deltas Multi-Krum keeps); noise is added
/// (if set), and the server optimizer takes a step with it; that publishes a
/// version. Synchronous FedAvg is this with `bufferSize` = clients per
/// round, every update of staleness 0, `.constant` staleness and SGD with
/// learning rate 1.
///
/// The default `s(tau) = 1/(1 + tau)` (not FedBuff's 1/sqrt(1 + tau)) was
/// chosen by measurement: with C clients training at once and a buffer of K,
/// each client's progress is applied about C/K times per round of clients,
/// and `1/(1 + tau)` with `tau` near C/K cancels that, so the default
/// learning rate 1 holds at any concurrency (figures: README, "Strategies").
public struct FedBuff: FederationStrategy {
    public var bufferSize: Int
    public var staleness: StalenessWeight
    public var weighBySamples: Bool
    public var combiner: Combiner
    public var clipping: Clipping
    /// Gaussian noise multiplier `z`: noise of standard deviation `z * C / K`
    /// is added to the combined delta (needs clipping). No privacy accountant
    /// is provided: the guarantee this gives is not computed here.
    public var noiseMultiplier: Double
    public var optimizer: ServerOptimizer
    /// Seed of the DP noise (the noise of version v is drawn from `seed ^ v`).
    public var seed: UInt64

    public init(
        bufferSize: Int = 10, staleness: StalenessWeight = .polynomial(1), weighBySamples: Bool = true,
        combiner: Combiner = .mean, clipping: Clipping = .none, noiseMultiplier: Double = 0,
        optimizer: ServerOptimizer = .sgd(learningRate: 1), seed: UInt64 = 1
    ) {
        self.bufferSize = max(1, bufferSize)
        self.staleness = staleness
        self.weighBySamples = weighBySamples
        self.combiner = combiner
        self.clipping = clipping
        self.noiseMultiplier = noiseMultiplier
        self.optimizer = optimizer
        self.seed = seed
    }

    public var name: String { "fedbuff" }

    /// How a full buffer becomes one delta.
    public enum Combiner: Sendable, Equatable, CustomStringConvertible {
        /// The weighted mean.
        case mean
        /// The coordinate-wise median (weights ignored).
        case median
        /// Per coordinate, drop the `beta` fraction of largest and of smallest values, average the rest.
        case trimmedMean(beta: Double)
        /// Multi-Krum (Blanchard et al. 2017) for up to `f` hostile updates in
        /// a buffer of n: each delta scores the sum of its squared L2
        /// distances to its `n - f - 2` nearest others (at least 1); the
        /// `keep` lowest scores (ties: earlier in the buffer) are combined as
        /// the mean is, over them alone. `keep` 1 is Krum.
        case krum(f: Int, keep: Int)

        public var description: String {
            switch self {
            case .mean: "mean"
            case .median: "median"
            case .trimmedMean(let b): "trimmed:\(b)"
            case .krum(let f, let keep): "krum:\(f):\(keep)"
            }
        }
    }

    /// Bounding each delta's L2 norm before it is buffered.
    public enum Clipping: Sendable, Equatable, CustomStringConvertible {
        case none
        /// Scale every delta to norm at most `C`.
        case fixed(Double)
        /// Start at `initial`; after each combination move the bound towards
        /// the `quantile` of the buffered norms: `C <- C * exp(-rate * (b - quantile))`
        /// with `b` the fraction of norms at most C (Andrew et al. 2021).
        case adaptive(initial: Double, quantile: Double, rate: Double)

        public var description: String {
            switch self {
            case .none: "none"
            case .fixed(let c): "clip:\(c)"
            case .adaptive(let c, let q, let r): "adaptive:\(c):\(q):\(r)"
            }
        }
    }

    public func accept(_ update: ClientUpdate, state: inout FederationState) -> Bool {
        // Without a retained base the delta is taken against the current model (staleness treated as 0).
        var delta =
            update.delta
            ?? update.weights.enumerated().map { i, w in
                var d = w
                for j in d.values.indices { d.values[j] = w.values[j] - state.weights[i].values[j] }
                return d
            }
        let norm = Self.norm(delta)
        if let bound = clipBound(state), norm > bound, norm > 0 {
            let scale = Float(bound / norm)
            for t in delta.indices { for i in delta[t].values.indices { delta[t].values[i] *= scale } }
        }
        let s = staleness(update.staleness)
        let weight = weighBySamples ? s * Double(max(1, update.samples)) : s
        state.buffer.append(
            BufferedUpdate(
                clientID: update.clientID, delta: delta, weight: weight, samples: update.samples,
                staleness: update.staleness, norm: norm))
        guard state.buffer.count >= bufferSize else { return false }
        publish(&state)
        return true
    }

    /// The clipping bound in force (nil: no clipping).
    func clipBound(_ state: FederationState) -> Double? {
        switch clipping {
        case .none: nil
        case .fixed(let c): c
        case .adaptive(let c, _, _): state.scalars["clip"] ?? c
        }
    }

    private func publish(_ state: inout FederationState) {
        let buffer = state.buffer
        state.buffer = []
        var combined = combine(buffer)
        let bound = clipBound(state)
        if noiseMultiplier > 0, let bound {
            let sd = noiseMultiplier * bound / Double(buffer.count)
            let step = UInt64(state.scalars["steps"] ?? 0)
            var rng = SplitMix(seed: seed ^ (step &* 0x9E37_79B9_7F4A_7C15))
            for t in combined.indices {
                for i in combined[t].values.indices { combined[t].values[i] += Float(sd * rng.gaussian()) }
            }
        }
        if case .adaptive(let c, let q, let rate) = clipping {
            let current = state.scalars["clip"] ?? c
            let below = Double(buffer.filter { $0.norm <= current }.count) / Double(buffer.count)
            state.scalars["clip"] = current * exp(-rate * (below - q))
        }
        optimizer.step(&state, delta: combined)
        state.scalars["steps"] = (state.scalars["steps"] ?? 0) + 1
        for u in buffer {
            let (total, overflow) = state.samples.addingReportingOverflow(u.samples)
            state.samples = overflow ? UInt64.max : total
        }
    }

    /// One delta from a full buffer, by `combiner`.
    func combine(_ buffer: [BufferedUpdate]) -> [Tensor] {
        // Each delta's s(tau) (its weight without the samples), as robust rules apply it.
        let scale = buffer.map { Float(weighBySamples ? $0.weight / Double(max(1, $0.samples)) : $0.weight) }
        switch combiner {
        case .mean:
            return mean(buffer)
        case .krum(let f, let keep):
            return mean(Self.krum(buffer.map(\.delta), scale: scale, f: f, keep: keep).map { buffer[$0] })
        case .median, .trimmedMean:
            return coordinateWise(buffer, scale: scale)
        }
    }

    /// Nguyen et al.: `sum s(tau_i) n_i delta_i / sum n_i` (or `/ K` without
    /// samples), so staleness shrinks the step rather than only reweighting the buffer.
    private func mean(_ buffer: [BufferedUpdate]) -> [Tensor] {
        var out = buffer[0].delta
        let total = weighBySamples ? buffer.reduce(0) { $0 + Double(max(1, $1.samples)) } : Double(buffer.count)
        let weights = buffer.map { Float($0.weight / total) }
        for t in out.indices {
            out[t].values.withUnsafeMutableBufferPointer { o in
                for i in 0..<o.count { o[i] = 0 }
                for (u, w) in zip(buffer, weights) {
                    u.delta[t].values.withUnsafeBufferPointer { d in
                        for i in 0..<o.count { o[i] += w * d[i] }
                    }
                }
            }
        }
        return out
    }

    /// The coordinate-wise median or trimmed mean of the deltas, each scaled
    /// by its s(tau) as in the mean, so staleness shrinks robust steps too.
    private func coordinateWise(_ buffer: [BufferedUpdate], scale: [Float]) -> [Tensor] {
        var out = buffer[0].delta
        let n = buffer.count
        var trim = 0
        if case .trimmedMean(let beta) = combiner { trim = min((n - 1) / 2, Int((beta * Double(n)).rounded(.down))) }
        var column = [Float](repeating: 0, count: n)
        for t in out.indices {
            for i in out[t].values.indices {
                for k in 0..<n { column[k] = scale[k] * buffer[k].delta[t].values[i] }
                column.sort()
                if combiner == .median {
                    out[t].values[i] = n % 2 == 1 ? column[n / 2] : (column[n / 2 - 1] + column[n / 2]) / 2
                } else {
                    var sum: Float = 0
                    for k in trim..<(n - trim) { sum += column[k] }
                    out[t].values[i] = sum / Float(n - 2 * trim)
                }
            }
        }
        return out
    }

    /// The indices Multi-Krum keeps (see `Combiner.krum`), in buffer order.
    static func krum(_ deltas: [[Tensor]], scale: [Float], f: Int, keep: Int) -> [Int] {
        let n = deltas.count
        guard n > 1 else { return Array(0..<n) }
        var distance = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for a in 0..<n {
            for b in (a + 1)..<n {
                var sum = 0.0
                for t in deltas[a].indices {
                    let x = deltas[a][t].values, y = deltas[b][t].values
                    for i in x.indices {
                        let d = Double(scale[a] * x[i] - scale[b] * y[i])
                        sum += d * d
                    }
                }
                (distance[a][b], distance[b][a]) = (sum, sum)
            }
        }
        let neighbours = min(n - 1, max(1, n - f - 2))
        let score = (0..<n).map { a in
            (0..<n).filter { $0 != a }.map { distance[a][$0] }.sorted().prefix(neighbours).reduce(0, +)
        }
        let ranked = (0..<n).sorted { (score[$0], $0) < (score[$1], $1) }
        return ranked.prefix(max(1, min(keep, n))).sorted()
    }

    static func norm(_ tensors: [Tensor]) -> Double {
        var sum = 0.0
        for t in tensors { for v in t.values { sum += Double(v) * Double(v) } }
        return sum.squareRoot()
    }
}

/// A small seeded generator (SplitMix64): FedBuff's DP noise (Box-Muller)
/// and a seeded round coordinator's selections and task ids.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / 9_007_199_254_740_992 }
    mutating func gaussian() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) }
}

extension FedBuff: CohortStrategy {
    /// A cohort's mean is the mean rule's buffer when every update in it has
    /// the cohort's staleness: `s(tau) * meanDelta`, then a step of the server
    /// optimizer. Robust combiners, clipping and noise need the single
    /// updates: a server refuses them with cohorts (``cohortProblem``).
    public func applyCohort(meanDelta: [Tensor], staleness tau: UInt64, state: inout FederationState) {
        var step = meanDelta
        let s = Float(staleness(tau))
        if s != 1 {
            for t in step.indices { for i in step[t].values.indices { step[t].values[i] *= s } }
        }
        optimizer.step(&state, delta: step)
        state.scalars["steps"] = (state.scalars["steps"] ?? 0) + 1
    }

    /// Why this FedBuff cannot take cohorts' aggregates, or nil.
    public var cohortProblem: String? {
        if combiner != .mean {
            return "combine=\(combiner) needs every update on its own, which secure aggregation hides; use the mean"
        }
        if !weighBySamples {
            return
                "samples=false: a cohort's sum weighs its updates by their samples (the count rides in the masked sum)"
        }
        if clipping != .none || noiseMultiplier > 0 {
            return "the server cannot clip or noise updates it never sees; the clients clip (--secagg clip=)"
        }
        return nil
    }
}
