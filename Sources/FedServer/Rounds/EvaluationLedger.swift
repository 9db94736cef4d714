/// How one metric did on one model version across the clients that reported it.
///
/// `mean` is weighted by examples: `sum n_i v_i / sum n_i` in binary64, so for
/// an accuracy (correct answers / examples) it is the accuracy of the union
/// of the clients' held-out data. The others describe the clients, each
/// counted once whatever its examples: `p10` and `p90` are nearest-rank
/// percentiles (the value at rank `ceil(p n)` of the `n` values in ascending
/// order), `min` and `max` the extremes. The worst client is `min` for a
/// metric where higher is better (accuracy) and `max` for the loss.
public struct MetricDistribution: Sendable, Equatable, Codable {
    /// Clients that reported the metric.
    public var clients: Int
    /// Their examples.
    public var examples: UInt64
    public var mean: Double
    public var p10: Double
    public var p90: Double
    public var min: Double
    public var max: Double

    public init(clients: Int, examples: UInt64, mean: Double, p10: Double, p90: Double, min: Double, max: Double) {
        self.clients = clients
        self.examples = examples
        self.mean = mean
        self.p10 = p10
        self.p90 = p90
        self.min = min
        self.max = max
    }

    /// The distribution of `values` weighted by `weights` (examples; not
    /// empty, weights > 0, values finite).
    init(_ values: [Double], weights: [UInt64]) {
        precondition(!values.isEmpty && values.count == weights.count)
        var sum = 0.0
        var total: UInt64 = 0
        for (v, n) in zip(values, weights) {
            sum += Double(n) * v
            total = total.addingReportingOverflow(n).overflow ? .max : total + n
        }
        let sorted = values.sorted()
        func rank(_ p: Double) -> Double { sorted[Swift.max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1)] }
        self.init(
            clients: values.count, examples: total, mean: sum / Double(total), p10: rank(0.1), p90: rank(0.9),
            min: sorted.first!, max: sorted.last!)
    }
}

/// What the clients reported of one model version: the loss (as the metric
/// `loss`) and every named metric.
public struct EvaluationSummary: Sendable, Equatable, Codable {
    public var modelVersion: UInt64
    /// Clients that reported on the version.
    public var clients: Int
    /// Their examples, in all.
    public var examples: UInt64
    /// By metric name; `loss` is the reports' loss.
    public var metrics: [String: MetricDistribution]

    enum CodingKeys: String, CodingKey {
        case modelVersion = "model_version"
        case clients, examples, metrics
    }

    public init(modelVersion: UInt64, clients: Int, examples: UInt64, metrics: [String: MetricDistribution]) {
        self.modelVersion = modelVersion
        self.clients = clients
        self.examples = examples
        self.metrics = metrics
    }
}

/// The evaluation reports of recent model versions: one report per client and
/// version (a later one replaces it), at most `maxReportsPerVersion` clients a
/// version, the `keptVersions` highest versions reported on.
///
/// A value type without locks: its owner (`EvaluationDesk`) serializes it.
struct EvaluationLedger: Sendable {
    /// One client's report of one version.
    struct Entry: Sendable, Equatable {
        var examples: UInt64
        /// The loss under `loss`, and the named metrics.
        var values: [String: Double]
    }

    /// What `record` did.
    enum Outcome: Equatable {
        case recorded
        /// The version has `maxReportsPerVersion` other clients already.
        case full
    }

    let keptVersions: Int
    let maxReportsPerVersion: Int
    /// Version -> client id -> report.
    private(set) var versions: [UInt64: [String: Entry]] = [:]

    init(keptVersions: Int, maxReportsPerVersion: Int) {
        self.keptVersions = keptVersions
        self.maxReportsPerVersion = maxReportsPerVersion
    }

    /// Keeps `clientID`'s report of `version` (replacing its earlier one);
    /// forgets the lowest version when more than `keptVersions` are held.
    mutating func record(
        clientID: String, version: UInt64, examples: UInt64, loss: Double, metrics: [String: Double]
    ) -> Outcome {
        var reports = versions[version] ?? [:]
        if reports[clientID] == nil && reports.count >= maxReportsPerVersion { return .full }
        var values = metrics
        values["loss"] = loss
        reports[clientID] = Entry(examples: examples, values: values)
        versions[version] = reports
        while versions.count > keptVersions, let lowest = versions.keys.min() { versions[lowest] = nil }
        return .recorded
    }

    /// The distribution of every metric reported on `version`, or nil when none was.
    func summary(of version: UInt64) -> EvaluationSummary? {
        guard let reports = versions[version], !reports.isEmpty else { return nil }
        var columns: [String: (values: [Double], weights: [UInt64])] = [:]
        var examples: UInt64 = 0
        // In client order, so that equal inputs give bit-equal sums.
        for (_, entry) in reports.sorted(by: { $0.key < $1.key }) {
            examples = examples.addingReportingOverflow(entry.examples).overflow ? .max : examples + entry.examples
            for (name, value) in entry.values {
                columns[name, default: ([], [])].values.append(value)
                columns[name, default: ([], [])].weights.append(entry.examples)
            }
        }
        return EvaluationSummary(
            modelVersion: version, clients: reports.count, examples: examples,
            metrics: columns.mapValues { MetricDistribution($0.values, weights: $0.weights) })
    }

    /// Every version kept, in ascending order.
    var history: [EvaluationSummary] { versions.keys.sorted().compactMap(summary(of:)) }
}
