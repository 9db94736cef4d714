import FedCodec
import FedServer

/// What a simulated federation is made of, and what is compared.
///
/// Every value has the default that `fed simulate --help` states. A
/// simulation runs every strategy in ``strategies`` with every encoding in
/// ``encodings`` on each of ``seeds`` seeds (``seed``, `seed + 1`, ...), and,
/// unless ``centralized`` is false, first trains one model centrally on each
/// seed with the same budget as the reference.
public struct SimulationConfiguration: Sendable {
    /// The strategies compared, in order (the first is the baseline of
    /// ``SimulationReport/timeToReach``). Default: `running-average`,
    /// `fedasync`, `fedbuff`, each with its default options.
    public var strategies: [StrategySpec] = SimulationConfiguration.defaultStrategies
    /// The encodings compared, in order (the first is the reference of
    /// ``SimulationReport/pairedDifferences``). Default: lossless full weights only.
    public var encodings: [EncodingSetting] = [EncodingSetting()]
    /// The first seed (weights, partition, speeds, shuffles); default 1.
    public var seed: UInt64 = 1
    /// Seeds per strategy and encoding (1 to 20); default 1.
    public var seeds = 1
    /// Trains the centralized reference on each seed first; default true.
    public var centralized = true

    /// Simulated clients (1 to 1000); default 100.
    public var clients = 100
    /// How the training images are split among the clients; default ``Partition/iid``.
    public var partition = Partition.iid
    /// Local epochs over its share in each round of a client (at least 1); default 1.
    public var localEpochs = 1
    /// Local batch size (1 to 256); default 32.
    public var batchSize = 32
    /// The clients' Adam learning rate; default 0.001.
    public var learningRate: Float = 0.001
    /// Each client keeps its Adam state from round to round, as `fed client`
    /// and the original's Keras clients do (8 bytes per weight per client);
    /// false: a fresh Adam every round, as in Flower's setting. Default true.
    public var keepOptimizerState = true
    /// Client samples to train in all, every strategy alike (each local
    /// epoch of each client counts its images; at least 1); default 1,200,000.
    public var budget = 1_200_000
    /// Virtual seconds a client of speed 1 takes per sample; default 0.01.
    public var secondsPerSample = 0.01
    /// Virtual seconds of one message (a fetch or a push); default 0.5.
    public var messageSeconds = 0.5
    /// Sigma of the lognormal client speeds; default 0.5.
    public var speedSigma = 0.5
    /// Fraction of clients 10x slower (0 to 1); default 0.
    public var stragglers = 0.0
    /// Fraction of clients that attack (0 to 1); default 0.
    public var attackers = 0.0
    /// What the attackers push; default ``Attack/signflip``.
    public var attack = Attack.signflip
    /// Synchronous rounds with this fraction of the clients each (more than 0,
    /// at most 1); nil (the default): asynchronous.
    public var syncFraction: Double?
    /// Runs the synchronous rounds of ``syncFraction`` through the server's
    /// check-in (its rounds of protocol version 4: check-in, selection,
    /// deadlines, FedAvg of the reports) instead of pushes, in virtual time;
    /// default false. Needs ``syncFraction`` (the cohort is that fraction of
    /// the clients, rounded); ``strategies`` are then not used (a round is
    /// the sample-weighted mean of its reports) and only the first runs.
    /// ``overSelection``, ``dropouts``, ``roundDeadline`` and
    /// ``minimumReports`` shape the rounds.
    public var checkIn = false
    /// Check-in: clients selected per round, as a multiple of the cohort
    /// (1 to 10); default 1.0 (no over-selection).
    public var overSelection = 1.0
    /// Check-in: the chance that a selected client never reports its task
    /// (at least 0, less than 1), drawn per task from the seed, so runs of
    /// one seed drop the same tasks; default 0.
    public var dropouts = 0.0
    /// Check-in: virtual seconds from a round's selection to its deadline
    /// (more than 0, at most 86,400); nil (the default): twice the time the
    /// 90th-percentile client takes for its task (two messages and its
    /// local epochs), rounded up to a whole second.
    public var roundDeadline: Double?
    /// Check-in: reports a round needs at its deadline (1 to the cohort);
    /// nil (the default): the server's default, 80% of the cohort rounded up.
    public var minimumReports: Int?
    /// Check-in: client-level differential privacy in the server's rounds
    /// (DP-FedAvg: sampling, clipping, noise, the accountant, the target
    /// epsilon ending the run); nil (default): none. Its population must be
    /// ``clients``; the cohort is ``cohortSize``.
    public var privacy: DifferentialPrivacy?
    /// Check-in: secure aggregation (SecAgg+) in the server's rounds, with
    /// the real cryptography and messages (`SecAggParticipant` on each
    /// client); nil (default): none. Not with ``privacy``.
    public var secureAggregation: SecureAggregation?
    /// With ``secureAggregation``: the chance that a client of a secure
    /// round is gone after a stage (it sends that stage's message and
    /// nothing more), per stage; drawn from the seed, the client and its count
    /// of tasks. At most one stage is drawn per task: the fractions add up
    /// to at most 1.
    public var secureDropouts: [SecureStage: Double] = [:]
    /// With ``secureAggregation`` and a `fedbuff` strategy: cohorts (each a
    /// buffer) open at once, 1 to 64 (`fed server --cohorts-in-flight`).
    /// Default 2. Other strategies run secure rounds one at a time.
    public var cohortsInFlight = 2

