import Foundation

extension RDPAccountant {
    /// The smallest noise multiplier z (to 0.1% relative) such that `steps`
    /// runs of `event(z)` are (`epsilon`, `delta`)-differentially private,
    /// found by bisection (ε falls as z grows).
    ///
    /// Throws if `epsilon` or `delta` is out of range, if no noise up to
    /// 10,000 reaches `epsilon`, or if `event` throws.
    public static func noiseMultiplier(
        epsilon: Double, delta: Double, steps: Int, orders: [Double] = RDPAccountant.defaultOrders,
        event: (Double) -> DPEvent
    ) throws(PrivacyError) -> Double {
        guard epsilon > 0, epsilon.isFinite else { throw PrivacyError("epsilon must be positive (got \(epsilon))") }
        guard delta > 0, delta < 1 else { throw PrivacyError("delta must be in (0, 1) (got \(delta))") }
        guard steps >= 1 else { throw PrivacyError("the steps must be at least 1 (got \(steps))") }
        func spent(_ z: Double) throws(PrivacyError) -> Double {
            var accountant = RDPAccountant(orders: orders)
            try accountant.compose(event(z), count: steps)
            return accountant.epsilon(delta: delta).epsilon
        }
        var high = 1.0
        while try spent(high) > epsilon {
            high *= 2
            guard high <= 10_000 else {
                throw PrivacyError("no noise multiplier up to 10000 gives epsilon \(epsilon) over \(steps) steps")
            }
        }
        var low = 0.0
        while high - low > 1e-3 * high {
            let mid = (low + high) / 2
            if try spent(mid) > epsilon { low = mid } else { high = mid }
        }
        return high
    }
}
