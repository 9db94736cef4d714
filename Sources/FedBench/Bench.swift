import ArgumentParser

/// `fed bench`: benchmarks that print figures against a baseline measured in
/// the same run. A library of its own, so the CLI's other commands stay small
/// and later benchmarks share its load generator (`LoadGenerator`).
public struct BenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print figures against a baseline measured in the same run.",
        subcommands: [
            Codec.self, Train.self, Server.self, Wire.self, Fleet.self, Tiers.self, CheckIns.self, SecAgg.self,
        ]
    )

    public init() {}
}