    /// Whether runs of `spec` go through secure cohorts (each a buffer of
    /// `fedbuff`) rather than the server's FedAvg rounds.
    public func runsCohorts(_ spec: StrategySpec) -> Bool {
        checkIn && secureAggregation != nil && spec.text.split(separator: "/").first == "fedbuff"
    }
    /// The fraction of each client's share it never trains on and measures
    /// the final model on (at least 0, less than 1; rounded down per
    /// client); each run then gains ``SimulationResult/clientAccuracy``.
    /// Default 0: clients train on all of their share and nothing is
    /// measured on them.
    public var clientHoldout = 0.0
    /// Personalization: steps of local fine-tuning of the final model on each
    /// client's training share before it is measured on its held-out share
    /// (``SimulationResult/personalizedAccuracy``); needs ``clientHoldout``.
    /// Default 0: none.
    public var personalizeSteps = 0
    /// FedPer: indices of the model's tensors that stay on each client (in
    /// the model's order; for the MLP `[W1, b1, W2, b2, W3, b3]`, so `[4, 5]`
    /// keeps the head). A client trains its own values of them and pushes the
    /// served values back unchanged, so the server aggregates only the shared
    /// tensors. Needs ``clientHoldout``. Default none.
    public var privateTensors: [Int] = []
    /// Points of the learning curve (at least 1); default 10.
    public var evalPoints = 10
    /// Blob compression of the clients; default none.
    public var compression = Compression.none
    /// Versions the server keeps as bases of stale updates; nil (the
    /// default): 2 x clients, at least 16, at most what the server's memory
    /// budget holds; 16 through check-in (reports are never stale; the
    /// budget holds the cohort's reports instead).
    public var maxStaleness: Int?
    /// Most samples one update counts for; default 10,000.
    public var maxUpdateSamples: UInt64 = 10_000

    /// The defaults above.
    public init() {}

    /// `running-average`, `fedasync` and `fedbuff`, each with its default options.
    public static var defaultStrategies: [StrategySpec] {
        ["running-average", "fedasync", "fedbuff"].map { try! StrategySpec($0) }
    }

    /// The scenario's name in tables: partition, mode, optimizer state,
    /// stragglers, attackers (`iid, sync 0.1, 20% stragglers`).
    public var scenario: String {
        var s = partition.description
        if let f = syncFraction { s += ", sync \(f)" }
        if checkIn {
            s += ", check-in"
            if overSelection != 1 { s += ", over-selection \(overSelection)" }
            if dropouts > 0 { s += ", \(Self.percent(dropouts)) dropouts" }
            if let d = roundDeadline { s += ", deadline \(d) s" }
            if let m = minimumReports { s += ", min \(m) reports" }
            if let p = privacy { s += ", DP z \(Self.short(p.noiseMultiplier))" }
            if let a = secureAggregation {
                s += ", secagg \(a.bits)-bit"
                for stage in SecureStage.allCases {
                    if let f = secureDropouts[stage], f > 0 { s += ", \(Self.percent(f)) gone after \(stage)" }
                }
            }
        }
        if !keepOptimizerState { s += ", fresh Adam" }
        if !privateTensors.isEmpty { s += ", private \(privateTensors.map(String.init).joined(separator: ","))" }
        if stragglers > 0 { s += ", \(Int(stragglers * 100))% stragglers" }
        if attackers > 0 { s += ", \(Int(attackers * 100))% \(attack)" }
        return s
    }

