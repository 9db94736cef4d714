import FedCodec
import Testing

@testable import FedModel

@Suite("Local objectives: FedProx and SCAFFOLD steps")
struct LocalObjectiveTests {
    /// One Adam step of the kernel on 16 equal elements; returns (w, m, v) of element 0.
    func step(
        w: Float, g: Float, base: Float?, mu: Float, correction: Float?, rate: Float, sgd: Bool = false
    ) -> (Float, Float, Float) {
        var wArray = [Float](repeating: w, count: 16)
        var mArray = [Float](repeating: 0, count: 16)
        var vArray = [Float](repeating: 0, count: 16)
        let gArray = [Float](repeating: g, count: 16)
        let baseArray = [Float](repeating: base ?? 0, count: 16)
        let correctionArray = [Float](repeating: correction ?? 0, count: 16)
        var adam = Adam(shapes: [16])
        adam.plainSGD = sgd
        if sgd { adam.learningRate = 0.05 }
        var constants = adam.beginStep()
        constants.mu = mu
        constants.correctionRate = rate
        wArray.withUnsafeMutableBufferPointer { wp in
            mArray.withUnsafeMutableBufferPointer { mp in
                vArray.withUnsafeMutableBufferPointer { vp in
                    gArray.withUnsafeBufferPointer { gp in
                        baseArray.withUnsafeBufferPointer { bp in
                            correctionArray.withUnsafeBufferPointer { cp in
                                let arrays = Adam.Arrays(
                                    w: wp.baseAddress!, m: mp.baseAddress!, v: vp.baseAddress!, g: gp.baseAddress!,
                                    base: base == nil ? nil : bp.baseAddress!,
                                    correction: correction == nil ? nil : cp.baseAddress!)
                                Adam.kernel(arrays, 0..<16, constants)
                            }
                        }
                    }
                }
            }
        }
        return (wArray[0], mArray[0], vArray[0])
    }

    @Test("FedProx: the gradient gains mu (w - base), by hand")
    func proximalStep() {
        // g = 0.5, w = 1.0, base = 0.6, mu = 0.5: g' = 0.5 + 0.5 * 0.4 = 0.7.
        // Adam's first step (lr 0.001, beta1 0.9, beta2 0.999, eps 1e-7):
        // m = 0.1 * 0.7 = 0.07, v = 0.001 * 0.49 = 0.00049 (1 - beta2 in Float is 0.00100002),
        // alpha = 0.001 * sqrt(0.001) / 0.1 = 0.000316228, w' = 1 - alpha * 0.07 / (0.0221359 + 1e-7) = 0.9990000.
        let (w, m, v) = step(w: 1, g: 0.5, base: 0.6, mu: 0.5, correction: nil, rate: 0)
        #expect(abs(m - 0.07) < 1e-7)
        #expect(abs(v - 0.00049) < 1e-8)
        #expect(abs(w - 0.999) < 2e-6)
        // mu = 0 is plain Adam: g' = g.
        let (_, plainM, _) = step(w: 1, g: 0.5, base: 0.6, mu: 0, correction: nil, rate: 0)
        #expect(abs(plainM - 0.05) < 1e-7)
    }

    @Test("SCAFFOLD: the step gains lr (c - c_i), outside Adam's moments, by hand")
    func correctedStep() {
        // c = 0.1, c_i = 0.3: correction -0.2; lr 0.001. Adam's step on g = 0.5 is
        // alpha * 0.05 / (sqrt(0.00025) + 1e-7) = 0.000316228 * 0.05 / 0.0158115 = 0.00099999;
        // w' = 1 - 0.00099999 - 0.001 * (-0.2) = 0.9992.
        let (w, m, v) = step(w: 1, g: 0.5, base: nil, mu: 0, correction: 0.1 - 0.3, rate: 0.001)
        #expect(abs(m - 0.05) < 1e-7)
        #expect(abs(v - 0.00025) < 1e-8)
        #expect(abs(w - 0.9992) < 2e-6)
    }

