import FedCodec
import Foundation

/// Trains and runs an `MLP`: forward and backward passes over mini-batches,
/// the fused softmax + cross-entropy, and Adam. Holds every model- or
/// batch-sized buffer it needs, sized once; a training step allocates only
/// the products' small scratch blocks (a tile of rows, a transposed batch of
/// gradients) and the job records it shares with `WorkerPool` helpers.
///
/// Determinism: the same model, seed and data give bit-identical weights,
/// whatever `threads` is (each output of a product, and each parameter's
/// update, is computed by one thread in a fixed order).
public final class Trainer {
    public private(set) var model: MLP
    public var optimizer: Adam
    public let threads: Int
    public let maxBatch: Int
    /// Time spent in each phase since creation, in seconds.
    public private(set) var timing = PhaseTiming()

    /// acts[0] is the input batch, acts[l + 1] the output of layer l (after ReLU for hidden layers).
    private var acts: [AlignedFloats]
    /// deltas[l]: gradient of the loss with respect to layer l's output before activation.
    private var deltas: [AlignedFloats]
    /// Gradients of the parameters, for `gradients(_:)`; in training only the
    /// biases' are stored (the weights' are used from L1 as they are computed).
    private var grads: [AlignedFloats]
    private var labels: [Int32]
    /// FedProx's mu and base, padded as the parameters; nil: no proximal term.
    private var proximal: (mu: Float, base: [AlignedFloats])?
    /// SCAFFOLD's `c - c_i`, padded as the parameters; nil: no correction.
    private var correction: [AlignedFloats]?

    public init(model: MLP, maxBatch: Int = 256, threads: Int = 1) {
        self.model = model
        self.maxBatch = maxBatch
        self.threads = max(1, threads)
        optimizer = Adam(shapes: model.parameters.map(\.count))
        acts = model.padded.map { AlignedFloats(repeating: 0, count: maxBatch * $0) }
        deltas = model.padded.map { AlignedFloats(repeating: 0, count: maxBatch * $0) }
        grads = model.parameters.map { AlignedFloats(repeating: 0, count: $0.count) }
        labels = [Int32](repeating: 0, count: maxBatch)
    }

    /// Replaces the weights (for example with a server's) and resets Adam's state.
    public func setModel(_ model: MLP) {
        precondition(model.padded == self.model.padded)
        self.model = model
        optimizer.reset()
    }

    /// Replaces the weights with `tensors` (Keras shapes) and keeps Adam's
    /// state, as Keras's `set_weights` does on a compiled model.
    /// Throws `ModelError.shapeMismatch` and changes nothing on wrong shapes.
    public func adopt(_ tensors: [Tensor]) throws(ModelError) {
        try model.load(tensors)
    }

    /// Sets what local training adds to each step (``LocalObjective``) until
    /// it is set again; `nil` or an empty objective trains plainly.
    ///
    /// - Throws: `ModelError.shapeMismatch` when the base or the correction
    ///   does not have the model's shapes, `ModelError.invalidInput` for a
    ///   negative or non-finite mu, or a mu above 0 without a base; the
    ///   objective is then unchanged.
    public func setObjective(_ objective: LocalObjective?) throws(ModelError) {
        guard let objective else {
            proximal = nil
            correction = nil
            return
        }
        guard objective.mu >= 0, objective.mu.isFinite else {
            throw ModelError.invalidInput("the proximal mu \(objective.mu) is not a finite number >= 0")
        }
        var newProximal: (mu: Float, base: [AlignedFloats])?
        if objective.mu > 0 {
            guard let base = objective.base else {
                throw ModelError.invalidInput("a proximal mu above 0 needs the base weights")
            }
            var padded = model
            try padded.load(base)
            newProximal = (objective.mu, padded.parameters)
        }
        var newCorrection: [AlignedFloats]?
        if let c = objective.correction {
            var padded = model
            try padded.load(c)
            newCorrection = padded.parameters
        }
        proximal = newProximal
        correction = newCorrection
    }

    // MARK: - Training

