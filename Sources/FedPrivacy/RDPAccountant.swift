import Foundation

/// Which pairs of data sets count as neighbours: the guarantee holds between any two of them.
public enum NeighboringRelation: String, Sendable, Hashable, CustomStringConvertible {
    /// One data set is the other with one record added or removed (Poisson sampling's relation).
    case addOrRemoveOne = "add-or-remove-one"
    /// One data set is the other with one record replaced, the size public
    /// (the relation of sampling a fixed number without replacement).
    case replaceOne = "replace-one"

    public var description: String { rawValue }
}

/// A differentially private step that an accountant can compose: the Gaussian
/// mechanism (noise of standard deviation `noise × sensitivity` added to a sum of
/// clipped contributions), on all records or on a sample.
public enum DPEvent: Sendable, Hashable {
    /// The Gaussian mechanism on every record, no amplification by sampling.
    case gaussian(noise: Double)
    /// The Gaussian mechanism on a Poisson sample: each record joins
    /// independently with probability `samplingRate` (in `[0, 1]`).
    case poissonSampledGaussian(samplingRate: Double, noise: Double)
    /// The Gaussian mechanism on `sampleSize` records drawn uniformly without
    /// replacement from `populationSize` (`0 ≤ sampleSize ≤ populationSize`).
    case fixedSizeSampledGaussian(sampleSize: Int, populationSize: Int, noise: Double)

    /// The noise multiplier: the noise's standard deviation over the L2 sensitivity.
    public var noise: Double {
        switch self {
        case .gaussian(let noise), .poissonSampledGaussian(_, let noise), .fixedSizeSampledGaussian(_, _, let noise):
            noise
        }
    }

    /// The relation the event's bound is for; `nil` for the unsampled Gaussian, which holds under either.
    public var neighboringRelation: NeighboringRelation? {
        switch self {
        case .gaussian: nil
        case .poissonSampledGaussian: .addOrRemoveOne
        case .fixedSizeSampledGaussian: .replaceOne
        }
    }
}

/// A request an accountant cannot answer: a parameter out of range, or events
/// whose guarantees are for different neighbouring relations.
public struct PrivacyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong, in a sentence.
    public let message: String

    /// An error with this message.
    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// An accountant by Rényi differential privacy (RDP; Mironov 2017, "Rényi
/// Differential Privacy"): it keeps, for each of a list of orders α > 1, an
/// upper bound on the Rényi divergence of order α between the outputs on two
/// neighbouring data sets. Composing adds bounds order by order (Mironov 2017,
/// Proposition 1); ``epsilon(delta:)`` converts to (ε, δ)-differential privacy
/// at the best order.
///
/// It gives the numbers of Google's dp-accounting (`RdpAccountant`) for the same
/// events and orders:
///
/// ```swift
/// var accountant = RDPAccountant()
/// try accountant.compose(.poissonSampledGaussian(samplingRate: 0.01, noise: 1.1), count: 1_000)
/// let (epsilon, order) = accountant.epsilon(delta: 1e-5)  // 1.7118 at order 9.6
/// ```
public struct RDPAccountant: Sendable, Hashable {
    /// dp-accounting's default orders: 1.1, 1.2, ..., 10.9 (step 0.1), 11, 12, ..., 63,
    /// and 128, 256, 512, 1024.
    public static let defaultOrders: [Double] = {
        let fractional: [Double] = (1..<100).map { (x: Int) -> Double in 1 + Double(x) / 10 }
        let integers: [Double] = (11..<64).map { (x: Int) -> Double in Double(x) }
        let large: [Double] = [128, 256, 512, 1024]
        return fractional + integers + large
    }()

    /// The orders, each greater than 1.
    public let orders: [Double]
    /// The RDP bound so far at each of ``orders`` (0 before any event; may be `+infinity`).
    public private(set) var rdp: [Double]
    /// The neighbouring relation of the sampled events composed so far, if any.
    public private(set) var neighboringRelation: NeighboringRelation?

    /// An accountant with nothing composed yet, over these orders (each greater than 1).
    public init(orders: [Double] = RDPAccountant.defaultOrders) {
        precondition(!orders.isEmpty && orders.allSatisfy { $0 > 1 }, "RDP orders must be greater than 1")
        self.orders = orders
        self.rdp = [Double](repeating: 0, count: orders.count)
    }

    /// Adds `count` runs of `event` (`count × RDP(event)` at each order).
    ///
    /// Throws if a parameter is out of range (a rate outside `[0, 1]`, a negative
    /// noise, a sample larger than its population, a negative count) or if the
    /// event's neighbouring relation differs from that of the sampled events
    /// already composed (Poisson sampling is for add-or-remove-one, a fixed
    /// sample size for replace-one; as in dp-accounting they do not mix).
    public mutating func compose(_ event: DPEvent, count: Int = 1) throws(PrivacyError) {
        let values = try Self.rdp(of: event, orders: orders)
        guard count >= 0 else { throw PrivacyError("the count must not be negative (got \(count))") }
        if let relation = event.neighboringRelation {
            if let current = neighboringRelation, current != relation {
                throw PrivacyError(
                    "cannot compose an event for \(relation) neighbours with events for \(current) neighbours")
            }
            neighboringRelation = relation
        }
        guard count > 0 else { return }
        for index in rdp.indices { rdp[index] += Double(count) * values[index] }
    }

