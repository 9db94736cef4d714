/// How a model does across clients: each client's accuracy on its own
/// held-out share, summarized as the mean over clients (each client counts
/// once, whatever its share's size), the 10th percentile (nearest rank: the
/// `ceil(0.1 n)`-th lowest) and the worst.
public struct AccuracyDistribution: Codable, Sendable, Equatable {
    public var mean: Double
    public var p10: Double
    public var min: Double
    /// Clients measured (those with at least one held-out example).
    public var clients: Int

    /// A distribution of these figures.
    public init(mean: Double, p10: Double, min: Double, clients: Int) {
        self.mean = mean
        self.p10 = p10
        self.min = min
        self.clients = clients
    }

    /// The distribution of `accuracies`, one per client; nil when empty.
    public init?(_ accuracies: [Double]) {
        guard !accuracies.isEmpty else { return nil }
        let sorted = accuracies.sorted()
        let rank = Swift.max(1, Int((0.1 * Double(sorted.count)).rounded(.up)))
        self.init(
            mean: sorted.reduce(0, +) / Double(sorted.count), p10: sorted[rank - 1], min: sorted[0],
            clients: sorted.count)
    }

    /// `0.9312 / 0.8400 / 0.6000` (mean / p10 / min).
    public var text: String { String(format: "%.4f/%.4f/%.4f", mean, p10, self.min) }
}
