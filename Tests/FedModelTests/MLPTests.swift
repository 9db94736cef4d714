import FedCodec
import Foundation
import Testing

@testable import FedModel

func tinyData(count: Int, features: Int, seed: UInt64) -> Dataset {
    var rng = SeededGenerator(seed: seed)
    return Dataset(
        images: (0..<count * features).map { _ in rng.uniform(1) },
        labels: (0..<count).map { _ in UInt8(rng.next() % 3) }, features: features)
}

@Suite("MLP")
struct MLPTests {
    @Test("The MNIST MLP has the original's six tensors and 199,210 parameters")
    func shapes() {
        let model = MLP(seed: 1)
        #expect(model.tensorShapes == Tensor.mnistMLPShapes)
        #expect(model.parameterCount == 199_210)
        let t = model.tensors()
        #expect(t.map(\.shape) == Tensor.mnistMLPShapes)
        // Glorot-uniform kernels within their limit, zero biases.
        let limit1 = Float((6.0 / 984.0).squareRoot())
        #expect(t[0].values.allSatisfy { abs($0) <= limit1 } && t[0].values.contains { abs($0) > limit1 * 0.9 })
        #expect(t[1].values.allSatisfy { $0 == 0 })
    }

    @Test("Tensors round-trip through load, and wrong shapes change nothing")
    func loadTensors() throws {
        var a = MLP(seed: 1)
        let b = MLP(seed: 2)
        try a.load(b.tensors())
        #expect(a.tensors() == b.tensors())
        var bad = b.tensors()
        bad.removeLast()
        #expect(throws: ModelError.self) { try a.load(bad) }
        #expect(a.tensors() == b.tensors())
    }

    @Test("Gradients match central finite differences on a small network")
    func gradientCheck() {
        let model = MLP(sizes: [5, 7, 6, 3], seed: 4)
        let data = tinyData(count: 4, features: 5, seed: 11)
        let trainer = Trainer(model: model, maxBatch: 8)
        let (_, analytic) = trainer.gradients(data)
        let h: Float = 1e-2
        var worst = 0.0
        for (ti, tensor) in model.tensors().enumerated() {
            for vi in 0..<tensor.count {
                func lossAt(_ delta: Float) -> Double {
                    var t = model.tensors()
                    t[ti].values[vi] += delta
                    var m = model
                    try! m.load(t)
                    return Trainer(model: m, maxBatch: 8).loss(data)
                }
                let numeric = (lossAt(h) - lossAt(-h)) / Double(2 * h)
                let got = Double(analytic[ti].values[vi])
                worst = max(worst, abs(numeric - got) / max(1e-2, abs(numeric) + abs(got)))
            }
        }
        #expect(worst < 2e-2, "worst relative gradient error \(worst)")
    }

    @Test("One Adam step matches values computed by hand")
    func adamStep() {
        var adam = Adam(shapes: [16])
        var w = [AlignedFloats(repeating: 0.5, count: 16)]
        var g = [Float](repeating: 0, count: 16)
        g[0] = 0.2
        g[1] = -0.1
        adam.update(&w, gradients: [AlignedFloats(g)])
        // t=1: alpha = 0.001*sqrt(1-0.999)/(1-0.9) = 3.16227766e-4; m = 0.1*g; v = 0.001*g^2
        // w -= alpha*m/(sqrt(v)+1e-7): for g=0.2: m=0.02, sqrt(v)=0.0063245553 -> step 9.99984e-4
        #expect(abs(w[0][0] - (0.5 - 0.000_999_984_2)) < 1e-7)
        #expect(abs(w[0][1] - (0.5 + 0.000_999_968_4)) < 1e-7)
        #expect(w[0][2] == 0.5)
        // t=2 with the same gradient: m=0.038, v=0.0000799600 (for 0.2)
        adam.update(&w, gradients: [AlignedFloats(g)])
        let alpha2 = 0.001 * (1 - 0.999 * 0.999).squareRoot() / (1 - 0.81)
        let m2 = 0.9 * 0.02 + 0.1 * 0.2
        let v2 = 0.999 * 0.00004 + 0.001 * 0.04
        let expected = 0.5 - 0.000_999_984_2 - alpha2 * m2 / (v2.squareRoot() + 1e-7)
        #expect(abs(Double(w[0][0]) - expected) < 1e-6)
    }

