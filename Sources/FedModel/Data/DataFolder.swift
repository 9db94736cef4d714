import Foundation

/// Finds MNIST-format IDX files in a folder, and the package's built-in data.
public enum DataFolder {
    public static let fashionMNIST = "/usr/share/datasets/fashion-mnist"

    /// The MNIST test set shipped in the package (Data/mnist): next to the
    /// working directory when run from the package, else found from the
    /// executable's place in the package's `.build` folder.
    public static var builtIn: String? {
        var candidates = ["Data/mnist"]
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(dir.appendingPathComponent("Data/mnist").path)
            dir = dir.deletingLastPathComponent()
        }
        return candidates.first { file($0, "t10k-images-idx3-ubyte") != nil }
    }

    /// The data folder to use: `option`, else `FED_DATA`, else `./data` if it
    /// holds t10k files, else the MNIST test set shipped in the package, else
    /// Debian's Fashion-MNIST. Returns the folder and a note saying where it came from.
    public static func resolve(_ option: String?) throws -> (dir: String, note: String) {
        if let option { return (option, "data from --data \(option)") }
        if let env = ProcessInfo.processInfo.environment["FED_DATA"], !env.isEmpty {
            return (env, "data from FED_DATA=\(env)")
        }
        if file("data", "t10k-images-idx3-ubyte") != nil {
            return ("data", "MNIST-format data found in ./data")
        }
        if let builtIn {
            return (builtIn, "the built-in MNIST test set (\(builtIn), 10,000 digits, CC BY-SA 3.0)")
        }
        if file(fashionMNIST, "t10k-images-idx3-ubyte") != nil {
            return (fashionMNIST, "no MNIST found: using Debian's Fashion-MNIST in \(fashionMNIST)")
        }
        throw DataError(
            "no data found. Pass --data DIR (or set FED_DATA) naming a folder of MNIST-format IDX files "
                + "(t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], and train-* if you have them), "
                + "or install Fashion-MNIST: sudo apt-get install dataset-fashion-mnist")
    }

    /// Training slices and a test set for federated runs: with training images,
    /// up to 12 slices of 5,000 and the t10k test set; with only t10k images,
    /// their first 5,000 cut into 12 slices and the other 5,000 to test.
    public static func federatedSplit(in dir: String, scale: Bool) throws -> (
        slices: [Dataset], test: Dataset, note: String
    ) {
        let test = try testSet(in: dir, scale: scale)
        if let images = file(dir, "train-images-idx3-ubyte"), let labels = file(dir, "train-labels-idx1-ubyte") {
            let train = try IDX.dataset(images: images, labels: labels, scale: scale)
            let n = min(12, train.count / 5000)
            guard n >= 1 else { throw DataError("\(images) has fewer than 5,000 images") }
            return (try train.slices(1, n), test, "\(n) slices of 5,000 training images; \(test.count) test images")
        }
        guard test.count >= 2400 else { throw DataError("only \(test.count) images in \(dir)") }
        let half = test.count / 2
        let (train, held) = try test.split(first: half)
        let size = half / 12
        return (
            try train.slices(1, 12, sliceSize: size), held,
            "no training images in \(dir): the first \(half) test images cut into 12 slices of \(size), the other \(held.count) to test"
        )
    }

    /// `name` or `name.gz` in `dir`, whichever exists.
    public static func file(_ dir: String, _ name: String) -> String? {
        for candidate in [name, name + ".gz"] {
            let path = (dir as NSString).appendingPathComponent(candidate)
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        return nil
    }

    /// The test set (t10k files) of `dir`.
    public static func testSet(in dir: String, scale: Bool) throws -> Dataset {
        guard let images = file(dir, "t10k-images-idx3-ubyte"), let labels = file(dir, "t10k-labels-idx1-ubyte") else {
            throw DataError("no t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] in \(dir)")
        }
        return try IDX.dataset(images: images, labels: labels, scale: scale)
    }

    /// Training data and test data: the first `trainSamples` training images
    /// and the full test set, or, without training images, a split of the test set.
    public static func trainAndTest(in dir: String, trainSamples: Int, scale: Bool) throws -> (Dataset, Dataset) {
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

public struct DataError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
