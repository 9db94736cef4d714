import FedModel

/// The images a simulation trains on and tests with.
public struct SimulationData: Sendable {
    /// Split among the clients (and all of it trains the centralized reference).
    public var train: Dataset
    /// Every curve point evaluates the server's model on all of it.
    public var test: Dataset
    /// Where the images come from, for a report's header.
    public var description: String

    /// Data sets of your own; `train` and `test` must have the MLP's 784
    /// features and labels 0 to 9.
    public init(train: Dataset, test: Dataset, description: String) {
        self.train = train
        self.test = test
        self.description = description
    }

    /// The images of a folder of MNIST-format IDX files (pixels scaled to 0...1).
    ///
    /// With `train-*` files in the folder: all training and all test (`t10k-*`)
    /// images. Without them: the test images split in halves, the first to
    /// train, the second to test. `folder` nil: Debian's Fashion-MNIST
    /// (`/usr/share/datasets/fashion-mnist`) when it has training images,
    /// else the folder `fed` finds by default: `FED_DATA`, `./data`, the
    /// package's built-in MNIST test set, Debian's Fashion-MNIST test set.
    ///
    /// - Throws: the loader's error when a file is missing or malformed.
    public static func load(folder: String?) throws -> SimulationData {
        let dir: String
        if let folder {
            dir = folder
        } else if DataFolder.file(DataFolder.fashionMNIST, "train-images-idx3-ubyte") != nil {
            dir = DataFolder.fashionMNIST
        } else {
            dir = try DataFolder.resolve(nil).dir
        }
        let test = try DataFolder.testSet(in: dir, scale: true)
        if let images = DataFolder.file(dir, "train-images-idx3-ubyte"),
            let labels = DataFolder.file(dir, "train-labels-idx1-ubyte")
        {
            let train = try IDX.dataset(images: images, labels: labels)
            return SimulationData(
                train: train, test: test,
                description: "\(train.count) training and \(test.count) test images from \(dir)")
        }
        let (train, held) = try test.split(first: test.count / 2)
        return SimulationData(
            train: train, test: held,
            description: "no training images in \(dir): \(train.count) of its test images train, \(held.count) test")
    }
}
