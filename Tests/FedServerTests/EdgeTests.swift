import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@testable import FedServer

/// An upstream server in memory: a `ModelStore` (running average, idempotency
/// keys) reached without sockets. `loseAcks` applies a push and then fails as
/// a connection that dropped before the acknowledgement arrived would.
final class StoreLink: UpstreamLink {
    let store: ModelStore
    let clientID: String
    let loseAcks: Bool
    init(store: ModelStore, clientID: String, loseAcks: Bool = false) {
        (self.store, self.clientID, self.loseAcks) = (store, clientID, loseAcks)
    }

    func fetch(held: UInt64) throws -> UpstreamModel? {
        let s = store.snapshot()
        return s.version == held ? nil : UpstreamModel(version: s.version, samples: s.datasets, tensors: s.tensors)
    }

    func push(_ weights: [Tensor], samples: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> UInt64 {
        let update = ModelStore.Update(
            tensors: weights, datasets: samples, key: PushKey(clientID: clientID, pushID: pushID),
            clientID: clientID, baseVersion: baseVersion)
        switch store.applyBatch([update], commit: { _, _ in })[0] {
        case .failure(let r): throw r
        case .success(let ack):
            if loseAcks { throw TestError("connection reset before the acknowledgement") }
            return ack.version
        }
    }
}

/// A link that fails while `failing` is set, and is `inner` otherwise.
final class SwitchableLink: UpstreamLink {
    let inner: any UpstreamLink
    let failing = Atomic<Bool>(false)
    init(_ inner: any UpstreamLink) { self.inner = inner }

    func fetch(held: UInt64) throws -> UpstreamModel? {
        if failing.load(ordering: .relaxed) { throw TestError("upstream unreachable") }
        return try inner.fetch(held: held)
    }

    func push(_ weights: [Tensor], samples: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> UInt64 {
        if failing.load(ordering: .relaxed) { throw TestError("upstream unreachable") }
        return try inner.push(weights, samples: samples, baseVersion: baseVersion, pushID: pushID)
    }
}

@Suite("Edge servers")
struct EdgeTests {
    static let shapes = [[16, 8], [8]]

    static func randomTensors(_ rng: inout SystemRandomNumberGenerator) -> [Tensor] {
        shapes.map { s in
            try! Tensor(
                shape: s, values: (0..<Tensor.elementCount(s)!).map { _ in Float.random(in: -1...1, using: &rng) })
        }
    }

    /// An edge's store and committer over the checkpoint at `path` (resumed if it exists).
    static func edge(_ path: String) throws -> GroupCommitter {
        let resumed = try CheckpointFile.loadState(from: path)
        let store = ModelStore(
            initial: resumed?.snapshot
                ?? ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: shapes)),
            durable: resumed?.durable ?? .init(),
            configuration: .init(strategy: EdgeAccumulator()))
        return GroupCommitter(store: store, path: path)
    }

    static func uplink(_ committer: GroupCommitter, _ link: any UpstreamLink) -> EdgeUplink {
        EdgeUplink(
            configuration: EdgeConfiguration(link: link), committer: committer, logger: Logger(label: "edge-test"))
    }

