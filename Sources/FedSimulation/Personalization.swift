import FedCodec
import FedModel

/// Measures the final model on every client's own held-out share
/// (``SimulationConfiguration/clientHoldout``), as the served model and as
/// each client personalizes it.
///
/// A client's served model is the server's with the client's private
/// tensors (``SimulationConfiguration/privateTensors``, FedPer) in place of
/// the server's. Its personalized model is that model fine-tuned for
/// ``SimulationConfiguration/personalizeSteps`` steps of
/// ``SimulationConfiguration/batchSize`` on the client's training share,
/// with a fresh Adam of the clients' learning rate; with no fine-tuning it
/// is the served model, and without private tensors or fine-tuning there is
/// no personalized model. Clients with no held-out example are left out.
public struct Personalization: Sendable {
    public let configuration: SimulationConfiguration
    public let seed: UInt64

    /// Measures as `configuration` says; `seed` draws the fine-tuning's batches.
    public init(configuration: SimulationConfiguration, seed: UInt64) {
        self.configuration = configuration
        self.seed = seed
    }

    /// One accuracy per client of `heldOut` that has examples: the served
    /// model's, and the personalized model's (nil when there is none).
    ///
    /// `train`, `heldOut` and `privateTensors` have one entry per client;
    /// `trainer` is used for every client and left with the last one's model.
    ///
    /// - Throws: `ModelError.shapeMismatch` when `weights` (with a client's
    ///   private tensors) are not the trainer's model's shapes.
    public func accuracies(
        server weights: [Tensor], train: [Dataset], heldOut: [Dataset], privateTensors: [[Int: Tensor]],
        trainer: Trainer
    ) throws -> (served: [Double], personalized: [Double]?) {
        let s = configuration
        var served: [Double] = []
        var personalized: [Double] = []
        let personalizes = s.personalizeSteps > 0 || !s.privateTensors.isEmpty
        for c in heldOut.indices where heldOut[c].count > 0 {
            var own = weights
            for (i, t) in privateTensors[c] { own[i] = t }
            try trainer.adopt(own)
            try trainer.setObjective(nil)
            served.append(Self.accuracy(trainer.predict(heldOut[c]), heldOut[c].labels))
            guard personalizes else { continue }
            if s.personalizeSteps > 0 && train[c].count > 0 {
                trainer.optimizer.reset()
                var rng = SeededGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(c) &* 6151 &+ 0xFE7)
                trainer.trainEpoch(
                    Self.steps(train[c], steps: s.personalizeSteps, batchSize: s.batchSize, rng: &rng),
                    batchSize: s.batchSize, rng: &rng)
            }
            personalized.append(Self.accuracy(trainer.predict(heldOut[c]), heldOut[c].labels))
        }
        return (served, personalizes ? personalized : nil)
    }

    /// The share of `predicted` equal to `actual` (0 for none).
    public static func accuracy(_ predicted: [Int], _ actual: [UInt8]) -> Double {
        guard !actual.isEmpty else { return 0 }
        return Double(zip(predicted, actual).filter { $0 == Int($1) }.count) / Double(actual.count)
    }

    /// `steps * batchSize` examples of `data`: whole shuffled passes over it, then part of one more.
    static func steps(_ data: Dataset, steps: Int, batchSize: Int, rng: inout SeededGenerator) -> Dataset {
        let want = steps * batchSize
        var indices: [Int] = []
        indices.reserveCapacity(want)
        while indices.count < want {
            var order = Array(0..<data.count)
            rng.shuffle(&order)
            indices += order.prefix(want - indices.count)
        }
        return data.subset(indices)
    }

    /// A client's share split in two: a random `fraction` of it (rounded
    /// down) held out, the rest to train on; the order within each part is
    /// the share's. The draw uses its own generator, so other draws of a run
    /// are unchanged.
    public static func holdOut(_ share: [Int], fraction: Double, rng: inout SeededGenerator) -> (
        train: [Int], heldOut: [Int]
    ) {
        let k = Int(Double(share.count) * fraction)
        guard k > 0 else { return (share, []) }
        var positions = Array(share.indices)
        rng.shuffle(&positions)
        let held = Set(positions.prefix(k))
        return (
            share.indices.filter { !held.contains($0) }.map { share[$0] },
            share.indices.filter { held.contains($0) }.map { share[$0] }
        )
    }
}