    /// One epoch over `data` in a fresh random order from `rng`, `batchSize`
    /// samples a step (the last step takes the remainder, as Keras does).
    /// Returns the mean loss and the training accuracy of the epoch.
    @discardableResult
    public func trainEpoch(
        _ data: Dataset, batchSize: Int = 32, rng: inout SeededGenerator,
        progress: ((_ done: Int, _ loss: Double, _ correct: Int) -> Void)? = nil
    ) -> (loss: Double, accuracy: Double) {
        precondition(batchSize > 0 && batchSize <= maxBatch && data.features == model.sizes[0])
        let clock = ContinuousClock()
        var t0 = clock.now
        var order = Array(0..<data.count)
        rng.shuffle(&order)
        timing.data += seconds(clock.now - t0)
        var totalLoss = 0.0
        var correct = 0
        var start = 0
        while start < data.count {
            let b = min(batchSize, data.count - start)
            t0 = clock.now
            gather(data, order[start..<start + b])
            let t1 = clock.now
            forward(batch: b)
            let t2 = clock.now
            let (loss, hits) = softmaxCrossEntropy(batch: b)
            var constants = optimizer.beginStep()
            constants.mu = proximal?.mu ?? 0
            constants.correctionRate = optimizer.learningRate
            backward(batch: b, adam: constants)
            let t3 = clock.now
            timing.data += seconds(t1 - t0)
            timing.forward += seconds(t2 - t1)
            timing.backward += seconds(t3 - t2)
            totalLoss += loss * Double(b)
            correct += hits
            start += b
            progress?(start, totalLoss / Double(start), correct)
        }
        timing.samples += data.count
        return (totalLoss / Double(max(data.count, 1)), Double(correct) / Double(max(data.count, 1)))
    }

    /// Copies the rows `indices` of `data` into the input buffer, and their labels.
    private func gather(_ data: Dataset, _ indices: ArraySlice<Int>) {
        let f = data.features
        acts[0].withUnsafeMutableBufferPointer { x in
            data.images.withUnsafeBufferPointer { src in
                for (r, i) in indices.enumerated() {
                    (x.baseAddress! + r * model.padded[0]).update(from: src.baseAddress! + i * f, count: f)
                    labels[r] = Int32(data.labels[i])
                }
            }
        }
    }

    // MARK: - Passes

    /// Runs the network on the first `batch` rows of acts[0].
    private func forward(batch: Int) {
        let p = model.padded
        for l in 0..<model.layerCount {
            let (n, k) = (p[l + 1], p[l])
            let hidden = l < model.layerCount - 1
            model.parameters[2 * l].withUnsafeBufferPointer { w in
                model.parameters[2 * l + 1].withUnsafeBufferPointer { bias in
                    acts[l].withUnsafeBufferPointer { x in
                        acts[l + 1].withUnsafeMutableBufferPointer { out in
                            let o = out.baseAddress!
                            for r in 0..<batch { (o + r * n).update(from: bias.baseAddress!, count: n) }
                            GEMM.nn(
                                m: batch, n: n, k: k, a: x.baseAddress!, b: w.baseAddress!, c: o, accumulate: true,
                                threads: threads)
                            if hidden { relu(o, count: batch * n) }
                        }
                    }
                }
            }
        }
    }

    /// Softmax and sparse categorical cross-entropy on the output layer, fused
    /// and stable (logits shifted by their maximum). Writes the gradient with
    /// respect to the logits, `(softmax - onehot) / batch`, into the last delta.
    /// Returns the mean loss and the number of correct predictions.
    private func softmaxCrossEntropy(batch: Int) -> (Double, Int) {
        let classes = model.sizes.last!, stride = model.padded.last!
        let last = model.layerCount
        var loss = 0.0
        var hits = 0
        let scale = 1 / Float(batch)
        acts[last].withUnsafeBufferPointer { z in
            deltas[last].withUnsafeMutableBufferPointer { d in
                for r in 0..<batch {
                    let row = z.baseAddress! + r * stride
                    let out = d.baseAddress! + r * stride
                    var maxIndex = 0
                    for c in 1..<classes where row[c] > row[maxIndex] { maxIndex = c }
                    let top = row[maxIndex]
                    var sum: Float = 0
                    for c in 0..<classes {
                        let e = expf(row[c] - top)
                        out[c] = e
                        sum += e
                    }
                    let y = Int(labels[r])
                    loss += Double(logf(sum) - (row[y] - top))
                    if maxIndex == y { hits += 1 }
                    let inv = 1 / sum
                    for c in 0..<classes { out[c] = (out[c] * inv - (c == y ? 1 : 0)) * scale }
                    for c in classes..<stride { out[c] = 0 }
                }
            }
        }
        return (loss / Double(batch), hits)
    }

