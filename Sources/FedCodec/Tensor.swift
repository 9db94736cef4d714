/// A dense Float32 tensor, row-major: the unit that travels in a tensor blob.
///
/// Invariant: `values.count` is the product of `shape` (1 for rank 0).
public struct Tensor: Hashable, Sendable {
    public private(set) var shape: [Int]
    public var values: [Float]

    /// Creates a tensor; throws `.invalidShape` if a dimension is negative or
    /// the value count is not the product of the shape.
    public init(shape: [Int], values: [Float]) throws(CodecError) {
        guard let count = Tensor.elementCount(shape), count == values.count else {
            throw CodecError(.invalidShape, "shape \(shape) does not hold \(values.count) values")
        }
        self.shape = shape
        self.values = values
    }

    /// For callers that have already checked `values.count` against `shape`.
    init(checkedShape shape: [Int], values: [Float]) {
        self.shape = shape
        self.values = values
    }

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        self.shape = shape
        self.values = [Float](repeating: 0, count: Tensor.elementCount(shape) ?? 0)
    }

    public var count: Int { values.count }

    /// The product of `shape`, or nil if a dimension is negative or the product overflows.
    public static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        return n
    }

    /// The shapes of the original demo's MNIST MLP, in Keras `get_weights()` order:
    /// `[W1 784x200, b1 200, W2 200x200, b2 200, W3 200x10, b3 10]` (199,210 floats).
    public static let mnistMLPShapes: [[Int]] = [[784, 200], [200], [200, 200], [200], [200, 10], [10]]
}
