import Foundation

/// How much an update trained from an older version counts: `s(tau)` for a
/// staleness `tau` (versions published since its base), in (0, 1].
public enum StalenessWeight: Sendable, Equatable, CustomStringConvertible {
    /// `s = 1`: staleness ignored.
    case constant
    /// `s = (1 + tau)^-a` (Xie et al. 2019; FedBuff's default is a = 0.5).
    case polynomial(Double)
    /// `s = 1` up to `b`, then `1 / (a (tau - b) + 1)` (Xie et al. 2019).
    case hinge(a: Double, b: Double)

    public func callAsFunction(_ staleness: UInt64) -> Double {
        let tau = Double(staleness)
        switch self {
        case .constant: return 1
        case .polynomial(let a): return pow(1 + tau, -a)
        case .hinge(let a, let b): return tau <= b ? 1 : 1 / (a * (tau - b) + 1)
        }
    }

    /// Parses `constant`, `poly:A` (or `polynomial:A`) and `hinge:A:B`.
    public init?(_ text: String) {
        let parts = text.split(separator: ":").map(String.init)
        switch parts.first {
        case "constant" where parts.count == 1: self = .constant
        case "poly", "polynomial":
            guard parts.count == 2, let a = Double(parts[1]), a >= 0 else { return nil }
            self = .polynomial(a)
        case "hinge":
            guard parts.count == 3, let a = Double(parts[1]), let b = Double(parts[2]), a >= 0, b >= 0 else {
                return nil
            }
            self = .hinge(a: a, b: b)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .constant: "constant"
        case .polynomial(let a): "poly:\(a)"
        case .hinge(let a, let b): "hinge:\(a):\(b)"
        }
    }
}