    /// Gradients of every parameter from the last delta, back to the first layer.
    ///
    /// With `adam` (a step's constants), each parameter is also updated by Adam
    /// as soon as its gradient is final, while it is in cache: a layer's input
    /// gradient is taken first (it needs the weights before the update), then
    /// the weight gradient, whose rows are updated as the product completes
    /// them, on the thread that computed them, from a scratch buffer in L1 (so
    /// `grads` then holds only the biases' gradients). Every weight gets the
    /// same gradient and the same update as with separate passes.
    private func backward(batch: Int, adam: Adam.Constants?) {
        let p = model.padded
        for l in stride(from: model.layerCount - 1, through: 0, by: -1) {
            let (n, k) = (p[l + 1], p[l])
            deltas[l + 1].withUnsafeBufferPointer { d in
                acts[l].withUnsafeBufferPointer { x in
                    if l > 0 {
                        // The ReLU's derivative (from its output, acts[l]) applied as dx is written.
                        model.parameters[2 * l].withUnsafeBufferPointer { w in
                            deltas[l].withUnsafeMutableBufferPointer { dx in
                                GEMM.nt(
                                    m: batch, n: n, k: k, a: d.baseAddress!, b: w.baseAddress!, c: dx.baseAddress!,
                                    threads: threads, mask: x.baseAddress!)
                            }
                        }
                    }
                    withAdamArrays(2 * l + 1) { arrays in
                        columnSums(d.baseAddress!, rows: batch, cols: n, into: UnsafeMutablePointer(mutating: arrays.g))
                        if let adam { Adam.kernel(arrays, 0..<n, adam) }
                    }
                    withAdamArrays(2 * l) { arrays in
                        var rowsDone: ((Int, Int, UnsafeMutablePointer<Float>) -> Void)? = nil
                        if let adam {
                            // Rows r0..<r1 of the gradient, in L1 at g: Adam on the same rows of W.
                            rowsDone = { r0, r1, g in
                                Adam.kernel(arrays.advanced(by: r0 * n, gradient: g), 0..<(r1 - r0) * n, adam)
                            }
                        }
                        GEMM.tn(
                            m: batch, n: n, k: k, a: x.baseAddress!, b: d.baseAddress!,
                            c: UnsafeMutablePointer(mutating: arrays.g), accumulate: false, threads: threads,
                            rowsDone: rowsDone)
                    }
                }
            }
        }
    }

    /// Calls `body` with pointers to parameter array `index`, its moments and
    /// its gradient, and the objective's base and correction when set.
    private func withAdamArrays(_ index: Int, _ body: (Adam.Arrays) -> Void) {
        model.parameters[index].withUnsafeMutableBufferPointer { w in
            optimizer.withMoments(index) { m, v in
                grads[index].withUnsafeMutableBufferPointer { g in
                    Self.withOptionalPointer(proximal?.base[index]) { base in
                        Self.withOptionalPointer(correction?[index]) { correction in
                            body(
                                Adam.Arrays(
                                    w: w.baseAddress!, m: m, v: v, g: g.baseAddress!, base: base,
                                    correction: correction))
                        }
                    }
                }
            }
        }
    }

    /// Calls `body` with a pointer to `array`'s elements, or nil without it.
    private static func withOptionalPointer(_ array: AlignedFloats?, _ body: (UnsafePointer<Float>?) -> Void) {
        guard let array else { return body(nil) }
        array.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    // MARK: - Inference

    /// The predicted class (the highest score) of every sample of `data`,
    /// computed in batches of `maxBatch`.
    public func predict(_ data: Dataset) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(data.count)
        let classes = model.sizes.last!, stride = model.padded.last!
        var start = 0
        while start < data.count {
            let b = min(maxBatch, data.count - start)
            gather(data, (start..<start + b).map { $0 }[...])
            forward(batch: b)
            acts[model.layerCount].withUnsafeBufferPointer { z in
                for r in 0..<b {
                    let row = z.baseAddress! + r * stride
                    var best = 0
                    for c in 1..<classes where row[c] > row[best] { best = c }
                    out.append(best)
                }
            }
            start += b
        }
        return out
    }

    /// The loss gradient of every parameter on one batch (for gradient checks):
    /// runs forward and backward without updating anything.
    public func gradients(_ data: Dataset) -> (loss: Double, gradients: [Tensor]) {
        precondition(data.count <= maxBatch)
        gather(data, (0..<data.count).map { $0 }[...])
        forward(batch: data.count)
        let (loss, _) = softmaxCrossEntropy(batch: data.count)
        backward(batch: data.count, adam: nil)
        var copy = model
        copy.parameters = grads
        return (loss, copy.tensors())
    }

    /// The mean loss on one batch.
    public func loss(_ data: Dataset) -> Double {
        precondition(data.count <= maxBatch)
        gather(data, (0..<data.count).map { $0 }[...])
        forward(batch: data.count)
        return softmaxCrossEntropy(batch: data.count).0
    }
}

/// Seconds spent in each phase of training.
public struct PhaseTiming: Sendable {
    public var forward = 0.0
    /// The backward pass and Adam's updates, which it makes as gradients are final.
    public var backward = 0.0
    /// Shuffling and copying batches into place.
    public var data = 0.0
    public var samples = 0
    public var total: Double { forward + backward + data }
}

@inline(__always)
func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

@inline(__always)
func relu(_ p: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    let zero = Vec()
    while i < count {
        store(pointwiseMax(load(p + i), zero), p + i)
        i += 16
    }
}

@inline(__always)
func columnSums(_ a: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
    var j = 0
    while j < cols {
        var s = Vec()
        for r in 0..<rows { s += load(a + r * cols + j) }
        store(s, out + j)
        j += 16
    }
}
