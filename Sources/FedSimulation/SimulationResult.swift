import FedServer

/// One point of a run's learning curve: the server's model evaluated on the
/// test set after `samples` client samples were pushed.
public struct CurvePoint: Codable, Sendable, Equatable {
    /// Virtual seconds since the run started.
    public var virtualSeconds: Double
    /// Bytes all clients sent and received so far, frames included.
    public var bytes: Int
    /// Client samples pushed so far.
    public var samples: Int
    /// The share of test images the server's model classifies right (0 to 1).
    public var accuracy: Double

    /// A point with these figures.
    public init(virtualSeconds: Double, bytes: Int, samples: Int, accuracy: Double) {
        self.virtualSeconds = virtualSeconds
        self.bytes = bytes
        self.samples = samples
        self.accuracy = accuracy
    }
}

/// The outcome of one run: one strategy, one encoding, one scenario, one seed.
public struct SimulationResult: Codable, Sendable, Equatable {
    /// The strategy as written (`fedbuff/k=4`), with the encoding in brackets
    /// when it is not lossless full weights (`fedbuff [int8-delta]`).
    public var strategy: String
    /// The encoding setting (``EncodingSetting/description``).
    public var encoding: String
    /// ``SimulationConfiguration/scenario``.
    public var scenario: String
    /// The run's seed.
    public var seed: UInt64
    /// The accuracy at the last point of ``curve``.
    public var finalAccuracy: Double
    /// Virtual seconds the run took, to its last push.
    public var virtualSeconds: Double
    /// Bytes all clients sent and received, frames included.
    public var bytes: Int
    /// Bytes the clients sent (pushes, mostly).
    public var bytesSent: Int
    /// Bytes the clients received (models, mostly).
    public var bytesReceived: Int
    /// Model answers that were `MODEL_DELTA` steps.
    public var deltaFetches: Int
    /// Model answers that were full models.
    public var fullFetches: Int
    /// Pushes sent, refused ones included.
    public var pushes: Int
    /// Pushes the server refused.
    public var rejected: Int
    /// The server's model version at the end (versions published).
    public var versions: UInt64
    /// Wall-clock seconds the run took.
    public var wallSeconds: Double
    /// Where those seconds went; nil when not measured.
    public var wallTime: WallTime?
    /// The learning curve, in the order measured; its last point is the final model's.
    public var curve: [CurvePoint]
    /// What the rounds did, for a run through check-in
    /// (``SimulationConfiguration/checkIn``); nil for a run of pushes.
    public var rounds: RoundFigures?
    /// The privacy the run's published versions spent, with differential
    /// privacy (``SimulationConfiguration/privacy``); nil without.
    public var privacy: PrivacySpent?
    /// The final model on each client's held-out share, as served to it
    /// (``SimulationConfiguration/clientHoldout``); nil without a hold-out.
    public var clientAccuracy: AccuracyDistribution?
    /// The personalized models on each client's held-out share
    /// (``SimulationConfiguration/personalizeSteps``,
    /// ``SimulationConfiguration/privateTensors``); nil without personalization.
    public var personalizedAccuracy: AccuracyDistribution?

    /// The mean accuracy of the last three points of ``curve`` (of all of
    /// them when fewer).
    public var lastThreeAccuracy: Double {
        let tail = curve.suffix(3)
        return tail.map(\.accuracy).reduce(0, +) / Double(max(tail.count, 1))
    }

    /// The mean absolute change of accuracy between consecutive points of
    /// the second half of ``curve`` (points; 0 with fewer than two points):
    /// how much the model swings from one evaluation to the next.
    public var spread: Double {
        let tail = Array(curve.suffix(Swift.max(2, curve.count / 2)))
        guard tail.count > 1 else { return 0 }
        return zip(tail, tail.dropFirst()).map { abs($1.accuracy - $0.accuracy) }.reduce(0, +)
            / Double(tail.count - 1) * 100
    }

