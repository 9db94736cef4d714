import FedCodec

/// The model of the secure-aggregation tests over TCP: two small tensors.
let secureTestShapes = [[3, 4], [4]]

/// Client `i`'s update in those tests: a fixed pattern scaled by `i + 1`, so a cohort's mean is known.
func secureTestDelta(_ i: Int) -> [Tensor] {
    secureTestShapes.enumerated().map { t, shape in
        let count = shape.reduce(1, *)
        return try! Tensor(
            shape: shape, values: (0..<count).map { Float(($0 * 5 + t * 2) % 9 - 4) * 0.01 * Float(i + 1) })
    }
}
