import ArgumentParser

@main
struct Fed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fed",
        abstract: "Federated learning in Swift: a binary protocol, a pure-Swift MLP, benchmarks, evaluation.",
        subcommands: [Demo.self, Server.self, Client.self, Evaluate.self, DataCommand.self, Bench.self]
    )
}
