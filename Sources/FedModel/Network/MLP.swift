import FedCodec

/// A multilayer perceptron with ReLU hidden layers and a softmax output,
/// trained with sparse categorical cross-entropy: by default the original
/// demo's 784-200-200-10.
///
/// Storage: layer `l` has a kernel `[inputs][outputs]` (row = input unit, as
/// Keras) and a bias, both padded with zeros so every width is a multiple of
/// 16 (200 -> 208, 10 -> 16) and the kernels never handle ragged edges. The
/// padding is invisible outside: `tensors()` and `load(_:)` use Keras's exact
/// shapes and order `[W1, b1, W2, b2, W3, b3]`. Invariant: padded entries are
/// zero, and stay zero in training because their gradients are exactly zero.
public struct MLP: Sendable {
    /// Unit counts, input first: `[784, 200, 200, 10]`.
    public let sizes: [Int]
    /// Padded unit counts.
    public let padded: [Int]
    /// `[W1, b1, W2, b2, ...]`, padded, row-major, 64-byte aligned.
    public internal(set) var parameters: [AlignedFloats]

    public static let mnistSizes = [784, 200, 200, 10]

    public var layerCount: Int { sizes.count - 1 }

    /// Glorot-uniform kernels and zero biases, from `seed` (as Keras initialises Dense).
    public init(sizes: [Int] = MLP.mnistSizes, seed: UInt64) {
        precondition(sizes.count >= 2 && sizes.allSatisfy { $0 > 0 })
        self.sizes = sizes
        self.padded = sizes.map { ($0 + 15) / 16 * 16 }
        var rng = SeededGenerator(seed: seed)
        var params: [AlignedFloats] = []
        for l in 0..<sizes.count - 1 {
            let fanIn = sizes[l], fanOut = sizes[l + 1]
            let limit = Float((6.0 / Double(fanIn + fanOut)).squareRoot())
            var w = [Float](repeating: 0, count: padded[l] * padded[l + 1])
            for i in 0..<fanIn {
                for j in 0..<fanOut { w[i * padded[l + 1] + j] = rng.uniform(limit) }
            }
            params.append(AlignedFloats(w))
            params.append(AlignedFloats(repeating: 0, count: padded[l + 1]))
        }
        parameters = params
    }

    /// The shapes of `tensors()`: `[in, out]` then `[out]` per layer.
    public var tensorShapes: [[Int]] {
        (0..<layerCount).flatMap { l in [[sizes[l], sizes[l + 1]], [sizes[l + 1]]] }
    }

    /// The number of real (unpadded) parameters: 199,210 for the MNIST MLP.
    public var parameterCount: Int { tensorShapes.reduce(0) { $0 + $1.reduce(1, *) } }

    /// The weights as FedCodec tensors in Keras order and shapes.
    public func tensors() -> [Tensor] {
        (0..<layerCount).flatMap { l -> [Tensor] in
            let rows = sizes[l], cols = sizes[l + 1], stride = padded[l + 1]
            // Row by row: the padded columns dropped.
            let kernel = parameters[2 * l].withUnsafeBufferPointer { w in
                [Float](unsafeUninitializedCapacity: rows * cols) { out, initialized in
                    for i in 0..<rows {
                        (out.baseAddress! + i * cols).initialize(from: w.baseAddress! + i * stride, count: cols)
                    }
                    initialized = rows * cols
                }
            }
            let bias = parameters[2 * l + 1].withUnsafeBufferPointer { Array($0[0..<cols]) }
            return [try! Tensor(shape: [rows, cols], values: kernel), try! Tensor(shape: [cols], values: bias)]
        }
    }

    /// Replaces the weights with `tensors` (Keras order and shapes).
    /// Throws `ModelError.shapeMismatch` and changes nothing if any shape differs.
    public mutating func load(_ tensors: [Tensor]) throws(ModelError) {
        let expected = tensorShapes
        guard tensors.map(\.shape) == expected else {
            throw ModelError.shapeMismatch(expected: expected, got: tensors.map(\.shape))
        }
        for l in 0..<layerCount {
            let rows = sizes[l], cols = sizes[l + 1], stride = padded[l + 1]
            // In place when the arrays are not shared; padding stays zero.
            parameters[2 * l].setAll(to: 0)
            parameters[2 * l].withUnsafeMutableBufferPointer { w in
                tensors[2 * l].values.withUnsafeBufferPointer { kernel in
                    for i in 0..<rows {
                        (w.baseAddress! + i * stride).update(from: kernel.baseAddress! + i * cols, count: cols)
                    }
                }
            }
            parameters[2 * l + 1].setAll(to: 0)
            parameters[2 * l + 1].withUnsafeMutableBufferPointer { b in
                tensors[2 * l + 1].values.withUnsafeBufferPointer { values in
                    b.baseAddress!.update(from: values.baseAddress!, count: cols)
                }
            }
        }
    }
}

/// Errors of FedModel.
public enum ModelError: Error, Equatable, CustomStringConvertible {
    case shapeMismatch(expected: [[Int]], got: [[Int]])
    case invalidInput(String)

    public var description: String {
        switch self {
        case .shapeMismatch(let e, let g): "weights have shapes \(g), the model needs \(e)"
        case .invalidInput(let s): s
        }
    }
}
