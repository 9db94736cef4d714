import FedCodec
import FedModel
import Foundation

/// Multinomial logistic regression: `softmax(x W + b)`, trained with
/// mini-batch SGD on the cross-entropy. Its weights travel as two tensors,
/// `W` (features x classes) and `b` (classes).
struct LogisticRegression {
    let features: Int
    let classes: Int
    var w: [Float]
    var b: [Float]

    init(features: Int, classes: Int) {
        self.features = features
        self.classes = classes
        w = [Float](repeating: 0, count: features * classes)
        b = [Float](repeating: 0, count: classes)
    }

    /// The weights as the server stores them.
    var tensors: [Tensor] {
        [
            try! Tensor(shape: [features, classes], values: w),
            try! Tensor(shape: [classes], values: b),
        ]
    }

    /// Takes the server's weights; they must have this model's shapes.
    mutating func load(_ t: [Tensor]) throws {
        guard t.map(\.shape) == [[features, classes], [classes]] else {
            throw ExampleError("the server's model has shapes \(t.map(\.shape)), not logistic regression's")
        }
        w = t[0].values
        b = t[1].values
    }

    /// Class probabilities of sample `i` of `data`, into `p`.
    private func probabilities(_ data: Dataset, _ i: Int, into p: inout [Float]) {
        let x = i * features
        for c in 0..<classes { p[c] = b[c] }
        data.images.withUnsafeBufferPointer { images in
            w.withUnsafeBufferPointer { w in
                for f in 0..<features {
                    let v = images[x + f]
                    if v == 0 { continue }
                    let row = f * classes
                    for c in 0..<classes { p[c] += v * w[row + c] }
                }
            }
        }
        let top = p.max()!
        var sum: Float = 0
        for c in 0..<classes {
            p[c] = (p[c] - top).exp()
            sum += p[c]
        }
        for c in 0..<classes { p[c] /= sum }
    }

    /// One epoch of SGD over `data` in a seeded order.
    mutating func trainEpoch(_ data: Dataset, learningRate: Float, batch: Int, rng: inout SeededGenerator) {
        var order = Array(0..<data.count)
        rng.shuffle(&order)
        var p = [Float](repeating: 0, count: classes)
        var gw = [Float](repeating: 0, count: features * classes)
        var gb = [Float](repeating: 0, count: classes)
        for start in stride(from: 0, to: order.count, by: batch) {
            let end = min(start + batch, order.count)
            for k in gw.indices { gw[k] = 0 }
            for k in gb.indices { gb[k] = 0 }
            for i in order[start..<end] {
                probabilities(data, i, into: &p)
                p[Int(data.labels[i])] -= 1  // d(loss)/d(logits)
                let x = i * features
                data.images.withUnsafeBufferPointer { images in
                    for f in 0..<features {
                        let v = images[x + f]
                        if v == 0 { continue }
                        for c in 0..<classes { gw[f * classes + c] += v * p[c] }
                    }
                }
                for c in 0..<classes { gb[c] += p[c] }
            }
            let step = learningRate / Float(end - start)
            for k in w.indices { w[k] -= step * gw[k] }
            for c in b.indices { b[c] -= step * gb[c] }
        }
    }

    /// The fraction of `data` classified correctly.
    func accuracy(_ data: Dataset) -> Double {
        var p = [Float](repeating: 0, count: classes)
        var right = 0
        for i in 0..<data.count {
            probabilities(data, i, into: &p)
            if p.indices.max(by: { p[$0] < p[$1] }) == Int(data.labels[i]) { right += 1 }
        }
        return Double(right) / Double(data.count)
    }
}

extension Float {
    fileprivate func exp() -> Float { Foundation.exp(self) }
}

struct ExampleError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
