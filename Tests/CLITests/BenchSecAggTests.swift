import FedSecureAggregation
import Foundation
import Testing

@Suite("fed bench secagg")
struct BenchSecAggTests {
    @Test(
        "Prints FailureProbability's figures and a seeded Monte Carlo that repeats",
        arguments: [(100, 20, 10, 0.1), (100, 99, 50, 0.3), (12, 4, 3, 0.5)])
    func figures(n: Int, k: Int, t: Int, dropout: Double) throws {
        let arguments = [
            "bench", "secagg", "--n", "\(n)", "--k", "\(k)", "--t", "\(t)", "--dropout", "\(dropout)", "--trials",
            "300",
        ]
        let r = try FedProcess.run(arguments)
        #expect(r.status == 0, "\(r.output)")
        let analysis = try FailureProbability(participants: n, neighbours: k, threshold: t, dropoutRate: dropout)
        #expect(r.output.contains("= " + String(format: "%.3g", analysis.shortfallProbability)), "\(r.output)")
        #expect(r.output.contains("<= " + String(format: "%.3g", analysis.failureUpperBound)), "\(r.output)")
        #expect(r.output.contains("exactly") == (k == n - 1), "\(r.output)")
        #expect(r.output.contains("t must exceed k/2") == (2 * t <= k), "\(r.output)")
        // The Monte Carlo's counts (not its time) are the same for the same seed.
        func counts(_ output: String) -> [Substring] {
            output.split(separator: "\n").filter { $0.contains("trials (") }
        }
        let again = try FedProcess.run(arguments)
        #expect(counts(r.output).count == 2 && counts(r.output) == counts(again.output), "\(again.output)")
    }

    @Test(
        "Impossible parameters are refused with the reason",
        arguments: [["--k", "10", "--t", "3"], ["--k", "4", "--t", "5"]])
    func refused(graph: [String]) throws {
        let r = try FedProcess.run(["bench", "secagg", "--n", "10", "--dropout", "0.1"] + graph)
        #expect(r.status != 0)
        #expect(r.output.contains("must be in"), "\(r.output)")
    }
}
