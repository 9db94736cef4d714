import Foundation
import Testing

@Suite("fed server --upstream")
struct TiersTests {
    @Test(
        "A root and two edge processes give the single server's model; an edge killed with -9 loses and repeats nothing"
    )
    func rootAndEdges() throws {
        let r = try FedProcess.run(["bench", "tiers", "--updates", "12", "--interval", "0.3"])
        #expect(r.status == 0, "\(r.output)")
        let bars = r.output.split(separator: "\n").filter { $0.contains("PASS") || $0.contains("MISS") }
        #expect(bars.count == 4 && bars.allSatisfy { $0.contains("PASS") }, "\(r.output)")
    }

    @Test("--upstream needs HOST:PORT and takes no --strategy")
    func validation() throws {
        let bad = try FedProcess.run(["server", "--upstream", "nowhere", "--port", "0"])
        #expect(bad.status != 0 && bad.output.contains("HOST:PORT"), "\(bad.output)")
        let strategy = try FedProcess.run([
            "server", "--upstream", "127.0.0.1:1", "--strategy", "fedbuff", "--port", "0",
        ])
        #expect(
            strategy.status != 0 && strategy.output.contains("give the strategy to the upstream"), "\(strategy.output)")
    }
}
