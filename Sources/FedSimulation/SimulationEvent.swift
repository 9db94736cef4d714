import Foundation

/// Progress of a simulation, reported as it happens.
///
/// Each event's ``description`` is the line `fed simulate` prints for it.
public enum SimulationEvent: Sendable, CustomStringConvertible {
    /// The centralized reference of `seed` is trained: its test accuracy.
    case centralized(seed: UInt64, accuracy: Double)
    /// A run starts: one strategy (as written) with one encoding on one seed.
    case runStarted(seed: UInt64, strategy: String, encoding: EncodingSetting)
    /// A point of the current run's learning curve, with the server's model version.
    case curvePoint(CurvePoint, version: UInt64)
    /// The server refused a push of `client` (the first three refusals of a
    /// run are reported; all are counted in ``SimulationResult/rejected``).
    case pushRefused(client: Int, reason: String)

    /// The line `fed simulate` prints.
    public var description: String {
        switch self {
        case .centralized(let seed, let accuracy):
            String(format: "seed %d: centralized, same budget: accuracy %.4f", seed, accuracy)
        case .runStarted(let seed, let strategy, let encoding):
            "seed \(seed): \(strategy)\(encoding == EncodingSetting() ? "" : " [\(encoding)]")"
        case .curvePoint(let point, let version):
            String(
                format: "  t %8.0f s  %9d samples pushed  version %5d  accuracy %.4f", point.virtualSeconds,
                point.samples, version, point.accuracy)
        case .pushRefused(let client, let reason):
            "  push of client \(client) refused: \(reason)"
        }
    }
}
