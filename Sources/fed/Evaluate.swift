import ArgumentParser
import FedCodec
import FedModel
import FedStorage
import Foundation

extension Fed {
    struct Evaluate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Accuracy, per-class accuracy and confusion matrix of a checkpoint on a test set.",
            discussion: """
                The original demo's test script: loads the model saved in a checkpoint file \
                (Protocol/SPEC.md, section 8) and evaluates it on the t10k images of --data. \
                With --test-from N only the test images from index N on are used (e.g. 5000 when the \
                first 5,000 were used for training, as with the MNIST digits at hand).
                """
        )

        @Option(help: "Checkpoint file to evaluate.")
        var checkpoint: String

        @Option(
            help:
                "Folder of MNIST-format IDX files, t10k-images-idx3-ubyte[.gz] and labels (default: FED_DATA, ./data, then the built-in MNIST test set)."
        )
        var data: String?

        @Option(help: "Use test images from this index on.")
        var testFrom = 0

        @Flag(help: "Feed raw 0...255 pixels (for a model trained that way, like the original's).")
        var rawPixels = false

        func validate() throws {
            guard testFrom >= 0 else { throw ValidationError("--test-from must be >= 0") }
        }

        func run() throws {
            guard let snapshot = try CheckpointFile.read(from: checkpoint) else {
                throw ValidationError("no checkpoint at \(checkpoint)")
            }
            var model = MLP(seed: 0)
            do {
                try model.load(snapshot.tensors)
            } catch {
                throw ValidationError("\(checkpoint) does not hold the 784-200-200-10 MLP: \(error)")
            }
            var test = try DataFolder.testSet(in: try DataFolder.resolve(data).dir, scale: !rawPixels)
            guard testFrom < test.count else {
                throw ValidationError("--test-from \(testFrom) >= \(test.count) images")
            }
            if testFrom > 0 { test = test.slice(testFrom..<test.count) }
            let trainer = Trainer(model: model, maxBatch: 256, threads: 2)
            print(
                "model version \(snapshot.version), trained on \(snapshot.datasets) samples; \(test.count) test images")
            print(trainer.evaluate(test).report())
        }
    }
}
