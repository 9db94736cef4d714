import Foundation
import Testing

@testable import FedModel

/// The real MNIST test digits in ../shared/data/mnist (see its README).
enum MNIST {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared/data/mnist").path

    static var available: Bool {
        FileManager.default.fileExists(atPath: directory + "/t10k-images-idx3-ubyte.gz")
    }

    static func testSet() throws -> Dataset {
        try IDX.dataset(
            images: directory + "/t10k-images-idx3-ubyte.gz", labels: directory + "/t10k-labels-idx1-ubyte.gz")
    }
}

@Suite("MNIST")
struct MNISTTests {
    @Test("The MNIST test set loads: 10,000 digits of 784 pixels in [0, 1]", .enabled(if: MNIST.available))
    func loads() throws {
        let data = try MNIST.testSet()
        #expect(data.count == 10_000 && data.features == 784)
        #expect(data.images.allSatisfy { $0 >= 0 && $0 <= 1 })
        #expect(Set(data.labels) == Set(0...9))
        #expect(data.labels.prefix(5) == [7, 2, 1, 0, 4])
    }

    @Test(
        "Trained on the first 5,000 test digits, the MLP reaches 0.93 on the other 5,000",
        .enabled(if: MNIST.available), .timeLimit(.minutes(10)))
    func trains() throws {
        let (train, test) = try MNIST.testSet().split(first: 5000)
        let trainer = Trainer(model: MLP(seed: 1), maxBatch: 256, threads: 2)
        var rng = SeededGenerator(seed: 2)
        // The original schedule: 20 epochs of batch 32 (about 2 s in a release build).
        for _ in 0..<20 { trainer.trainEpoch(train, batchSize: 32, rng: &rng) }
        let result = trainer.evaluate(test)
        #expect(result.total == 5000)
        #expect(result.accuracy >= 0.93, "\(result.report())")
    }
}
