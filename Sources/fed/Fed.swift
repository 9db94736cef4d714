import ArgumentParser
import FedBench
import Foundation

@main
struct Fed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fed",
        abstract: "Federated learning in Swift: a server, clients, a one-command demo, evaluation and benchmarks.",
        discussion: "Start with `fed demo`. Each subcommand has its own --help.",
        subcommands: [
            Demo.self, Server.self, Client.self, Evaluate.self, DataCommand.self, SimulateCommand.self,
            PrivacyCommand.self,
            BenchCommand.self, SecAggIdentities.self,
        ]
    )

    /// Ignores SIGPIPE, then runs the command. The commands write to sockets
    /// (their own, and libcurl's under URLSession in `fed data fetch`) and pipes
    /// that the other end may close: such a write must fail with EPIPE and be
    /// handled or retried, not kill the process.
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        if CommandLine.arguments.dropFirst().first == "server" { Server.blockStopSignals() }
        main(nil)
    }
}
