import FedClient
import FedCodec
import FedModel
import FedStorage
import Foundation

// logreg init CHECKPOINT
//     writes the model's starting weights (zeros), for `fed server --init CHECKPOINT`.
// logreg run --server HOST:PORT [--data DIR] [--clients 4] [--epochs 1]
//     runs a federated session against `fed server --rounds CLIENTS --total-rounds N`:
//     each client is one `FederationClient.run` call that checks in, trains its own
//     shard from each task's weights and reports, until the server has run its rounds
//     (the server averages each round's reports). Then the server's model is scored on
//     digits no client saw.

let usage = """
    usage: logreg init CHECKPOINT
           logreg run --server HOST:PORT [--data DIR] [--clients N] [--epochs N] [--held-out N]
    """

func option(_ name: String, _ arguments: [String]) -> String? {
    guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
    return arguments[i + 1]
}

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    switch arguments.first {
    case "init":
        guard arguments.count == 2 else { throw ExampleError(usage) }
        let model = LogisticRegression(features: 784, classes: 10)
        try CheckpointFile.write(Checkpoint(version: 0, datasets: 0, tensors: model.tensors), to: arguments[1])
        print("wrote \(arguments[1]): tensors of shapes \(model.tensors.map(\.shape))")
    case "run":
        guard let server = option("--server", arguments), let colon = server.lastIndex(of: ":"),
            let port = Int(server[server.index(after: colon)...])
        else { throw ExampleError(usage) }
        let host = String(server[..<colon])
        let data = option("--data", arguments) ?? "../../Data/mnist"
        let clients = Int(option("--clients", arguments) ?? "4") ?? 4
        let epochs = Int(option("--epochs", arguments) ?? "1") ?? 1
        let heldOut = Int(option("--held-out", arguments) ?? "2000") ?? 2000
        try await runSession(
            host: host, port: port, data: data, clients: clients, epochs: epochs, heldOut: heldOut)
    default:
        throw ExampleError(usage)
    }
} catch {
    FileHandle.standardError.write(Data("logreg: \(error)\n".utf8))
    exit(1)
}

/// One client's part: its shard, trained from each task's weights.
struct ShardTrainer: LocalTrainer {
    let shard: Dataset
    let epochs: Int
    var rng: SeededGenerator

    mutating func train(_ task: TrainingTask) async throws -> TrainingOutcome {
        var model = LogisticRegression(features: 784, classes: 10)
        try model.load(task.weights)
        for _ in 0..<epochs { model.trainEpoch(shard, learningRate: 0.5, batch: 16, rng: &rng) }
        return TrainingOutcome(weights: model.tensors, samples: UInt64(shard.count))
    }
}

/// The federated session: `clients` clients (tasks of this process, each
/// with its own connection and shard), each one `run` call that takes part in
/// every round the server runs (`fed server --rounds CLIENTS --total-rounds N`)
/// until the server says it has finished.
func runSession(host: String, port: Int, data: String, clients: Int, epochs: Int, heldOut: Int) async throws {
    let all = try DataFolder.testSet(in: data, scale: true)
    let (train, test) = try all.split(first: all.count - heldOut)
    let shard = train.count / clients
    print("\(clients) clients with \(shard) digits each; \(test.count) digits held out")
    try await withThrowingTaskGroup(of: Void.self) { group in
        for c in 0..<clients {
            group.addTask {
                let client = FederationClient(host: host, port: port, configuration: .init(clientID: "logreg-\(c)"))
                var trainer = ShardTrainer(
                    shard: train.slice(c * shard..<(c + 1) * shard), epochs: epochs,
                    rng: SeededGenerator(seed: UInt64(1000 + c)))
                let summary = try await client.run(trainer: &trainer) { event in
                    if c == 0, case .reported(let round, _, let ack) = event {
                        print("round \(round): the server made version \(ack.version)")
                    }
                }
                print("client \(c): \(summary.reportsApplied) reports applied of \(summary.tasks) tasks")
                await client.close()
            }
        }
        try await group.waitForAll()
    }
    let observer = FederationClient(host: host, port: port, configuration: .init(clientID: "logreg-observer"))
    guard case .model(let version, _, let weights) = try await observer.fetch() else {
        throw ExampleError("the server sent no model")
    }
    await observer.close()
    var model = LogisticRegression(features: 784, classes: 10)
    try model.load(weights)
    print(String(format: "final held-out accuracy at version %d: %.4f", version, model.accuracy(test)))
}
