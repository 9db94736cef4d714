import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Synchronization
import Testing

@testable import FedServer

/// Idempotency keys that other clients cannot flush (issue 21, item 4; SPEC 4.3).
@Suite("Idempotency keys")
struct PushLedgerTests {
    /// A clock the test moves by hand (milliseconds since 1970).
    final class TestClock: Sendable {
        let ms = Atomic<UInt64>(1_800_000_000_000)
        func advance(seconds: UInt64) { ms.add(seconds * 1000, ordering: .relaxed) }
        var read: @Sendable () -> UInt64 { { [self] in self.ms.load(ordering: .relaxed) } }
    }

    static let shapes = [[2]]

    func update(_ client: String, _ pushID: UInt64, _ v: Float = 1) -> ModelStore.Update {
        ModelStore.Update(
            tensors: constantTensors(v, shapes: Self.shapes), datasets: 10,
            key: PushKey(clientID: client, pushID: pushID), clientID: client)
    }

    @Test("A retry 60 s later is applied once after 1,000 other ids sent 10,000 keyed pushes")
    func retryAfterFlood() throws {
        let clock = TestClock()
        let store = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes)),
            configuration: .init(clock: clock.read))
        let first = try store.applyBatch([update("alice", 42)]) { _, _ in }[0].get()
        #expect(!first.replayed)
        for batch in 0..<100 {
            let updates = (0..<100).map { i in update("mallory-\((batch * 100 + i) % 1000)", UInt64(batch * 100 + i)) }
            for r in store.applyBatch(updates, commit: { _, _ in }) { _ = try r.get() }
            clock.advance(seconds: batch % 2 == 0 ? 1 : 0)  // 50 s over the flood
        }
        clock.advance(seconds: 10)
        let version = store.snapshot().version
        let retry = try store.applyBatch([update("alice", 42)]) { _, _ in }[0].get()
        #expect(retry.replayed && retry.version == first.version)
        #expect(store.snapshot().version == version)
        #expect(store.durable().recentPushes.count == 10_001)
        // After the retention the key is forgotten, and so are the flood's.
        clock.advance(seconds: PushLedger.retentionMilliseconds / 1000 + 1)
        let late = try store.applyBatch([update("alice", 42)]) { _, _ in }[0].get()
        #expect(!late.replayed)
        #expect(store.durable().recentPushes.count == 1)
    }

    @Test("A full ledger refuses new keyed pushes (overloaded, retryable) and never forgets a young key")
    func full() throws {
        let clock = TestClock()
        let store = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes)),
            configuration: .init(clock: clock.read))
        _ = try store.applyBatch([update("alice", 1)]) { _, _ in }[0].get()
        let flood = (0..<PushLedger.capacity).map { update("m\($0 % 5000)", UInt64($0)) }
        let results = store.applyBatch(flood) { _, _ in }
        #expect(results.dropLast().allSatisfy { (try? $0.get()) != nil })
        guard case .failure(let r)? = results.last else {
            Issue.record("the push past the capacity was accepted")
            return
        }
        #expect(r.code == .overloaded && r.code.isRetryableByDefault)
        // Unkeyed pushes still go through; alice's key is still there.
        #expect(
            (try? store.applyBatch([ModelStore.Update(tensors: constantTensors(1, shapes: Self.shapes), datasets: 1)]) {
                _, _ in
            }[0].get()) != nil)
        #expect(try store.applyBatch([update("alice", 1)]) { _, _ in }[0].get().replayed)
        clock.advance(seconds: 121)
        #expect((try? store.applyBatch([update("zed", 1)]) { _, _ in }[0].get()) != nil)
    }

    @Test("After the wall clock steps back an hour, keys are kept another 120 s, not an hour")
    func clockStepsBack() {
        var ledger = PushLedger()
        let t: UInt64 = 1_800_000_000_000
        for i in 0..<100 {
            ledger.insert(PushRecord(clientID: "c", pushID: UInt64(i), version: 1, datasets: 1, acceptedAt: t))
        }
        let back = t - 3_600_000
        ledger.expire(now: back)
        #expect(ledger.count == 100)  // a key's age is unknown: kept
        ledger.insert(PushRecord(clientID: "c", pushID: 1000, version: 2, datasets: 1, acceptedAt: back + 1000))
        ledger.expire(now: back + 60_000)
        #expect(ledger.count == 101)
        ledger.expire(now: back + 121_001)
        #expect(ledger.count == 0)
        #expect(ledger.record(PushKey(clientID: "c", pushID: 5)) == nil)
    }

    @Test("Keys and their times survive a checkpoint written and read back")
    func checkpointed() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.fedk").path
        let clock = TestClock()
        let store = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes)),
            configuration: .init(clock: clock.read))
        _ = try store.applyBatch([update("alice", 5), update("bob", 6)]) { snapshot, durable in
            try CheckpointFile.save(snapshot, durable: durable, to: path)
        }[0].get()
        let (snapshot, durable) = try #require(try CheckpointFile.loadState(from: path))
        #expect(durable.recentPushes == store.durable().recentPushes)
        #expect(durable.recentPushes.all.allSatisfy { $0.acceptedAt == clock.ms.load(ordering: .relaxed) })
        let restarted = ModelStore(initial: snapshot, durable: durable, configuration: .init(clock: clock.read))
        #expect(try restarted.applyBatch([update("bob", 6)]) { _, _ in }[0].get().replayed)
    }
}
