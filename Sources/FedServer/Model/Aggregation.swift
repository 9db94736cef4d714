import FedCodec

/// How the server folds an accepted update into its model.
public protocol AggregationStrategy: Sendable {
    /// The new weights and sample count after folding `update` (trained on
    /// `updateCount` samples) into `current` (trained on `currentCount`).
    /// Inputs are validated: same shapes, finite values, `updateCount > 0`.
    func aggregate(current: [Tensor], currentCount: UInt64, update: [Tensor], updateCount: UInt64)
        -> (tensors: [Tensor], count: UInt64)
}

/// The original demo's rule: `Ws <- (a*Ws + b*Wc) / (a + b)`, `a <- a + b`
/// (for `a = 0` the update replaces the model exactly). The weights `a/(a+b)`
/// and `b/(a+b)` are computed in Double, the blend in Float.
public struct FederatedAveraging: AggregationStrategy {
    public init() {}

    public func aggregate(current: [Tensor], currentCount: UInt64, update: [Tensor], updateCount: UInt64)
        -> (tensors: [Tensor], count: UInt64)
    {
        let (total, overflow) = currentCount.addingReportingOverflow(updateCount)
        let count = overflow ? UInt64.max : total
        if currentCount == 0 { return (update, count) }
        let a = Float(Double(currentCount) / (Double(currentCount) + Double(updateCount)))
        let b = Float(Double(updateCount) / (Double(currentCount) + Double(updateCount)))
        let blended = zip(current, update).map { s, c -> Tensor in
            var out = s
            out.values.withUnsafeMutableBufferPointer { o in
                c.values.withUnsafeBufferPointer { u in
                    for i in 0..<o.count { o[i] = a * o[i] + b * u[i] }
                }
            }
            return out
        }
        return (blended, count)
    }
}