    @Test(
        "The same seed and data give bit-identical weights, with 1, 2 or 3 threads",
        arguments: [[20, 64, 3], MLP.mnistSizes])  // the MNIST sizes put products and Adam on the WorkerPool
    func deterministic(sizes: [Int]) {
        let data = tinyData(count: 100, features: sizes[0], seed: 5)
        var results: [[UInt32]] = []
        for threads in [1, 1, 2, 3] {
            let trainer = Trainer(model: MLP(sizes: sizes, seed: 8), maxBatch: 32, threads: threads)
            var rng = SeededGenerator(seed: 3)
            for _ in 0..<3 { trainer.trainEpoch(data, batchSize: 32, rng: &rng) }
            results.append(trainer.model.tensors().flatMap { $0.values.map(\.bitPattern) })
        }
        #expect(results[0] == results[1])
        #expect(results[0] == results[2])
        #expect(results[0] == results[3])
    }

    @Test(
        "Adam inside the backward pass gives the weights of a separate gradient pass and Adam step, bit for bit",
        arguments: [1, 2])
    func fusedAdamMatchesSeparatePasses(threads: Int) throws {
        let features = 784
        let data = tinyData(count: 32, features: features, seed: 6)
        let fused = Trainer(model: MLP(seed: 3), maxBatch: 32, threads: threads)
        let separate = Trainer(model: MLP(seed: 3), maxBatch: 32, threads: threads)
        var model = MLP(seed: 3)
        var adam = Adam(shapes: model.parameters.map(\.count))
        var rng = SeededGenerator(seed: 4)
        for _ in 0..<3 {
            // One batch an epoch: the same shuffle as the trainer's.
            var shuffle = rng
            fused.trainEpoch(data, batchSize: 32, rng: &rng)
            var order = Array(0..<data.count)
            shuffle.shuffle(&order)
            let batch = Dataset(
                images: order.flatMap { data.images[$0 * features..<($0 + 1) * features] },
                labels: order.map { data.labels[$0] }, features: features)
            try separate.adopt(model.tensors())
            var gradients = model
            try gradients.load(separate.gradients(batch).gradients)
            adam.update(&model.parameters, gradients: gradients.parameters, threads: threads)
        }
        let want = model.tensors().flatMap { $0.values.map(\.bitPattern) }
        #expect(fused.model.tensors().flatMap { $0.values.map(\.bitPattern) } == want)
        #expect(fused.model.tensors() != MLP(seed: 3).tensors())
    }

    @Test("Training lowers the loss on a separable problem")
    func learns() {
        // Label = which of the first three features is largest.
        var rng = SeededGenerator(seed: 1)
        let n = 600
        let images = (0..<n * 8).map { _ in rng.uniform(1) }
        let labels = (0..<n).map { i -> UInt8 in
            let f = images[i * 8..<i * 8 + 3]
            return UInt8(f.firstIndex(of: f.max()!)! - i * 8)
        }
        let data = Dataset(images: images, labels: labels, features: 8)
        let trainer = Trainer(model: MLP(sizes: [8, 32, 3], seed: 2), maxBatch: 32)
        var shuffle = SeededGenerator(seed: 4)
        let first = trainer.trainEpoch(data, rng: &shuffle)
        var last = first
        for _ in 0..<15 { last = trainer.trainEpoch(data, rng: &shuffle) }
        #expect(last.loss < first.loss * 0.5)
        let predicted = trainer.predict(data)
        let accuracy = Double(zip(predicted, labels).filter { $0 == Int($1) }.count) / Double(n)
        #expect(accuracy > 0.9)
    }
}

@Suite("Vector square root")
struct VectorSquareRootTests {
    @Test("Within 2 ulp of sqrt over many magnitudes, and exact at 0")
    func accuracy() {
        var rng = SeededGenerator(seed: 1)
        for exponent in -40...30 {
            let values = (0..<16).map { _ in Float(abs(rng.uniform(1)) + 0.5) * Float(pow(2.0, Double(exponent))) }
            let got = vectorSquareRoot(Vec(values))
            for (i, v) in values.enumerated() {
                let want = v.squareRoot()
                #expect(abs(got[i] - want) <= 2 * want.ulp, "sqrt(\(v)) = \(got[i]), want \(want)")
            }
        }
        #expect(vectorSquareRoot(Vec(repeating: 0)) == Vec(repeating: 0))
    }
}
