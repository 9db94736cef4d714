import FedCodec

/// Rounds the server runs (protocol version 4): clients check in, the server
/// selects a cohort, hands it train tasks, and closes the round at its
/// deadline or as soon as `cohortSize` reports arrived.
///
/// A round closes when `cohortSize` reports arrived, when every selected
/// client reported, or at `deadline` with at least `minimumReports`; then the
/// sample-weighted mean of its reports (FedAvg) is applied and written in one
/// checkpoint write. At the deadline with fewer, it is abandoned: nothing of
/// it is applied, its reports are answered `round_closed`, and a new round
/// is selected from the clients checked in.
public struct RoundConfiguration: Sendable {
    /// Reports that close a round early (the target cohort). Default 10.
    public var cohortSize: Int
    /// Clients selected per round, as a multiple of `cohortSize`, to absorb
    /// drop-outs (Bonawitz et al. 2019 select 130%). Default 1.3.
    public var overSelection: Double
    /// Reports a round needs at its deadline; nil (default): 80% of
    /// `cohortSize`, rounded up.
    public var minimumReports: Int?
    /// Time from selection to the deadline. Default 60 s.
    public var deadline: Duration
    /// How long the first checked-in client waits for more before a round
    /// opens with fewer than the selection size (but at least
    /// `minimumReports`). Default 5 s.
    public var selectionWindow: Duration
    /// The longest a check-in is held (a client's own wait is capped by it). Default 30 s.
    public var maxWait: Duration
    /// Rounds to run, then check-ins are answered `finished`; 0 (default): no end.
    public var totalRounds: UInt64
    /// Sent to every selected client with its task (`epochs`, `learning_rate`).
    public var parameters: [String: String]
    /// Who is selected among the clients checked in. Default uniform.
    public var selector: any ClientSelector
    /// Features this server speaks beyond those its configuration implies (see ``speaks``).
    public var features: Features
    /// How tasks are handed out. Default `.rounds`.
    public var admission: Admission

    /// How tasks are handed out.
    public enum Admission: Sendable, Equatable {
        /// Synchronous rounds: a cohort selected, the sample-weighted mean of
        /// its reports (FedAvg) applied when the round closes, whatever the
        /// server's strategy.
        case rounds
        /// For asynchronous strategies (FedBuff, FedAsync): a train task to
        /// each checking-in client while fewer than `cohortSize` are
        /// outstanding (the others wait their turn); each report is one update
        /// for the server's strategy, from its task's version. `deadline` is
        /// each task's: it frees the task's place, and a later report still
        /// counts as a stale update. Over-selection, the minimum, the
        /// selection window and total rounds do not apply; the selector is
        /// asked about each client alone (admitted if it selects it).
        case continuous
        /// For FedBuff under secure aggregation: each buffer is a cohort,
        /// selected as a round's is (at check-in, from the version then
        /// current), and up to `inFlight` cohorts run at once. A closed
        /// cohort's aggregate (the mean of its updates: secure aggregation
        /// reveals no single one) is one buffer for the server's strategy, a
        /// ``CohortStrategy``: scaled by s(staleness) of the cohort's base,
        /// then a step of its server optimizer. A cohort whose base is more
        /// than the store's `maxStaleness` versions behind when it closes is
        /// abandoned. Needs ``secureAggregation``, not ``privacy``.
        case cohorts(inFlight: Int)
    }

    /// Rounds open at once: `inFlight` with `.cohorts` admission, else 1.
    public var roundsInFlight: Int {
        if case .cohorts(let n) = admission { return n }
        return 1
    }
    /// The time rounds run on. Default: real time (``SystemRoundClock``); a
    /// simulation passes a ``VirtualRoundClock`` and advances it.
    public var clock: any RoundClock
    /// Client-level differential privacy (DP-FedAvg): the server samples
    /// each cohort (the selector is not asked), clips and noises the reports'
    /// mean, and stops publishing at the target epsilon. nil (default): none.
    /// Needs `.rounds` admission. With it a round closes when every selected
    /// client reported, or at its deadline with whatever arrived, even
    /// nothing (a round is never abandoned for want of reports, and an empty
    /// draw is a round of noise alone: either would make publishing depend
    /// on who took part); `cohortSize` is the expected cohort;
    /// over-selection does not apply and `minimumReports` is refused.
    public var privacy: DifferentialPrivacy?
    /// Seeds the selections and task ids, to make a run reproducible (a
    /// simulation, a test); nil (default): the system's random numbers. A
    /// seeded server's task ids can be predicted, and with ``privacy`` its
    /// noise too: never seed a deployment.
    public var seed: UInt64?
    /// Secure aggregation (SecAgg+): the selected clients must speak it; the
    /// server learns only the sum of their clipped, quantized updates. nil
    /// (default): none. Needs `.rounds` or `.cohorts` admission. With ``privacy`` the
    /// clients add the noise (distributed noise, `Protocol/SPEC.md` 12.13).
    public var secureAggregation: SecureAggregation?
    /// Called with the number of inputs in each secure sum the server decodes (tests).
    var secureSumDecoded: (@Sendable (Int) -> Void)?

