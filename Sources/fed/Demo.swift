import ArgumentParser
import FedClient
import FedCodec
import FedModel
import FedServer
import Foundation
import Logging
import Synchronization

extension Fed {
    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A whole federated session on this machine: a server, three clients, the final model evaluated.",
            discussion: """
                Starts `fed server` in this process on a free port, runs --clients clients that each \
                train on their share of 12 data slices with the original demo's loop (fetch, train \
                --epochs epochs, push), evaluates the final federated model, trains one model alone \
                on the first client's share for comparison, and prints both accuracies, the wall time \
                and the bytes on the wire against what the original's JSON would have moved.
                Data: --data, FED_DATA, ./data, else the MNIST test set built into the package (Data/mnist).
                """
        )

        @Option(help: "Folder of MNIST-format IDX files.") var data: String?
        @Option(help: "Number of clients (1-12); the 12 slices are split between them.") var clients = 3
        @Option(help: "Epochs per slice (the original: 20).") var epochs = 20
        @Option(help: "Seed of the initial weights and shuffles.") var seed: UInt64 = 1
        @Option(help: "Compression on the wire: none, zlib, shuffle-zlib.") var compression = "shuffle-zlib"

        func validate() throws {
            guard (1...12).contains(clients) else { throw ValidationError("--clients must be in 1...12") }
            guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
            guard Compression(name: compression) != nil else {
                throw ValidationError("unknown --compression \(compression)")
            }
        }

        func run() throws {
            let started = Date()
            let (dir, note) = try DataFolder.resolve(data)
            print(note)
            let (slices, test, split) = try DataFolder.federatedSplit(in: dir, scale: true)
            print(split)
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = .error
                return h
            }
            let ckDir = FileManager.default.temporaryDirectory.appendingPathComponent("fed-demo-\(getpid())")
            try FileManager.default.createDirectory(at: ckDir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: ckDir) }
            let server = try FederatedServer.start(
                configuration: ServerConfiguration(
                    network: .init(port: 0),
                    storage: .init(checkpointPath: ckDir.appendingPathComponent("model.fedk").path)),
                initial: MLP(seed: seed).tensors(), threads: 1)
            let port = server.localPort
            print("server listening on 127.0.0.1:\(port); \(clients) clients, \(epochs) epochs per slice\n")

            let shares = (0..<clients).map { i in
                Array(slices[(i * slices.count / clients)..<((i + 1) * slices.count / clients)])
            }
            let summaries = Mutex<[Int: FederatedSummary]>([:])
            let mode = Compression(name: compression)!
            let group = DispatchGroup()
            let epochs = self.epochs, seed = self.seed
            for (i, share) in shares.enumerated() {
                group.enter()
                let first = i * slices.count / clients + 1
                Thread {
                    defer { group.leave() }
                    let transport = BinaryTransport(
                        host: "127.0.0.1", port: port, clientID: "client-\(i + 1)", compression: mode)
                    let loop = FederatedLoop(
                        model: MLPSlices(slices: share, epochs: epochs, seed: seed &+ UInt64(i) &* 7919),
                        transport: transport,
                        log: { line in
                            if line.hasPrefix("pushed") || line.contains("failed") || line.contains("rejected") {
                                print("client \(i + 1) (slices \(first)-\(first + share.count - 1)): \(line)")
                            }
                        })
                    let s = loop.run(rounds: share.count)
                    summaries.withLock { $0[i] = s }
                }.start()
            }
            group.wait()
            let federatedSeconds = Date().timeIntervalSince(started)
            let final = server.store.snapshot()
            try server.shutdown(grace: .milliseconds(100))

            var model = MLP(seed: seed)
            try model.load(final.tensors)
            let federated = Trainer(model: model, maxBatch: 256, threads: 2).evaluate(test)

            print("\ntraining one model alone on client 1's share, for comparison...")
            let alone = Trainer(model: MLP(seed: seed), maxBatch: 256, threads: 2)
            var rng = SeededGenerator(seed: seed &+ 0x5EED)
            for slice in shares[0] {
                for _ in 0..<epochs { alone.trainEpoch(slice, rng: &rng) }
            }
            let single = alone.evaluate(test)

            let all = summaries.withLock { Array($0.values) }
            let fetches = all.reduce(0) { $0 + $1.fetches - $1.fetchesFailed }
            let pushes = all.reduce(0) { $0 + $1.pushesAccepted }
            let bytes = all.reduce(0) { $0 + $1.bytesSent + $1.bytesReceived }
            let original = fetches * 4_350_666 + pushes * 4_753_846
            print(
                """

                federated model (version \(final.version), \(pushes) updates from \(clients) clients): accuracy \(String(format: "%.4f", federated.accuracy)) on \(test.count) test images
                one client's share alone:                                 accuracy \(String(format: "%.4f", single.accuracy))
                federation \(federated.accuracy > single.accuracy ? "beats" : "does NOT beat") training alone by \(String(format: "%+.4f", federated.accuracy - single.accuracy))
                wall time: \(String(format: "%.1f", federatedSeconds)) s for the federated session, \(String(format: "%.1f", Date().timeIntervalSince(started))) s in all
                bytes on the wire: \(bytes) (\(fetches) fetches, \(pushes) pushes, \(mode)); the original's JSON would have moved \(original): \(String(format: "%.3f", Double(bytes) / Double(max(original, 1))))x
                """)
        }
    }
}
