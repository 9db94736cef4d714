import FedClient
import FedCodec
import FedModel

/// The built-in MLP as a `LocalModel`, the original demo's way: round `r`
/// trains `epochs` epochs on slice `r`. `progress` hears (slice, epoch,
/// loss, accuracy) after each epoch. `load` keeps Adam's moments from round
/// to round, as Keras's `set_weights` on the original's compiled model did
/// (`fed simulate --optimizer-state kept` models these clients).
struct MLPSlices: LocalModel {
    let trainer: Trainer
    let slices: [Dataset]
    let epochs: Int
    let batchSize: Int
    private var rng: SeededGenerator
    private let progress: (Int, Int, Double, Double) -> Void

    init(
        slices: [Dataset], epochs: Int = 20, batchSize: Int = 32, seed: UInt64 = 1, threads: Int = 1,
        progress: @escaping (Int, Int, Double, Double) -> Void = { _, _, _, _ in }
    ) {
        self.slices = slices
        self.epochs = epochs
        self.batchSize = batchSize
        self.trainer = Trainer(model: MLP(seed: seed), maxBatch: max(256, batchSize), threads: threads)
        self.rng = SeededGenerator(seed: seed &+ 0x5EED)
        self.progress = progress
    }

    var weights: [Tensor] { trainer.model.tensors() }
    mutating func load(_ weights: [Tensor]) throws { try trainer.adopt(weights) }

    mutating func train(round: Int) -> Int {
        let slice = slices[round]
        for epoch in 1...epochs {
            let r = trainer.trainEpoch(slice, batchSize: batchSize, rng: &rng)
            progress(round, epoch, r.loss, r.accuracy)
        }
        return slice.count
    }
}
