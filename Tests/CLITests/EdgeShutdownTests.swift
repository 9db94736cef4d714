import FedCodec
import FedTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@Suite("Edge shutdown", .serialized)
struct EdgeShutdownTests {
    /// Waits (at most `seconds`) for `condition`; whether it held.
    func eventually(_ seconds: Double, _ condition: () throws -> Bool) async throws -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if try condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try condition()
    }

    /// An edge whose upstream (`upstream`) never answers acknowledges three
    /// updates, is sent SIGTERM while its round with the upstream is waiting,
    /// and exits within `--shutdown-grace` (2 s) and a margin; restarted
    /// against a working root, it delivers the three updates there, once.
    func shutdownWithin(grace: Int, upstream: StallingServer) async throws -> Double {
        let dir = try temporaryDirectory("edge-shutdown")
        defer { try? FileManager.default.removeItem(at: dir) }
        let checkpoint = dir.appendingPathComponent("edge.fedk").path
        let edge = try ServerProcess(
            checkpoint: checkpoint,
            extra: [
                "--upstream", "127.0.0.1:\(upstream.port)", "--upstream-id", "edge-shutdown",
                "--upstream-interval", "0.5", "--shutdown-grace", "\(grace)",
            ])
        // The edge's first round is now waiting for the upstream's WELCOME.
        #expect(try await eventually(10) { upstream.accepted >= 1 }, "the edge never connected upstream")
        for i in 0..<3 {
            let c = try TestClient(port: edge.port)
            _ = try c.handshake("client-\(i)")
            guard case .ack = try c.push(constantTensors(Float(i + 1)), datasets: 100) else {
                throw TestError("the edge did not acknowledge update \(i)")
            }
        }
        try await Task.sleep(for: .seconds(1))
        // Timed on the waiting thread: the test's own resumption may wait for the pool.
        let (status, took) = try await offPool {
            let start = Date()
            return (edge.terminate(), Date().timeIntervalSince(start))
        }
        upstream.stop()
        #expect(status == 0, "exit status \(status) (-1: still running 20 s after SIGTERM)")

        // The three acknowledged updates are in the edge's checkpoint: they reach a working root on the next start.
        let root = try ServerProcess(checkpoint: dir.appendingPathComponent("root.fedk").path)
        let restarted = try ServerProcess(
            checkpoint: checkpoint,
            extra: [
                "--upstream", "127.0.0.1:\(root.port)", "--upstream-id", "edge-shutdown", "--upstream-interval", "0.2",
            ])
        let observer = try TestClient(port: root.port)
        _ = try observer.handshake("observer")
        var model: Model?
        _ = try await eventually(20) {
            if case .model(let m) = try observer.fetch() { model = m }
            return model?.datasets == 300
        }
        #expect(model?.datasets == 300, "the root holds \(model?.datasets ?? 0) of the 300 acknowledged samples")
        #expect(model?.version == 1, "the edge's batch was applied once")
        #expect(try await restarted.terminate() == 0)
        _ = try await root.terminate()
        return took
    }

    @Test("SIGTERM to an edge whose upstream accepts and stays silent: exit within the grace, nothing lost")
    func silentUpstream() async throws {
        let took = try await shutdownWithin(grace: 2, upstream: try StallingServer(dribble: nil))
        print(
            "edge with a silent upstream: exited \(String(format: "%.2f", took)) s after SIGTERM (--shutdown-grace 2)")
        // The bar is grace + 2 s (Benchmarks/hostile.py edge-sigterm); one more second for a busy machine.
        #expect(took < 5, "exited \(took) s after SIGTERM")
    }

    @Test("SIGTERM to an edge whose upstream sends one byte every 5 s: exit within the grace, nothing lost")
    func dribblingUpstream() async throws {
        let took = try await shutdownWithin(grace: 2, upstream: try StallingServer(dribble: 5))
        print(
            "edge with an upstream sending a byte every 5 s: exited \(String(format: "%.2f", took)) s after SIGTERM (--shutdown-grace 2)"
        )
        #expect(took < 5, "exited \(took) s after SIGTERM")
    }
}
