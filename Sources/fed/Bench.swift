import ArgumentParser

extension Fed {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Benchmarks that print figures against a baseline measured in the same run.",
            subcommands: [Codec.self, Train.self, Server.self, Wire.self]
        )
    }
}
