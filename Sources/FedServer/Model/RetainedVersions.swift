import FedCodec

/// The memory a `ModelStore` holds for versions it retains as bases of
/// deltas (`maxStaleness` versions besides the current one), counted in the
/// server's memory budget (`Protocol/SPEC.md` section 7).
///
/// A retained version holds its weights (4 bytes a value) and, with fetch
/// deltas, its quantized step. The retained versions may take at most half
/// of the budget, which bounds `maxStaleness` for a given model and budget;
/// the rest is left for requests and answers.
public struct RetainedVersions: Sendable, Equatable {
    /// Bytes one retained version holds.
    public let versionBytes: Int
    /// The budget the versions are counted in.
    public let memoryBudget: Int

    public init(shapes: [[Int]], deltaEncoding: ValueEncoding?, memoryBudget: Int) {
        let count = shapes.reduce(0) { $0 + $1.reduce(1, *) }
        let step = deltaEncoding.map { $0.encodedSize(count: count) + 16 * shapes.count + 64 } ?? 0
        self.versionBytes = max(1, 4 * count + step)
        self.memoryBudget = memoryBudget
    }

    /// The largest max staleness whose retained versions fit in half the budget.
    public var maxStaleness: Int { memoryBudget / 2 / versionBytes }

    /// Bytes held by `maxStaleness` retained versions.
    public func bytes(maxStaleness: Int) -> Int { maxStaleness * versionBytes }
}