    /// The smallest ε over the orders such that everything composed is
    /// (ε, `delta`)-differentially private, and the order that gave it
    /// (see ``epsilon(orders:rdp:delta:)``).
    public func epsilon(delta: Double) -> (epsilon: Double, order: Double) {
        Self.epsilon(orders: orders, rdp: rdp, delta: delta)
    }

    /// The smallest δ over the orders such that everything composed is
    /// (`epsilon`, δ)-differentially private, and the order that gave it
    /// (see ``delta(orders:rdp:epsilon:)``).
    public func delta(epsilon: Double) -> (delta: Double, order: Double) {
        Self.delta(orders: orders, rdp: rdp, epsilon: epsilon)
    }

    /// The RDP of one run of `event` at each order.
    ///
    /// - `.gaussian`: `α / (2σ²)` (Mironov 2017).
    /// - `.poissonSampledGaussian`: `log(A_α) / (α - 1)`, with `A_α` by its binomial
    ///   expansion for integer orders and by the two erfc series for fractional ones
    ///   (Mironov, Talwar, Zhang 2019, Sections 3.2 and 3.3). An order whose series
    ///   does not converge in 1,000 terms is `+infinity` (never chosen).
    /// - `.fixedSizeSampledGaussian`: the bound of Wang, Balle, Kasiviswanathan 2019
    ///   (Theorem 27) at `q = sampleSize / populationSize`, interpolated between
    ///   integer orders for fractional ones (their Corollary 10).
    public static func rdp(of event: DPEvent, orders: [Double]) throws(PrivacyError) -> [Double] {
        let noise = event.noise
        guard noise >= 0, !noise.isNaN else {
            throw PrivacyError("the noise multiplier must not be negative (got \(noise))")
        }
        switch event {
        case .gaussian:
            return orders.map { SampledGaussian.gaussian(noise: noise, order: $0) }
        case .poissonSampledGaussian(let q, _):
            guard q >= 0, q <= 1 else { throw PrivacyError("the sampling rate must be in [0, 1] (got \(q))") }
            return orders.map { SampledGaussian.poisson(rate: q, noise: noise, order: $0) }
        case .fixedSizeSampledGaussian(let m, let n, _):
            guard n > 0, m >= 0, m <= n else {
                throw PrivacyError(
                    "the sample size must be in 0...population size, and the population positive (got \(m) of \(n))")
            }
            let q = Double(m) / Double(n)
            return orders.map { SampledGaussian.withoutReplacement(rate: q, noise: noise, order: $0) }
        }
    }

    /// Converts RDP bounds to (ε, δ)-DP: the smallest over the orders of
    /// `ε(α) = RDP(α) + log(1 - 1/α) - log(δ·α) / (α - 1)`
    /// (Canonne, Kamath, Steinke 2020, Proposition 12; Asoodeh et al. 2020,
    /// Equation 20), tighter than Mironov's `RDP(α) - log(δ) / (α - 1)`.
    /// As in dp-accounting: an order at most 1.01 gives no bound (the formula is
    /// unstable there); if `δ² > 1 - e^{-RDP(α)}` the bound through the KL
    /// divergence, `δ ≤ √(1 - e^{-KL})`, already gives ε = 0; a negative RDP (a
    /// numerical accident) gives 0; the result is never below 0. δ = 0 gives 0 if
    /// every bound is 0 and `+infinity` otherwise, with order 0.
    public static func epsilon(orders: [Double], rdp: [Double], delta: Double) -> (epsilon: Double, order: Double) {
        precondition(orders.count == rdp.count, "one RDP bound per order")
        precondition(delta >= 0, "delta must not be negative")
        if delta == 0 { return (rdp.allSatisfy { $0 == 0 } ? 0 : .infinity, 0) }
        var best = (epsilon: Double.infinity, order: orders.first ?? 0)
        for (a, r) in zip(orders, rdp) {
            let epsilon: Double
            if r < 0 {
                epsilon = 0
            } else if delta * delta + expm1(-r) > 0 {
                epsilon = 0
            } else if a > 1.01 {
                epsilon = r + log1p(-1 / a) - log(delta * a) / (a - 1)
            } else {
                epsilon = .infinity
            }
            if epsilon < best.epsilon { best = (epsilon, a) }
        }
        return (max(0, best.epsilon), best.order)
    }

    /// Converts RDP bounds to (ε, δ)-DP the other way: the smallest over the
    /// orders of `δ(α) = min(√(1 - e^{-RDP(α)}), exp((α - 1)(RDP(α) - ε + log(1 - 1/α)) - log α))`
    /// (the second for α > 1.01 only; Canonne, Kamath, Steinke 2020, Proposition 12),
    /// at most 1, and the order that gave it.
    public static func delta(orders: [Double], rdp: [Double], epsilon: Double) -> (delta: Double, order: Double) {
        precondition(orders.count == rdp.count, "one RDP bound per order")
        precondition(epsilon >= 0, "epsilon must not be negative")
        var best = (logDelta: Double.infinity, order: orders.first ?? 0)
        for (a, r) in zip(orders, rdp) {
            var logDelta: Double
            if r <= 0 {
                logDelta = -.infinity
            } else {
                logDelta = 0.5 * log1p(-exp(-r))
            }
            if a > 1.01 && r > 0 {
                logDelta = min(logDelta, (a - 1) * (r - epsilon + log1p(-1 / a)) - log(a))
            }
            if logDelta < best.logDelta { best = (logDelta, a) }
        }
        return (min(exp(best.logDelta), 1), best.order)
    }
}
