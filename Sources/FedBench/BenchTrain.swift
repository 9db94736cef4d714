import ArgumentParser
import FedCodec
import FedStorage
import FedModel
import Foundation

extension BenchCommand {
    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Training speed of the MLP on the original's schedule, and each kernel's GFLOP/s.",
            discussion: """
                Trains the 784-200-200-10 MLP on --samples images for --epochs epochs of batch \
                --batch-size (the original: 5,000 x 20 x 32), then evaluates it on held-out images. \
                Prints samples/s, seconds, the time split between forward, backward, optimizer and \
                data handling, and the GFLOP/s of every matrix product at the MLP's layer shapes \
                next to this machine's peak multiply-add rate measured in the same run.
                Data: MNIST-format IDX files in --data (train-images-idx3-ubyte[.gz] and labels; \
                without training images, the t10k files are split: the first --samples to train, \
                the rest to test). Build with -c release; the README says how the kernels' target \
                CPU is chosen (FED_TARGET_CPU). --seeds N trains N models and prints the spread \
                of their accuracy.
                """
        )

        @Option(help: "Folder of MNIST-format IDX files (default: FED_DATA, ./data, then the built-in MNIST test set).")
        var data: String?

        @Option(help: "Training samples.") var samples = 5000
        @Option(help: "Epochs.") var epochs = 20
        @Option(help: "Batch size.") var batchSize = 32
        @Option(help: "Threads for the matrix products and Adam (the same weights for any number).") var threads = min(
            2, ProcessInfo.processInfo.activeProcessorCount)
        @Option(help: "Seed of the initial weights and the shuffles.") var seed: UInt64 = 1
        @Option(
            help: ArgumentHelp(
                "Train this many models, seeds --seed, --seed+1, ..., and print the accuracy of each and their spread.",
                discussion:
                    "One run's accuracy varies by about a point with the seed (the same holds for TensorFlow), so compare distributions, not single runs."
            ))
        var seeds = 1
        @Flag(help: "Feed raw 0...255 pixels, as the original did, instead of scaling to [0, 1].") var rawPixels = false
        @Option(
            help:
                "Write the trained weights to this checkpoint file (atomically), e.g. for `fed bench codec --checkpoint`."
        )
        var saveCheckpoint: String?

        func validate() throws {
            guard samples > 0, epochs > 0, batchSize > 0, batchSize <= 1024, threads > 0 else {
                throw ValidationError("--samples, --epochs, --threads must be positive and --batch-size in 1...1024")
            }
            guard (1...1000).contains(seeds) else { throw ValidationError("--seeds must be in 1...1000") }
        }

        func run() throws {
            let (dir, note) = try DataFolder.resolve(data)
            let (train, test) = try DataFolder.trainAndTest(in: dir, trainSamples: samples, scale: !rawPixels)
            print("data: \(train.count) training and \(test.count) test samples; \(note)")
            print("build: \(BuildInfo.kernels)")

            print("machine: \(MachineName.description)")
            // The fixed method: the median of five measurements of each, before training, each
            // thread's flops over its own CPU time (PeakRate), so other processes do not lower it.
            let peak1 = PeakRate.medianGFLOPs(threads: 1)
            let peakAll = PeakRate.medianGFLOPs(threads: threads)
            print(
                String(
                    format:
                        "peak multiply-add rate (median of 5, per CPU second): one core %.1f GFLOP/s, %d threads %.1f GFLOP/s",
                    peak1, threads, peakAll))
            printKernelRates(peak: peak1)

            let (trainer, secs) = timedTraining(threads: threads, on: train, showProgress: true)
            let samplesPerSecond = Double(train.count * epochs) / secs
            let t = trainer.timing
            print(
                String(
                    format: "\ntraining: %d samples x %d epochs, batch %d, %d threads: %.2f s, %.0f samples/s",
                    train.count, epochs, batchSize, threads, secs, samplesPerSecond))
            print(
                String(
                    format: "  forward %.1f%%  backward and Adam %.1f%%  data %.1f%%", 100 * t.forward / t.total,
                    100 * t.backward / t.total, 100 * t.data / t.total))
            let flops = Self.flopsPerSample(MLP.mnistSizes) * Double(train.count * epochs)
            print(
                String(
                    format:
                        "  whole step: %.2f MFLOP a sample, %.1f GFLOP/s, %.1f%% of the %d threads' peak (%.1f GFLOP/s)",
                    Self.flopsPerSample(MLP.mnistSizes) / 1e6, flops / secs / 1e9, 100 * flops / secs / 1e9 / peakAll,
                    threads, peakAll))
            if threads > 1 {
                // What the extra threads give, phase by phase: the same run on one thread.
                let (single, singleSecs) = timedTraining(threads: 1, on: train, showProgress: false)
                let s = single.timing
                print(
                    String(
                        format:
                            "  one thread: %.2f s; %d threads are %.2fx as fast (forward %.2fx, backward and Adam %.2fx, data %.2fx)",
                        singleSecs, threads, singleSecs / secs, s.forward / t.forward, s.backward / t.backward,
                        s.data / t.data))
            }
            let evaluation = trainer.evaluate(test)
            print(String(format: "test accuracy: %.4f on %d held-out samples", evaluation.accuracy, test.count))
            if let path = saveCheckpoint {
                let ck = Checkpoint(version: 1, datasets: UInt64(train.count), tensors: trainer.model.tensors())
                try AtomicFile.write(ck.encode(), to: path)
                print("wrote \(path)")
            }
            if seeds > 1 {
                try accuracyOverSeeds(train: train, test: test, first: evaluation.accuracy)
            }
        }

        /// The MLP of --seed trained on `data` with `threads` threads, and the seconds it took.
        func timedTraining(threads: Int, on data: Dataset, showProgress: Bool) -> (Trainer, Double) {
            let clock = ContinuousClock()
            let start = clock.now
            let trainer = trained(seed: seed, on: data, threads: threads) { epoch, last in
                if showProgress {
                    Progress.line(
                        String(format: "epoch %d/%d  loss %.4f  accuracy %.4f", epoch, epochs, last.loss, last.accuracy)
                    )
                }
            }
            if showProgress { Progress.done() }
            let elapsed = clock.now - start
            return (trainer, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
        }

        /// Flops of one sample's training step in `sizes`' MLP (unpadded): the
        /// forward product, the weight gradient, and the input gradient of every
        /// layer but the first (784-200-200-10: 0.88 MFLOP).
        static func flopsPerSample(_ sizes: [Int]) -> Double {
            let products = zip(sizes, sizes.dropFirst()).map { Double($0 * $1) }
            return 2 * products.reduce(0, +) * 2 + 2 * products.dropFirst().reduce(0, +)
        }

        /// The MLP of `seed` trained for --epochs on `data` (shuffles seeded by `seed + 1`);
        /// `onEpoch` gets each epoch's number and its loss and accuracy.
        func trained(
            seed: UInt64, on data: Dataset, threads: Int? = nil,
            onEpoch: (Int, (loss: Double, accuracy: Double)) -> Void
        ) -> Trainer {
            let trainer = Trainer(
                model: MLP(seed: seed), maxBatch: max(256, batchSize), threads: threads ?? self.threads)
            var rng = SeededGenerator(seed: seed &+ 1)
            for epoch in 1...epochs { onEpoch(epoch, trainer.trainEpoch(data, batchSize: batchSize, rng: &rng)) }
            return trainer
        }

        /// Trains `seeds - 1` more models (the first one's accuracy is given) and prints each
        /// accuracy and the spread over all of them.
        func accuracyOverSeeds(train: Dataset, test: Dataset, first: Double) throws {
            print("\naccuracy over \(seeds) seeds (\(epochs) epochs each):")
            var accuracies = [first]
            print(String(format: "  seed %d: %.4f", seed, first))
            for s in seed + 1..<seed + UInt64(seeds) {
                let trainer = trained(seed: s, on: train) { epoch, _ in
                    if Progress.isTerminal { Progress.line("  seed \(s): epoch \(epoch)/\(epochs)") }
                }
                let accuracy = trainer.evaluate(test).accuracy
                accuracies.append(accuracy)
                Progress.line(String(format: "  seed %d: %.4f", s, accuracy))
                Progress.done()
            }
            let summary = SampleSummary(accuracies)
            print(
                String(
                    format: "  mean %.4f  sd %.4f  min %.4f  median %.4f  max %.4f  (%d runs)", summary.mean,
                    summary.standardDeviation, summary.min, summary.median, summary.max, accuracies.count))
        }

        func printKernelRates(peak: Double) {
            let m = batchSize
            let layers = [(784, 208), (208, 208), (208, 16)]
            var rows: [[String]] = []
            var rng = SeededGenerator(seed: 1)
            for (k, n) in layers {
                // Aligned as the trainer's buffers are (see AlignedFloats).
                let a = AlignedFloats((0..<max(m * k, m * n)).map { _ in rng.uniform(1) })
                let b = AlignedFloats((0..<k * n).map { _ in rng.uniform(1) })
                var c = AlignedFloats(repeating: 0, count: max(m * n, k * n, m * k))
                let flops = 2.0 * Double(m * k * n)
                for th in Set([1, threads]).sorted() {
                    let (nn, tn, nt) = a.withUnsafeBufferPointer { a in
                        b.withUnsafeBufferPointer { b in
                            c.withUnsafeMutableBufferPointer { c in
                                let (pa, pb, pc) = (a.baseAddress!, b.baseAddress!, c.baseAddress!)
                                return (
                                    Timing.measure(seconds: 0.2) {
                                        GEMM.nn(m: m, n: n, k: k, a: pa, b: pb, c: pc, threads: th)
                                    },
                                    Timing.measure(seconds: 0.2) {
                                        GEMM.tn(m: m, n: n, k: k, a: pa, b: pa, c: pc, threads: th)
                                    },
                                    Timing.measure(seconds: 0.2) {
                                        GEMM.nt(m: m, n: n, k: k, a: pa, b: pb, c: pc, threads: th)
                                    }
                                )
                            }
                        }
                    }
                    rows.append([
                        "\(m)x\(k) * \(k)x\(n)", "\(th)",
                        String(format: "%.1f (%.0f%%)", flops / nn / 1e9, 100 * flops / nn / 1e9 / peak),
                        String(format: "%.1f", flops / tn / 1e9), String(format: "%.1f", flops / nt / 1e9),
                    ])
                }
            }
            print(
                Table.render(
                    header: [
                        "layer (batch x in * in x out)", "threads", "forward A*B GFLOP/s (of peak)", "A^T*B", "A*B^T",
                    ],
                    rows: rows))
        }
    }
}

/// How the kernels were compiled.
enum BuildInfo {
    static var kernels: String {
        #if DEBUG
            let mode = "debug (slow: use -c release)"
        #else
            let mode = "release"
        #endif
        return
            "\(mode); kernels \(FedModelBuild.fusedMultiplyAdd ? "built for a CPU with FMA (see the README)" : "for the portable baseline, no FMA (slow: see FED_TARGET_CPU in the README)")"
    }
}

/// A one-line progress display on a terminal, plain lines otherwise.
enum Progress {
    static let isTerminal = isatty(STDOUT_FILENO) != 0
    static func line(_ s: String) {
        if isTerminal {
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + s).utf8))
        } else {
            print(s)
        }
    }
    static func done() { if isTerminal { print("") } }
}
