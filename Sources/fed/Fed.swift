import ArgumentParser

@main
struct Fed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fed",
        abstract: "Federated learning in Swift: a binary protocol, its codec, benchmarks.",
        subcommands: [Bench.self]
    )
}
