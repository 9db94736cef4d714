import ArgumentParser

@main
struct Fed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fed",
        abstract: "Federated learning in Swift: a server, clients, a one-command demo, evaluation and benchmarks.",
        discussion: "Start with `fed demo`. Each subcommand has its own --help.",
        subcommands: [Demo.self, Server.self, Client.self, Evaluate.self, DataCommand.self, Bench.self]
    )
}