    /// Checks every count and fraction against the ranges stated above.
    ///
    /// - Throws: ``SimulationError`` naming the first value out of range.
    public func validate() throws(SimulationError) {
        func require(_ ok: Bool, _ what: String) throws(SimulationError) {
            if !ok { throw SimulationError("\(what) is out of range") }
        }
        try require(!strategies.isEmpty, "strategies (none)")
        try require(!encodings.isEmpty, "encodings (none)")
        try require((1...20).contains(seeds), "seeds \(seeds) (1 to 20)")
        try require((1...1000).contains(clients), "clients \(clients) (1 to 1000)")
        try require(localEpochs >= 1, "localEpochs \(localEpochs) (at least 1)")
        try require((1...256).contains(batchSize), "batchSize \(batchSize) (1 to 256)")
        try require(budget >= 1, "budget \(budget) (at least 1)")
        try require(evalPoints >= 1, "evalPoints \(evalPoints) (at least 1)")
        try require((0...1).contains(stragglers), "stragglers \(stragglers) (0 to 1)")
        try require((0...1).contains(attackers), "attackers \(attackers) (0 to 1)")
        if let f = syncFraction { try require(f > 0 && f <= 1, "syncFraction \(f) (more than 0, at most 1)") }
        try require(clientHoldout >= 0 && clientHoldout < 1, "clientHoldout \(clientHoldout) (at least 0, less than 1)")
        try require(personalizeSteps >= 0, "personalizeSteps \(personalizeSteps) (at least 0)")
        try require(
            clientHoldout > 0 || (personalizeSteps == 0 && privateTensors.isEmpty),
            "personalizeSteps or privateTensors without clientHoldout (personalized models are measured on it)")
        try require(
            privateTensors.allSatisfy { (0..<6).contains($0) } && Set(privateTensors).count == privateTensors.count,
            "privateTensors \(privateTensors) (distinct indices of the MLP's 6 tensors, 0 to 5)")
        try require(
            !checkIn || privateTensors.isEmpty, "privateTensors with checkIn (reports are the clients' whole models)")
        if strategies.contains(where: \.controlVariates) {
            try require(
                syncFraction != nil && !checkIn,
                "a strategy with control variates (scaffold) without synchronous pushes (--sync without --check-in)")
        }
        if checkIn {
            try require(syncFraction != nil, "checkIn without syncFraction (check-in runs synchronous rounds)")
            try require(
                encodings == [EncodingSetting()], "encodings with checkIn (reports travel as lossless full weights)")
            try require((1...10).contains(overSelection), "overSelection \(overSelection) (1 to 10)")
            try require(dropouts >= 0 && dropouts < 1, "dropouts \(dropouts) (at least 0, less than 1)")
            if let d = roundDeadline {
                try require(d > 0 && d <= 86_400, "roundDeadline \(d) (more than 0, at most 86,400)")
            }
            if let m = minimumReports {
                try require((1...cohortSize).contains(m), "minimumReports \(m) (1 to the cohort, \(cohortSize))")
            }
        }
        if let a = secureAggregation {
            try require(checkIn, "secureAggregation without checkIn (secure aggregation runs in the server's rounds)")
            try require(
                !a.consistency,
                "secureAggregation with the consistency check (it runs over TCP between fed server and fed clients with identities; fed simulate does not run it)"
            )
            let n = Int((Double(cohortSize) * overSelection).rounded(.up))
            if let problem = a.problem(cohort: n) { throw SimulationError("secure aggregation: \(problem)") }
            try require((1...64).contains(cohortsInFlight), "cohortsInFlight \(cohortsInFlight) (1 to 64)")
            let total = secureDropouts.values.reduce(0, +)
            try require(
                secureDropouts.values.allSatisfy { $0 >= 0 } && total <= 1, "secureDropouts \(total) (0 to 1 in all)")
        } else {
            try require(secureDropouts.isEmpty, "secureDropouts without secureAggregation")
        }
        if let p = privacy {
            try require(checkIn, "privacy without checkIn (differential privacy runs in the server's rounds)")
            try require(p.population == clients, "privacy's population \(p.population) (the clients, \(clients))")
            if let problem = p.problem(cohort: cohortSize) { throw SimulationError("privacy: \(problem)") }
        }
    }

    /// The stage of a secure round after which a client can be gone.
    public enum SecureStage: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
        /// It advertised its keys and shares nothing.
        case keys
        /// It shared its keys and sends no masked input.
        case shares
        /// It sent its masked input and reveals no share.
        case input
        public var description: String { rawValue }
    }

    /// Clients per synchronous round: ``syncFraction`` of ``clients``,
    /// rounded, at least 1 (1 without ``syncFraction``).
    public var cohortSize: Int { max(1, Int(((syncFraction ?? 0) * Double(clients)).rounded())) }

    /// A number with at most 3 decimals (`1.134`).
    static func short(_ x: Double) -> String { String((x * 1000).rounded() / 1000) }

    /// `20%`, `2.5%`.
    static func percent(_ fraction: Double) -> String {
        let p = (fraction * 1000).rounded() / 10
        return p == p.rounded() ? "\(Int(p))%" : "\(p)%"
    }
}
