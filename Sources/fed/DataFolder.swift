import FedModel
import Foundation

/// Finds MNIST-format IDX files in a folder.
enum DataFolder {
    /// `name` or `name.gz` in `dir`, whichever exists.
    static func file(_ dir: String, _ name: String) -> String? {
        for candidate in [name, name + ".gz"] {
            let path = (dir as NSString).appendingPathComponent(candidate)
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        return nil
    }

    /// The test set (t10k files) of `dir`.
    static func testSet(in dir: String, scale: Bool) throws -> Dataset {
        guard let images = file(dir, "t10k-images-idx3-ubyte"), let labels = file(dir, "t10k-labels-idx1-ubyte") else {
            throw DataError("no t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] in \(dir)")
        }
        return try IDX.dataset(images: images, labels: labels, scale: scale)
    }

    /// Training data and test data: the first `trainSamples` training images
    /// and the full test set, or, without training images, a split of the test set.
    static func trainAndTest(in dir: String, trainSamples: Int, scale: Bool) throws -> (Dataset, Dataset) {
        let test = try testSet(in: dir, scale: scale)
        if let images = file(dir, "train-images-idx3-ubyte"), let labels = file(dir, "train-labels-idx1-ubyte") {
            let train = try IDX.dataset(images: images, labels: labels, scale: scale)
            guard trainSamples <= train.count else {
                throw DataError("--samples \(trainSamples) > \(train.count) available")
            }
            return (train.slice(0..<trainSamples), test)
        }
        guard trainSamples < test.count else {
            throw DataError("only \(test.count) test images in \(dir) (no training images); --samples must be smaller")
        }
        return try test.split(first: trainSamples)
    }
}

struct DataError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