    @Test("Plain SGD: w -= lr (g + mu (w - base)) + lr (c - c_i), the moments untouched, by hand")
    func sgdStep() {
        // lr 0.05, g = 0.5: w' = 1 - 0.05 * 0.5 = 0.975.
        let (w, m, v) = step(w: 1, g: 0.5, base: nil, mu: 0, correction: nil, rate: 0, sgd: true)
        #expect(abs(w - 0.975) < 1e-6 && m == 0 && v == 0)
        // SCAFFOLD: c - c_i = -0.2, rate 0.05: w' = 1 - 0.05 * (0.5 - 0.2) = 0.985.
        let (wc, _, _) = step(w: 1, g: 0.5, base: nil, mu: 0, correction: -0.2, rate: 0.05, sgd: true)
        #expect(abs(wc - 0.985) < 1e-6)
        // FedProx: base 0.6, mu 0.5: g' = 0.7, w' = 1 - 0.05 * 0.7 = 0.965.
        let (wp, _, _) = step(w: 1, g: 0.5, base: 0.6, mu: 0.5, correction: nil, rate: 0, sgd: true)
        #expect(abs(wp - 0.965) < 1e-6)
    }

    @Test("The trainer with plain SGD and a correction: w' = w - lr (g + c - c_i), per weight")
    func trainerSGD() throws {
        let trainer = Trainer(model: MLP(sizes: [3, 2], seed: 7), maxBatch: 4)
        let data = Dataset(images: [0.2, -0.4, 0.9], labels: [1], features: 3)
        let gradients = trainer.gradients(data).gradients
        let before = trainer.model.tensors()
        var correction = before
        for t in correction.indices {
            for i in correction[t].values.indices { correction[t].values[i] = 0.3 }
        }
        try trainer.setObjective(LocalObjective(correction: correction))
        trainer.optimizer.plainSGD = true
        trainer.optimizer.learningRate = 0.1
        var rng = SeededGenerator(seed: 1)
        trainer.trainEpoch(data, batchSize: 1, rng: &rng)
        let after = trainer.model.tensors()
        for t in after.indices {
            for i in after[t].values.indices {
                let expected = before[t].values[i] - 0.1 * (gradients[t].values[i] + 0.3)
                #expect(abs(after[t].values[i] - expected) < 1e-6)
            }
        }
        #expect(trainer.optimizer.m[0].allSatisfy { $0 == 0 })
    }

    @Test("The trainer's step with a proximal base: Adam's first moment is 0.1 (g + mu (w - base))")
    func trainerProximal() throws {
        let trainer = Trainer(model: MLP(sizes: [3, 2], seed: 7), maxBatch: 4)
        let data = Dataset(images: [0.2, -0.4, 0.9], labels: [1], features: 3)
        let gradients = trainer.gradients(data).gradients
        var base = trainer.model.tensors()
        for t in base.indices {
            for i in base[t].values.indices { base[t].values[i] -= 0.5 }
        }
        try trainer.setObjective(.proximal(mu: 0.2, base: base))
        var rng = SeededGenerator(seed: 1)
        trainer.trainEpoch(data, batchSize: 1, rng: &rng)
        // Kernel [3][2] padded to rows of 16; bias [2] padded to 16.
        for i in 0..<3 {
            for j in 0..<2 {
                let expected = 0.1 * (gradients[0].values[i * 2 + j] + 0.2 * 0.5)
                #expect(abs(trainer.optimizer.m[0][i * 16 + j] - expected) < 1e-6)
            }
        }
        for j in 0..<2 {
            #expect(abs(trainer.optimizer.m[1][j] - 0.1 * (gradients[1].values[j] + 0.1)) < 1e-6)
        }
        // Padding stays zero.
        #expect(trainer.optimizer.m[1][5] == 0 && trainer.model.parameters[1][5] == 0)
    }

    @Test("setObjective refuses a wrong shape, a negative mu, and mu without a base")
    func refusals() throws {
        let trainer = Trainer(model: MLP(sizes: [3, 2], seed: 7), maxBatch: 4)
        #expect(throws: ModelError.self) { try trainer.setObjective(.proximal(mu: 0.1, base: [Tensor(zeros: [2])])) }
        #expect(throws: ModelError.self) {
            try trainer.setObjective(.proximal(mu: -1, base: trainer.model.tensors()))
        }
        #expect(throws: ModelError.self) { try trainer.setObjective(LocalObjective(mu: 0.1)) }
        try trainer.setObjective(LocalObjective(correction: trainer.model.tensors()))
        try trainer.setObjective(nil)
    }
}