    /// A result with these figures.
    public init(
        strategy: String, encoding: String, scenario: String, seed: UInt64, finalAccuracy: Double,
        virtualSeconds: Double, bytes: Int, bytesSent: Int, bytesReceived: Int, deltaFetches: Int, fullFetches: Int,
        pushes: Int, rejected: Int, versions: UInt64, wallSeconds: Double, wallTime: WallTime? = nil,
        curve: [CurvePoint],
        rounds: RoundFigures? = nil, privacy: PrivacySpent? = nil, clientAccuracy: AccuracyDistribution? = nil,
        personalizedAccuracy: AccuracyDistribution? = nil
    ) {
        self.privacy = privacy
        self.clientAccuracy = clientAccuracy
        self.personalizedAccuracy = personalizedAccuracy
        self.strategy = strategy
        self.encoding = encoding
        self.scenario = scenario
        self.seed = seed
        self.finalAccuracy = finalAccuracy
        self.virtualSeconds = virtualSeconds
        self.bytes = bytes
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.deltaFetches = deltaFetches
        self.fullFetches = fullFetches
        self.pushes = pushes
        self.rejected = rejected
        self.versions = versions
        self.wallSeconds = wallSeconds
        self.wallTime = wallTime
        self.curve = curve
        self.rounds = rounds
    }
}

/// Where a run's wall-clock seconds went, phase by phase, as the simulation's
/// thread saw them (the rest of ``SimulationResult/wallSeconds`` is bookkeeping
/// between phases: partitioning, scheduling, control variates).
public struct WallTime: Codable, Sendable, Equatable {
    /// Starting the server, splitting the data among the clients, making the trainers.
    public var setup = 0.0
    /// Clients fetching the model (messages over 127.0.0.1, decoded) and preparing their tasks.
    public var fetch = 0.0
    /// Clients' local training (a synchronous round's clients side by side).
    public var training = 0.0
    /// Clients pushing their weights, the server's aggregation included.
    public var push = 0.0
    /// Evaluating the server's model on the test set for the learning curve.
    public var evaluation = 0.0

    public init() {}
}

/// What the server's rounds did in a run through check-in, in virtual time.
///
/// Every selected client is given a task; it trains it (real work), then
/// reports it at its virtual finish time, unless it drops out (it never
/// reports: ``dropped``). A report after its round closed or was abandoned
/// is refused (``late``).
public struct RoundFigures: Codable, Sendable, Equatable {
    /// Rounds closed: their reports' mean applied.
    public var completed: Int
    /// Rounds abandoned at their deadline with fewer reports than the minimum (then selected again).
    public var abandoned: Int
    /// Train tasks the clients trained (dropped ones included).
    public var tasks: Int
    /// Reports applied in closed rounds.
    public var applied: Int
    /// Reports refused because their round had closed or been abandoned.
    public var late: Int
    /// Tasks whose client never reported (``SimulationConfiguration/dropouts``).
    public var dropped: Int
    /// Samples the clients trained in all, the work of dropped and late tasks included
    /// (the budget counts applied samples only).
    public var samplesTrained: Int
    /// Mean virtual seconds from a closed round's selection to its closing.
    public var meanSeconds: Double
    /// The 90th percentile of those seconds.
    public var p90Seconds: Double
    /// The round deadline in force, virtual seconds.
    public var deadlineSeconds: Double

    /// Figures of these values.
    public init(
        completed: Int, abandoned: Int, tasks: Int, applied: Int, late: Int, dropped: Int, samplesTrained: Int,
        meanSeconds: Double, p90Seconds: Double, deadlineSeconds: Double
    ) {
        self.completed = completed
        self.abandoned = abandoned
        self.tasks = tasks
        self.applied = applied
        self.late = late
        self.dropped = dropped
        self.samplesTrained = samplesTrained
        self.meanSeconds = meanSeconds
        self.p90Seconds = p90Seconds
        self.deadlineSeconds = deadlineSeconds
    }
}
