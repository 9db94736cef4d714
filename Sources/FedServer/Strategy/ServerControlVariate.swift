import FedCodec

/// The server's SCAFFOLD control variate `c` (Karimireddy et al. 2020).
///
/// It starts at zeros; after a round whose sampled clients `S` (out of
/// ``population``) reported their changes `delta c_i`,
/// ``apply(_:)`` sets `c += (|S| / N) mean(delta c_i)`. The model itself is
/// aggregated by the strategy (FedAvg, with any server optimizer); the
/// variate travels to the clients beside the model.
public struct ServerControlVariate: Sendable, Equatable {
    /// `c`, in the model's order and shapes.
    public private(set) var variate: [Tensor]
    /// N: the clients that hold a variate of their own.
    public let population: Int

    /// Zeros of `shapes`, for `population` clients.
    ///
    /// - Precondition: `population > 0`.
    public init(shapes: [[Int]], population: Int) {
        precondition(population > 0)
        variate = shapes.map { Tensor(zeros: $0) }
        self.population = population
    }

    /// Folds one round's changes in: `c += (|S| / N) mean(changes)`, that is
    /// `c += sum(changes) / N`. Changes of other shapes than `c` are ignored
    /// (neither summed nor counted).
    public mutating func apply(_ changes: [[Tensor]]) {
        let valid = changes.filter { $0.map(\.shape) == variate.map(\.shape) }
        guard !valid.isEmpty else { return }
        let scale = Float(1 / Double(population))
        for change in valid {
            for t in variate.indices {
                for j in variate[t].values.indices { variate[t].values[j] += scale * change[t].values[j] }
            }
        }
    }
}