    @Test("A root fed by two edges ends with the model of one server that saw every update")
    func rootEqualsSingleServer() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let zero = ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes))
        let root = ModelStore(initial: zero, configuration: .init(maxDatasets: 10_000_000))
        let single = ModelStore(initial: zero)
        let edges = try ["a", "b"].map { try Self.edge(dir.appendingPathComponent("\($0).fedk").path) }
        let links = ["a", "b"].map { Self.uplink(edges[$0 == "a" ? 0 : 1], StoreLink(store: root, clientID: $0)) }
        var rng = SystemRandomNumberGenerator()
        var total: UInt64 = 0
        for round in 0..<4 {
            for i in 0..<10 {
                let w = Self.randomTensors(&rng)
                // Per-update counts no larger than the model's count after the first round.
                let b = UInt64.random(in: 50...500, using: &rng)
                total += b
                let edge = edges[i % 2]
                _ = try await edge.submit(w, datasets: b, key: PushKey(clientID: "c\(i)", pushID: UInt64(round + 1)))
                try single.apply(w, datasets: b)
            }
            for link in links { try link.sync() }
        }
        for link in links { try link.sync() }
        #expect(root.snapshot().datasets == total)
        #expect(single.snapshot().datasets == total)
        let r = root.snapshot().tensors.flatMap(\.values)
        let s = single.snapshot().tensors.flatMap(\.values)
        let scale = s.map(abs).max()!
        let worst = zip(r, s).map { abs($0 - $1) }.max()!
        print("root vs single server: max |difference| \(worst), relative \(worst / scale)")
        #expect(worst / scale <= 1e-5)
        // Both edges serve the root's model.
        for edge in edges { #expect(edge.store.snapshot().tensors == root.snapshot().tensors) }
    }

    @Test("A batch the upstream applied whose acknowledgement was lost is not applied again after a crash")
    func lostAcknowledgement() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("edge.fedk").path
        let root = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes)),
            configuration: .init(maxDatasets: 10_000_000))
        var rng = SystemRandomNumberGenerator()
        var edge = try Self.edge(path)
        for i in 0..<3 {
            _ = try await edge.submit(
                Self.randomTensors(&rng), datasets: 100, key: PushKey(clientID: "c", pushID: UInt64(i + 1)))
        }
        #expect(edge.store.bufferedUpdates == 3)
        #expect(throws: TestError.self) {
            try Self.uplink(edge, StoreLink(store: root, clientID: "e", loseAcks: true)).sync()
        }
        #expect(root.snapshot().datasets == 300 && root.snapshot().version == 1)

        // The edge dies and restarts from its checkpoint: the outbox is still there.
        edge = try Self.edge(path)
        #expect(edge.store.bufferedUpdates == 3)
        // Two more acknowledged updates, then another crash before any sync.
        for i in 3..<5 {
            _ = try await edge.submit(
                Self.randomTensors(&rng), datasets: 10, key: PushKey(clientID: "c", pushID: UInt64(i + 1)))
        }
        edge = try Self.edge(path)
        #expect(edge.store.bufferedUpdates == 5)

        let uplink = Self.uplink(edge, StoreLink(store: root, clientID: "e"))
        let first = try uplink.sync()
        // The outbox went again with its push id: acknowledged as a replay, not applied twice.
        #expect(first.pushedUpdates == 3)
        #expect(root.snapshot().datasets == 300 && root.snapshot().version == 1)
        let second = try uplink.sync()
        #expect(second.pushedUpdates == 2)
        #expect(root.snapshot().datasets == 320 && root.snapshot().version == 2)
        #expect(edge.store.bufferedUpdates == 0)
        #expect(edge.store.snapshot().tensors == root.snapshot().tensors)
        #expect(edge.store.snapshot().datasets == 320)
    }

    @Test("An upstream that refuses a batch keeps it in the outbox, and updates keep gathering")
    func refusalKeepsBatch() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // The root admits at most 150 samples an update; the edge gathers 200.
        let root = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes)),
            configuration: .init(maxDatasets: 150))
        let edge = try Self.edge(dir.appendingPathComponent("edge.fedk").path)
        for i in 0..<2 { _ = try await edge.submit(constantTensors(Float(i), shapes: Self.shapes), datasets: 100) }
        let uplink = Self.uplink(edge, StoreLink(store: root, clientID: "e"))
        #expect(throws: RejectedUpdate.self) { try uplink.sync() }
        _ = try await edge.submit(constantTensors(5, shapes: Self.shapes), datasets: 10)
        #expect(edge.store.bufferedUpdates == 3)
        #expect(root.snapshot().version == 0)
        let kept = try #require(edge.store.durable().tensors["edge.outbox"])
        #expect(kept[0].values[0] == 0.5)  // (100 * 0 + 100 * 1) / 200
    }
}

