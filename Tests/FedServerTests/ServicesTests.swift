import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

@testable import FedServer

/// The committer and the edge uplink as swift-service-lifecycle `Service`s,
/// each in a `ServiceGroup` of its own and beside a server.
@Suite("Services", .serialized)
struct ServicesTests {
    static var quiet: Logger {
        var logger = Logger(label: "services-test")
        logger.logLevel = .critical
        return logger
    }

    @Test("A committer that saves every 4th version writes the updates applied since at the group's shutdown")
    func committerFlushesAtShutdown() async throws {
        let checkpoints = InMemoryCheckpointStore()
        let store = ModelStore(initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0)))
        let committer = GroupCommitter(store: store, checkpoints: checkpoints, saveEvery: 4)
        let group = ServiceGroup(services: [committer], logger: Self.quiet)
        let running = Task { try await group.run() }
        for i in 1...2 {
            let ack = try await committer.submit(constantTensors(Float(i)), datasets: 10)
            #expect(ack.version == UInt64(i))
        }
        #expect(checkpoints.saves == 0)  // two versions: not due yet
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(checkpoints.saves == 1)
        #expect(try checkpoints.loadState()?.snapshot.version == 2)
        #expect(try checkpoints.loadState()?.snapshot.tensors == store.snapshot().tensors)
    }

    @Test("A committer whose every version is saved writes nothing more at the group's shutdown")
    func committerNothingUnsaved() async throws {
        let checkpoints = InMemoryCheckpointStore()
        let store = ModelStore(initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0)))
        let committer = GroupCommitter(store: store, checkpoints: checkpoints, saveEvery: 1)
        let group = ServiceGroup(services: [committer], logger: Self.quiet)
        let running = Task { try await group.run() }
        _ = try await committer.submit(constantTensors(1), datasets: 10)
        #expect(checkpoints.saves == 1)
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(checkpoints.saves == 1)
    }

    @Test("An uplink run as a Service pushes what gathered after its last round at the group's shutdown")
    func uplinkLastSync() async throws {
        let dir = try temporaryDirectory("services")
        defer { try? FileManager.default.removeItem(at: dir) }
        let root = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: EdgeTests.shapes)),
            configuration: .init(maxDatasets: 10_000_000))
        try root.apply(constantTensors(0.5, shapes: EdgeTests.shapes), datasets: 50)  // version 1 to take
        let edge = try EdgeTests.edge(dir.appendingPathComponent("edge.fedk").path)
        // One round at start, the next not before an hour: only the last sync can push.
        let uplink = EdgeUplink(
            configuration: EdgeConfiguration(link: StoreLink(store: root, clientID: "e"), interval: .seconds(3600)),
            committer: edge, logger: Self.quiet)
        let group = ServiceGroup(services: [edge, uplink], logger: Self.quiet)
        let running = Task { try await group.run() }
        // The first round took the upstream's model.
        let start = ContinuousClock.now
        while edge.store.durable().edgeUpstreamVersion != 1 {
            guard ContinuousClock.now - start < .seconds(20) else {
                Issue.record("the uplink's first round did not take the upstream's version 1")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        var rng = SystemRandomNumberGenerator()
        for i in 1...3 {
            _ = try await edge.submit(
                EdgeTests.randomTensors(&rng), datasets: 100, key: PushKey(clientID: "c", pushID: UInt64(i)))
        }
        #expect(root.snapshot().datasets == 50)
        await group.triggerGracefulShutdown()
        try await running.value
        // The batch of three went upstream as one push (the edge's outbox is empty).
        #expect(root.snapshot().version == 2 && root.snapshot().datasets > 50)
        #expect(edge.store.durable().edgeUpdates == 0)
        // A second stop neither syncs again nor waits.
        uplink.stop(finalSync: true, by: .now() + .seconds(5))
        #expect(root.snapshot().version == 2)
    }

    @Test("An uplink run as a Service stops within its shutdown grace while its upstream never answers a push")
    func uplinkBoundedStop() async throws {
        let dir = try temporaryDirectory("services")
        defer { try? FileManager.default.removeItem(at: dir) }
        let edge = try EdgeTests.edge(dir.appendingPathComponent("edge.fedk").path)
        let link = HangingLink(honorsCutoff: false)
        defer { link.release() }
        let uplink = EdgeUplink(
            configuration: EdgeConfiguration(link: link, interval: .milliseconds(50), shutdownGrace: .seconds(1)),
            committer: edge, logger: Self.quiet)
        let group = ServiceGroup(services: [edge, uplink], logger: Self.quiet)
        let running = Task { try await group.run() }
        var rng = SystemRandomNumberGenerator()
        _ = try await edge.submit(EdgeTests.randomTensors(&rng), datasets: 100, key: PushKey(clientID: "c", pushID: 1))
        let pushing = try await offPool { link.pushing.wait(timeout: .now() + .seconds(20)) }
        #expect(pushing == .success, "the uplink never pushed")
        let clock = ContinuousClock()
        let start = clock.now
        await group.triggerGracefulShutdown()
        try await running.value
        let took = clock.now - start
        // 1.5 s on a quiet machine (the grace and the margin for a link that ignores its
        // cut-off); the push never returns by itself, so a stop that waited for it would
        // not end before `release()`. Loose for a loaded machine.
        print("uplink with a silent upstream stopped in \(took) (grace 1 s, margin 0.5 s)")
        #expect(took < .seconds(10), "stop took \(took) with a grace of 1 s")
        // The update stays in the checkpoint, for the next start.
        #expect(edge.store.durable().edgeUpdates == 1)
    }
}