    public init(
        cohortSize: Int = 10, overSelection: Double = 1.3, minimumReports: Int? = nil,
        deadline: Duration = .seconds(60), selectionWindow: Duration = .seconds(5), maxWait: Duration = .seconds(30),
        totalRounds: UInt64 = 0, parameters: [String: String] = [:], selector: any ClientSelector = UniformSelector(),
        features: Features = [], admission: Admission = .rounds, clock: any RoundClock = SystemRoundClock(),
        seed: UInt64? = nil, privacy: DifferentialPrivacy? = nil, secureAggregation: SecureAggregation? = nil
    ) {
        self.privacy = privacy
        self.secureAggregation = secureAggregation
        self.admission = admission
        self.cohortSize = cohortSize
        self.overSelection = overSelection
        self.minimumReports = minimumReports
        self.deadline = deadline
        self.selectionWindow = selectionWindow
        self.maxWait = maxWait
        self.totalRounds = totalRounds
        self.parameters = parameters
        self.selector = selector
        self.features = features
        self.clock = clock
        self.seed = seed
    }

    /// The features the rounds speak: ``features``, with differential
    /// privacy's bit when ``privacy`` is set.
    public var speaks: Features {
        var all = features
        if privacy != nil { all.insert(.differentialPrivacy) }
        if secureAggregation != nil { all.insert(.secureAggregation) }
        return all
    }

    /// The reports a round needs at its deadline.
    public var requiredReports: Int {
        minimumReports ?? (privacy != nil ? 1 : Int((Double(cohortSize) * 0.8).rounded(.up)))
    }

    /// Clients selected per round: `cohortSize x overSelection`, rounded up.
    public var selectionSize: Int { Int((Double(cohortSize) * overSelection).rounded(.up)) }

    /// Why this configuration cannot run, or nil.
    public func problem() -> String? {
        if cohortSize < 1 { return "the cohort size must be at least 1 (got \(cohortSize))" }
        if !(overSelection >= 1 && overSelection <= 10) {
            return "over-selection must be between 1 and 10 (got \(overSelection))"
        }
        if requiredReports < 1 || requiredReports > cohortSize {
            return "minimum reports must be between 1 and the cohort size \(cohortSize) (got \(requiredReports))"
        }
        if deadline <= .zero || deadline > .seconds(86_400) {
            return "the round deadline must be between 0 and 24 h (got \(deadline))"
        }
        if selectionWindow < .zero { return "the selection window cannot be negative" }
        if maxWait <= .zero || maxWait > .seconds(3_600) {
            return "the longest check-in wait must be between 0 and 1 h (got \(maxWait))"
        }
        if let bad = KeyValues.check(parameters) { return "round parameters: \(bad)" }
        if admission == .continuous && totalRounds != 0 {
            return
                "total rounds apply to synchronous rounds; continuous admission (an asynchronous strategy) runs until the server stops"
        }
        if case .cohorts(let n) = admission {
            if !(1...64).contains(n) { return "cohorts in flight must be between 1 and 64 (got \(n))" }
            if secureAggregation == nil {
                return
                    "cohorts of an asynchronous strategy run under secure aggregation only (without it, tasks are handed out continuously)"
            }
            if privacy != nil {
                return
                    "differential privacy needs synchronous rounds: overlapping cohorts of an asynchronous strategy are not accounted for"
            }
        }
        if let secure = secureAggregation {
            if admission == .continuous {
                return
                    "secure aggregation runs in rounds or cohorts: continuous admission weighs each update on its own, which secure aggregation hides"
            }
            if let privacy, privacy.sampling == .poisson {
                return
                    "secure aggregation with differential privacy needs --dp sampling=fixed: under Poisson sampling one client's presence changes the number of noise shares as well as the sum, which the accounting does not cover (a fixed cohort, replace-one neighbours, keeps the shares equal)"
            }
            // With differential privacy the cohort is exactly cohortSize (fixed sampling).
            let largest = privacy != nil ? cohortSize : selectionSize
            if let bad = secure.problem(cohort: largest) { return "secure aggregation: \(bad)" }
            let k = secure.neighbours(cohort: largest)
            if secure.threshold(cohort: largest) > k {
                return "secure aggregation: t must be at most k = \(k)"
            }
        }
        if let privacy {
            if admission == .continuous {
                return
                    "differential privacy needs synchronous rounds: an asynchronous strategy (fedbuff, fedasync) has no sampled cohort to account for, so no epsilon could be stated"
            }
            if let bad = privacy.problem(cohort: cohortSize) { return "differential privacy: \(bad)" }
            if minimumReports != nil {
                return
                    "differential privacy: a minimum of reports does not apply (a private round is published at its deadline with whatever arrived)"
            }
        }
        return nil
    }
}