@Suite("Edge server over TCP", .serialized)
struct EdgeServerTests {
    /// An upstream in memory at version 0 with the MLP's shapes, admitting large batches.
    static func root() -> ModelStore {
        ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0)),
            configuration: .init(maxDatasets: 10_000_000))
    }

    @Test("An edge acknowledges a push over TCP, and its shutdown pushes the batch upstream")
    func shutdownPushes() throws {
        let root = Self.root()
        let s = try RunningServer { c in
            // An interval far longer than the test: only the shutdown's last round can push.
            c.edge = EdgeConfiguration(link: StoreLink(store: root, clientID: "edge"), interval: .seconds(3600))
        }
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        for (value, samples) in [(Float(1), UInt64(100)), (3, 300)] {
            guard case .ack = try c.push(constantTensors(value), datasets: samples) else {
                throw TestError("no ACK")
            }
        }
        #expect(s.server.store.bufferedUpdates == 2)
        #expect(root.snapshot().version == 0)
        try s.server.shutdown(grace: .seconds(2))
        #expect(root.snapshot().datasets == 400)
        #expect(root.snapshot().tensors[0].values[0] == 2.5)  // (100 * 1 + 300 * 3) / 400
        let onDisk = try #require(try CheckpointFile.loadState(from: s.dir.appendingPathComponent("model.fedk").path))
        #expect(onDisk.durable.tensors["edge.outbox"] == nil && onDisk.durable.tensors["edge.pending"] == nil)
    }
}

extension EdgeServerTests {
    @Test("An edge's /metrics shows the updates it holds and how its rounds with the upstream went")
    func metrics() throws {
        let root = Self.root()
        let link = SwitchableLink(StoreLink(store: root, clientID: "edge"))
        // The loop's first round runs at start; the next would come in an hour, so the test drives the rest.
        let s = try RunningServer { c in c.edge = EdgeConfiguration(link: link, interval: .seconds(3600)) }
        let uplink = try #require(s.server.uplink)
        let m = MetricsTests()
        func scrape() throws -> String {
            let answer = try m.scrape(s.port)
            return String(answer[(answer.range(of: "\r\n\r\n")?.upperBound ?? answer.endIndex)...])
        }
        var text = try scrape()
        for _ in 0..<100 where m.value(text, "fed_edge_upstream_syncs_total{result=\"ok\"}") != 1 {
            Thread.sleep(forTimeInterval: 0.05)
            text = try scrape()
        }
        #expect(m.value(text, "fed_edge_upstream_syncs_total{result=\"ok\"}") == 1)
        #expect((m.value(text, "fed_edge_upstream_last_success_timestamp_seconds") ?? 0) > 1.7e9)

        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        for v in [Float(1), 2] { _ = try c.push(constantTensors(v), datasets: 100) }
        text = try scrape()
        #expect(m.value(text, "fed_edge_pending_updates") == 2 && m.value(text, "fed_edge_outbox_updates") == 0)

        try uplink.sync()
        text = try scrape()
        #expect(m.value(text, "fed_edge_pending_updates") == 0 && m.value(text, "fed_edge_outbox_updates") == 0)
        #expect(m.value(text, "fed_edge_upstream_pushed_updates_total") == 2)
        #expect(m.value(text, "fed_edge_upstream_version") == 1)

        link.failing.store(true, ordering: .relaxed)
        _ = try c.push(constantTensors(3), datasets: 100)
        #expect(throws: (any Error).self) { try uplink.sync() }
        #expect(throws: (any Error).self) { try uplink.sync() }
        text = try scrape()
        #expect(m.value(text, "fed_edge_pending_updates") == 0 && m.value(text, "fed_edge_outbox_updates") == 1)
        #expect(m.value(text, "fed_edge_upstream_syncs_total{result=\"failed\"}") == 2)
        #expect(m.value(text, "fed_edge_upstream_failures_in_a_row") == 2)

        link.failing.store(false, ordering: .relaxed)
        try uplink.sync()
        text = try scrape()
        #expect(
            m.value(text, "fed_edge_outbox_updates") == 0 && m.value(text, "fed_edge_upstream_failures_in_a_row") == 0)
        #expect(m.value(text, "fed_edge_upstream_pushed_updates_total") == 3)
        #expect(m.value(text, "fed_edge_upstream_syncs_total{result=\"ok\"}") == 3)
        if FileManager.default.fileExists(atPath: "/usr/bin/promtool") {
            let (status, said) = try runProgram("/usr/bin/promtool", ["check", "metrics"], input: Array(text.utf8))
            #expect(status == 0, "\(String(decoding: said, as: UTF8.self))")
        }
    }

    @Test("A server that is not an edge reports no edge series")
    func noEdgeSeries() throws {
        let s = try RunningServer()
        #expect(!(try MetricsTests().scrape(s.port)).contains("fed_edge_"))
    }
}

