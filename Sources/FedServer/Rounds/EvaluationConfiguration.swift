/// Federated evaluation (protocol version 4, feature `evaluation`): which
/// check-ins get an evaluate task, and what the server keeps of the reports.
///
/// A check-in whose client can evaluate and speaks the feature gets an
/// evaluate task of the current model version instead of waiting for a train
/// task with probability `fraction`, or always when it cannot train; never
/// twice for one version. Evaluation reports are kept per model version for
/// the last `keptVersions` versions reported on, at most `maxReportsPerVersion`
/// clients each.
public struct EvaluationConfiguration: Sendable, Equatable {
    /// The share of check-ins (0 to 1) given an evaluate task. Default 0: none.
    public var fraction: Double
    /// Time to report an evaluate task (the task's `deadline_ms`). Default 60 s.
    public var deadline: Duration
    /// Model versions whose evaluation is kept (the oldest is forgotten). Default 64.
    public var keptVersions: Int
    /// Clients whose reports one version keeps; later clients' reports are
    /// refused (`overloaded`). Default 10,000.
    public var maxReportsPerVersion: Int

    public init(
        fraction: Double = 0, deadline: Duration = .seconds(60), keptVersions: Int = 64,
        maxReportsPerVersion: Int = 10_000
    ) {
        self.fraction = fraction
        self.deadline = deadline
        self.keptVersions = keptVersions
        self.maxReportsPerVersion = maxReportsPerVersion
    }

    /// Why this configuration cannot run, or nil.
    public func problem() -> String? {
        if !(fraction >= 0 && fraction <= 1) {
            return "the evaluate fraction must be between 0 and 1 (got \(fraction))"
        }
        if deadline <= .zero || deadline > .seconds(86_400) {
            return "the evaluate deadline must be between 0 and 24 h (got \(deadline))"
        }
        if keptVersions < 1 { return "at least one version's evaluation must be kept (got \(keptVersions))" }
        if maxReportsPerVersion < 1 {
            return "a version must keep at least one evaluation report (got \(maxReportsPerVersion))"
        }
        return nil
    }
}
