import FedSimulation
import Testing

@Suite("A simulation's report")
struct SimulationReportTests {
    /// A run with a learning curve of (virtual seconds, accuracy) points.
    func run(_ strategy: String, seed: UInt64, _ curve: [(Double, Double)], scenario: String = "iid")
        -> SimulationResult
    {
        SimulationResult(
            strategy: strategy, encoding: "fp32", scenario: scenario, seed: seed, finalAccuracy: curve.last!.1,
            virtualSeconds: curve.last!.0, bytes: 0, bytesSent: 0, bytesReceived: 0, deltaFetches: 0, fullFetches: 0,
            pushes: 0, rejected: 0, versions: 0, wallSeconds: 0,
            curve: curve.map { CurvePoint(virtualSeconds: $0.0, bytes: 0, samples: 0, accuracy: $0.1) })
    }

    @Test("Time to reach the first strategy's final accuracy, per seed, as a share of its time")
    func timeToReach() {
        let text = SimulationReport(
            results: [
                run("slow", seed: 1, [(100, 0.5), (200, 0.7)]),
                run("fast", seed: 1, [(20, 0.6), (40, 0.75), (60, 0.8)]),
                run("slow", seed: 2, [(100, 0.6), (400, 0.8)]),
                run("fast", seed: 2, [(50, 0.7), (100, 0.79)]),
            ], centralized: []
        ).timeToReach
        // Seed 1: 0.75 >= 0.7 at 40 of 200 s; seed 2: 0.8 is never reached.
        // Final differences: +10 and -1 points, mean +4.50.
        let row = text.split(separator: "\n").first { $0.contains("fast") }.map(String.init) ?? ""
        #expect(row.contains("20% never"), "\(text)")
        #expect(row.contains("+4.50"), "\(text)")
        #expect(SimulationReport(results: [run("only", seed: 1, [(1, 0.5)])], centralized: []).timeToReach.isEmpty)
    }

    @Test("The table gives each row's distance to the centralized reference")
    func distanceToCentralized() {
        let report = SimulationReport(
            results: [run("a", seed: 1, [(1, 0.88)]), run("a", seed: 2, [(1, 0.90)])], centralized: [0.885, 0.905])
        #expect(report.table.contains("vs central"))
        #expect(report.table.contains("-0.50"), "\(report.table)")
        // One strategy, one encoding: the summary is the table alone.
        #expect(report.summary == report.table)
    }

    @Test("curve.csv quotes a scenario holding a comma; one record per curve point")
    func curveCSV() {
        let csv = SimulationReport(
            results: [run("fedavg/k=2", seed: 3, [(10, 0.5), (20, 0.75)], scenario: "iid, sync 0.5")], centralized: []
        ).curveCSV
        #expect(
            csv == """
                strategy,scenario,seed,virtual_seconds,bytes,samples,accuracy
                fedavg/k=2,"iid, sync 0.5",3,10.0,0,0,0.5
                fedavg/k=2,"iid, sync 0.5",3,20.0,0,0,0.75

                """)
    }
}
