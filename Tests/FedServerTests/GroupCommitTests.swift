import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Synchronization
import Testing

@testable import FedServer

@Suite("Group commit")
struct GroupCommitTests {
    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("32 concurrent updates are all durable when acknowledged, sharing writes")
    func concurrentDurable() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("model.fedk").path
        let store = ModelStore(initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0)))
        let committer = GroupCommitter(store: store, path: path)
        let versions = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for i in 0..<32 {
                group.addTask {
                    let s = try await committer.submit(constantTensors(Float(i)), datasets: 100)
                    // Acknowledged: the file on disk already holds this version or a later one.
                    let onDisk = try #require(try CheckpointFile.load(from: path))
                    #expect(onDisk.version >= s.version)
                    return s.version
                }
            }
            var all: [UInt64] = []
            for try await v in group { all.append(v) }
            return all
        }
        #expect(Set(versions) == Set(1...32))
        let final = try #require(try CheckpointFile.load(from: path))
        #expect(final.version == 32 && final.datasets == 3200)
        #expect(committer.writes >= 1 && committer.writes <= 32)
        print("32 concurrent durable updates took \(committer.writes) checkpoint writes")
    }

    @Test("waitUntilIdle returns once every submitted update has been answered, or false at its deadline")
    func waitUntilIdle() throws {
        let slow = SlowCheckpointStore()
        slow.delay = 300...300
        let store = ModelStore(initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0)))
        let committer = GroupCommitter(store: store, checkpoints: slow)
        #expect(committer.waitUntilIdle(until: .now()))
        let answered = Atomic<Int>(0)
        for i in 0..<3 {
            committer.submit(ModelStore.Update(tensors: constantTensors(Float(i)), datasets: 1)) { _ in
                answered.add(1, ordering: .relaxed)
            }
        }
        // A save takes 0.3 s: not idle 50 ms from now.
        #expect(!committer.waitUntilIdle(until: .now() + .milliseconds(50)))
        #expect(committer.waitUntilIdle(until: .now() + .seconds(10)))
        #expect(answered.load(ordering: .relaxed) == 3 && committer.isIdle)
        #expect(store.snapshot().version == 3)
    }

    @Test("A failed write acknowledges nothing and publishes nothing")
    func failedWrite() async throws {
        let store = ModelStore(initial: ModelSnapshot(version: 5, datasets: 10, tensors: constantTensors(1)))
        let committer = GroupCommitter(store: store, path: "/nonexistent-dir-\(UUID().uuidString)/model.fedk")
        await #expect(
            performing: { try await committer.submit(constantTensors(2), datasets: 10) },
            throws: {
                ($0 as? RejectedUpdate)?.code == .internalError
            })
        #expect(store.snapshot().version == 5 && store.snapshot().tensors == constantTensors(1))
    }

    @Test("An invalid update in a batch is rejected alone")
    func invalidInBatch() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = ModelStore(initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0)))
        let committer = GroupCommitter(store: store, path: dir.appendingPathComponent("m").path)
        var nan = constantTensors(1)
        nan[0].values[0] = .nan
        let nanUpdate = nan
        await #expect(
            performing: { try await committer.submit(nanUpdate, datasets: 10) },
            throws: {
                ($0 as? RejectedUpdate)?.code == .nonFiniteValue
            })
        let ok = try await committer.submit(constantTensors(3), datasets: 10)
        #expect(ok.version == 1 && store.snapshot().tensors == constantTensors(3))
    }
}