/// An upstream whose pushes never answer: a push waits until the time given
/// to `cutOff` (when `honorsCutoff`) or until `release`, then fails as a
/// connection that timed out would. Fetches answer at once (nothing new).
final class HangingLink: UpstreamLink {
    let honorsCutoff: Bool
    private let cutoff = Mutex<DispatchTime?>(nil)
    private let released = DispatchSemaphore(value: 0)
    /// Signalled when a push starts waiting.
    let pushing = DispatchSemaphore(value: 0)
    init(honorsCutoff: Bool) { self.honorsCutoff = honorsCutoff }

    func fetch(held: UInt64) throws -> UpstreamModel? { nil }

    func push(_ weights: [Tensor], samples: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> UInt64 {
        pushing.signal()
        let end = Date().addingTimeInterval(60)
        while Date() < end {
            if released.wait(timeout: .now() + .milliseconds(20)) == .success { break }
            if honorsCutoff, let t = cutoff.withLock({ $0 }), DispatchTime.now() >= t { break }
        }
        throw TestError("the upstream did not answer")
    }

    func cutOff(at deadline: DispatchTime) { cutoff.withLock { $0 = min($0 ?? deadline, deadline) } }
    func release() { released.signal() }
}

extension EdgeServerTests {
    /// An edge whose upstream push hangs: `shutdown(grace: 1 s)` returns
    /// within the grace (and a margin for a busy machine), and the batch stays
    /// in the checkpoint's outbox, pushed once at the next start.
    func hangingPush(honorsCutoff: Bool) async throws {
        let link = HangingLink(honorsCutoff: honorsCutoff)
        let s = try RunningServer { c in c.edge = EdgeConfiguration(link: link, interval: .milliseconds(50)) }
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        for v in [Float(1), 3] {
            guard case .ack = try c.push(constantTensors(v), datasets: 100) else { throw TestError("no ACK") }
        }
        #expect(link.pushing.wait(timeout: .now() + .seconds(20)) == .success, "the uplink never pushed")
        let start = ContinuousClock.now
        try await s.server.shutdownGracefully(grace: .seconds(1))
        let took = ContinuousClock.now - start
        link.release()
        // About 1.5 s on a quiet machine; the link never returns by itself, so a shutdown
        // that waited for it would not end before `release()`. Loose for a loaded machine.
        #expect(took < .seconds(15), "shutdown took \(took) with a grace of 1 s")

        let path = s.dir.appendingPathComponent("model.fedk").path
        let onDisk = try #require(try CheckpointFile.loadState(from: path))
        #expect(onDisk.durable.edgeUpdates == 2, "\(onDisk.durable.edgeUpdates) of 2 acknowledged updates kept")
        // The next start pushes them (the outbox, then what gathered after it), once.
        let root = Self.root()
        let edge = try EdgeTests.edge(path)
        let uplink = EdgeTests.uplink(edge, StoreLink(store: root, clientID: "edge"))
        var pushed = 0
        for _ in 0..<3 { pushed += try uplink.sync().pushedUpdates }
        #expect(pushed == 2)
        #expect(root.snapshot().datasets == 200)
        #expect(root.snapshot().tensors[0].values[0] == 2)  // (100 * 1 + 100 * 3) / 200
    }

    @Test("A shutdown cuts off an upstream push that never answers, and the batch goes at the next start")
    func hangingPushCutOff() async throws { try await hangingPush(honorsCutoff: true) }

    @Test("A shutdown stops waiting for an upstream link that cannot be cut off, and the batch goes at the next start")
    func hangingPushIgnored() async throws { try await hangingPush(honorsCutoff: false) }
}
