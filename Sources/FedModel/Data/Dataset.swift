/// Labelled samples in memory: `count` rows of `features` Float32 values and a label each.
public struct Dataset: Sendable {
    /// Row-major, `count * features` values.
    public var images: [Float]
    public var labels: [UInt8]
    public let features: Int
    public var count: Int { labels.count }

    public init(images: [Float], labels: [UInt8], features: Int) {
        precondition(images.count == labels.count * features)
        self.images = images
        self.labels = labels
        self.features = features
    }

    /// Rows `range` as a new data set.
    public func slice(_ range: Range<Int>) -> Dataset {
        Dataset(
            images: Array(images[range.lowerBound * features..<range.upperBound * features]),
            labels: Array(labels[range]), features: features)
    }

    /// The original demo's slicing: slices `L-1 ... R-1` of `sliceSize` samples
    /// (5,000), for `1 <= L <= R <= count / sliceSize`.
    public func slices(_ l: Int, _ r: Int, sliceSize: Int = 5000) throws(ModelError) -> [Dataset] {
        let available = count / sliceSize
        guard available >= 1 else {
            throw ModelError.invalidInput("data has \(count) samples, fewer than one slice of \(sliceSize)")
        }
        guard 1 <= l, l <= r, r <= available else {
            throw ModelError.invalidInput(
                "range \(l) \(r) is invalid: need 1 <= L <= R <= \(available) (\(available) slices of \(sliceSize))")
        }
        return (l...r).map { slice(($0 - 1) * sliceSize..<$0 * sliceSize) }
    }

    /// Splits into the first `n` samples and the rest.
    public func split(first n: Int) throws(ModelError) -> (Dataset, Dataset) {
        guard n > 0, n < count else {
            throw ModelError.invalidInput("cannot split \(count) samples after \(n)")
        }
        return (slice(0..<n), slice(n..<count))
    }
}
