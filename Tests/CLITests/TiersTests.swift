import FedCodec
import FedTestSupport
import Foundation
import Testing

@Suite("fed server --upstream")
struct TiersTests {
    @Test(
        "A root and two edge processes give the single server's model; an edge killed with -9 loses and repeats nothing"
    )
    func rootAndEdges() async throws {
        let r = try await FedProcess.run(["bench", "tiers", "--updates", "12", "--interval", "0.3"])
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

    /// Four updates through an edge pushing upstream with `encoding`: the
    /// bytes the root received for the edge's batch, and the root's model after it.
    func throughEdge(_ encoding: String) throws -> (bytes: Double, model: [Float]) {
        let dir = try temporaryDirectory("tiers")
        defer { try? FileManager.default.removeItem(at: dir) }
        let root = try ServerProcess(checkpoint: dir.appendingPathComponent("root.fedk").path)
        // Past version 0, so the edge's batch has a base to form a delta against (SPEC 4.2: base 0 is "last served").
        let direct = try TestClient(port: root.port)
        _ = try direct.handshake("direct")
        _ = try direct.push(constantTensors(0.01), datasets: 10)
        let edge = try ServerProcess(
            checkpoint: dir.appendingPathComponent("edge.fedk").path,
            extra: [
                "--upstream", "127.0.0.1:\(root.port)", "--upstream-interval", "3600", "--upstream-encoding", encoding,
            ])
        // Wait for the edge's first round to take the root's version 1: a batch gathered before has base 0.
        func metric(_ port: Int, _ name: String) throws -> Double? {
            let scrape = try TestClient(port: port, timeoutSeconds: 5)
            try scrape.send(Array("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
            return scrape.receiveAll().split(separator: "\n").first { $0.hasPrefix(name + " ") }
                .flatMap { Double($0.split(separator: " ")[1]) }
        }
        for _ in 0..<200 where try metric(edge.port, "fed_edge_upstream_version") != 1 { usleep(20_000) }
        let c = try TestClient(port: edge.port)
        _ = try c.handshake("client")
        for k in 0..<4 {
            // Distinct, incompressible-looking weights, the same in every run.
            let tensors = constantTensors(0).map { t in
                var t = t
                for i in t.values.indices { t.values[i] = 0.1 * sin(Float(i % 9973) * 0.37 + Float(k)) }
                return t
            }
            guard case .ack = try c.push(tensors, datasets: 100) else { throw TestError("the edge did not ACK") }
        }
        // The next round is an hour away: the shutdown's last round pushes the batch.
        let before = try #require(try metric(root.port, "fed_received_bytes_total"))
        #expect(edge.terminate() == 0)
        let after = try #require(try metric(root.port, "fed_received_bytes_total"))
        guard case .model(let model) = try direct.fetch() else { throw TestError("no model from the root") }
        #expect(model.version == 2, "the batch reached the root once")
        _ = root.terminate()
        return (after - before, model.tensors.flatMap { $0.values })
    }

    @Test(
        "An edge pushing int8 deltas upstream sends a quarter of the bytes or less, and the root's model moves within the rounding"
    )
    func lossyUpstream() throws {
        let lossless = try throughEdge("fp32")
        let int8 = try throughEdge("int8-delta")
        #expect(int8.bytes < lossless.bytes / 4, "int8-delta \(int8.bytes) B, fp32 \(lossless.bytes) B")
        var diff = 0.0
        var norm = 0.0
        for (a, b) in zip(int8.model, lossless.model) {
            diff += Double(a - b) * Double(a - b)
            norm += Double(b) * Double(b)
        }
        let relative = (diff / norm).squareRoot()
        #expect(relative > 0 && relative < 0.01, "relative difference \(relative)")
    }

    @Test("--upstream-encoding takes fed client's encodings, and only with --upstream")
    func upstreamEncodingValidation() throws {
        let bad = try FedProcess.run([
            "server", "--upstream", "127.0.0.1:1", "--upstream-encoding", "int3", "--port", "0",
        ])
        #expect(bad.status != 0 && bad.output.contains("int8"), "\(bad.output)")
        let alone = try FedProcess.run(["server", "--upstream-encoding", "int8-delta", "--port", "0"])
        #expect(alone.status != 0 && alone.output.contains("needs --upstream"), "\(alone.output)")
    }
}
