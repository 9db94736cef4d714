import FedClient
import FedCodec
import FedModel
import FedStorage
import Foundation

// logreg init CHECKPOINT
//     writes the model's starting weights (zeros), for `fed server --init CHECKPOINT`.
// logreg run --server HOST:PORT [--data DIR] [--clients 4] [--rounds 8] [--epochs 1]
//     runs a federated session: each round every client fetches the server's model,
//     trains on its own shard, and pushes; the server (`--strategy fedavg/k=CLIENTS`)
//     averages them. Then the server's model is scored on digits no client saw.

let usage = """
    usage: logreg init CHECKPOINT
           logreg run --server HOST:PORT [--data DIR] [--clients N] [--rounds N] [--epochs N] [--held-out N]
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
        let rounds = Int(option("--rounds", arguments) ?? "8") ?? 8
        let epochs = Int(option("--epochs", arguments) ?? "1") ?? 1
        let heldOut = Int(option("--held-out", arguments) ?? "2000") ?? 2000
        try await runSession(
            host: host, port: port, data: data, clients: clients, rounds: rounds, epochs: epochs, heldOut: heldOut)
    default:
        throw ExampleError(usage)
    }
} catch {
    FileHandle.standardError.write(Data("logreg: \(error)\n".utf8))
    exit(1)
}

/// The federated session: `clients` clients (tasks of this process, each
/// with its own connection and shard), `rounds` rounds.
func runSession(host: String, port: Int, data: String, clients: Int, rounds: Int, epochs: Int, heldOut: Int)
    async throws
{
    let all = try DataFolder.testSet(in: data, scale: true)
    let (train, test) = try all.split(first: all.count - heldOut)
    let shard = train.count / clients
    print("\(clients) clients with \(shard) digits each; \(test.count) digits held out")
    var accuracy = 0.0
    for round in 1...rounds {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<clients {
                group.addTask {
                    let client = FederationClient(
                        host: host, port: port, configuration: .init(clientID: "logreg-\(c)"))
                    guard case .model(let version, _, let weights) = try await client.fetch() else {
                        throw ExampleError("the server sent no model")
                    }
                    var model = LogisticRegression(features: 784, classes: 10)
                    try model.load(weights)
                    var rng = SeededGenerator(seed: UInt64(round * 1000 + c))
                    let mine = train.slice(c * shard..<(c + 1) * shard)
                    for _ in 0..<epochs { model.trainEpoch(mine, learningRate: 0.5, batch: 16, rng: &rng) }
                    _ = try await client.push(model.tensors, datasets: UInt64(mine.count), baseVersion: version)
                    await client.close()
                }
            }
            try await group.waitForAll()
        }
        let observer = FederationClient(host: host, port: port, configuration: .init(clientID: "logreg-observer"))
        guard case .model(let version, _, let weights) = try await observer.fetch() else {
            throw ExampleError("the server sent no model")
        }
        var model = LogisticRegression(features: 784, classes: 10)
        try model.load(weights)
        accuracy = model.accuracy(test)
        print(String(format: "round %d: server at version %d, held-out accuracy %.4f", round, version, accuracy))
        await observer.close()
    }
    print(String(format: "final held-out accuracy %.4f", accuracy))
}
