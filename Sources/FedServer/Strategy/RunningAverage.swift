import FedCodec

/// The original demo's rule: `Ws <- (a*Ws + b*Wc) / (a + b)`, `a <- a + b`
/// with `b` the claimed `datasets` (for `a = 0` the update replaces the model
/// exactly). The weights `a/(a+b)` and `b/(a+b)` are computed in Double, the
/// blend in Float. Every update publishes a version; staleness is ignored.
public struct RunningAverage: FederationStrategy {
    public init() {}

    public var name: String { "running-average" }
    /// The original's rule ignores staleness: no push is too stale for it.
    public var usesStaleness: Bool { false }

    public func accept(_ update: ClientUpdate, state: inout FederationState) -> Bool {
        let (a, b) = (state.samples, update.claimedSamples)
        let (total, overflow) = a.addingReportingOverflow(b)
        state.samples = overflow ? UInt64.max : total
        if a == 0 {
            state.weights = update.weights
            return true
        }
        let wa = Float(Double(a) / (Double(a) + Double(b)))
        let wb = Float(Double(b) / (Double(a) + Double(b)))
        for t in state.weights.indices {
            state.weights[t].values.withUnsafeMutableBufferPointer { o in
                update.weights[t].values.withUnsafeBufferPointer { u in
                    for i in 0..<o.count { o[i] = wa * o[i] + wb * u[i] }
                }
            }
        }
        return true
    }
}

/// FedAsync (Xie et al. 2019): every update publishes
/// `W <- (1 - a_t) W + a_t Wc` with `a_t = alpha * s(staleness)`.
public struct FedAsync: FederationStrategy {
    public var alpha: Double
    public var staleness: StalenessWeight

    /// Defaults: alpha 0.6, s(tau) = (1 + tau)^-0.5.
    public init(alpha: Double = 0.6, staleness: StalenessWeight = .polynomial(0.5)) {
        self.alpha = alpha
        self.staleness = staleness
    }

    public var name: String { "fedasync" }

    public func accept(_ update: ClientUpdate, state: inout FederationState) -> Bool {
        let a = Float(min(1, max(0, alpha * staleness(update.staleness))))
        for t in state.weights.indices {
            state.weights[t].values.withUnsafeMutableBufferPointer { o in
                update.weights[t].values.withUnsafeBufferPointer { u in
                    for i in 0..<o.count { o[i] = (1 - a) * o[i] + a * u[i] }
                }
            }
        }
        let (total, overflow) = state.samples.addingReportingOverflow(update.samples)
        state.samples = overflow ? UInt64.max : total
        return true
    }
}
