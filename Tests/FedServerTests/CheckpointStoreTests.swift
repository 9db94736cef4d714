import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

/// The checkpoint store seam (issue 22, item 4): the in-memory store keeps
/// what was saved, the file store writes the same bytes as before, and a
/// server restarts from whatever store it is given.
@Suite("Checkpoint stores")
struct CheckpointStoreTests {
    static func state() -> (ModelSnapshot, ModelStore.Durable) {
        var ledger = PushLedger()
        ledger.insert(PushRecord(clientID: "a", pushID: 7, version: 3, datasets: 30, acceptedAt: 1_700_000_000_000))
        ledger.insert(PushRecord(clientID: "b", pushID: 9, version: 4, datasets: 40, acceptedAt: 1_700_000_000_500))
        let durable = ModelStore.Durable(
            recentPushes: ledger,
            buffer: [
                BufferedUpdate(
                    clientID: "c", delta: constantTensors(0.5), weight: 0.25, samples: 12, staleness: 1, norm: 2)
            ],
            tensors: ["m": constantTensors(0.125)], scalars: ["t": 3])
        return (ModelSnapshot(version: 4, datasets: 40, tensors: constantTensors(1.5)), durable)
    }

    @Test("The in-memory store returns nil before a save, then exactly what was saved, sections in file order")
    func inMemoryRoundTrip() throws {
        let store = InMemoryCheckpointStore()
        #expect(store.load() == nil)
        #expect(try store.loadState() == nil)
        let (snapshot, durable) = Self.state()
        try store.save(snapshot, durable: durable)
        let contents = try #require(store.load())
        #expect(contents.sections.map(\.tag) == [1, 0x8003, 2])
        let (loaded, loadedDurable) = try #require(try store.loadState())
        #expect(loaded.version == 4 && loaded.datasets == 40 && loaded.tensors == snapshot.tensors)
        #expect(loadedDurable == durable)
        // A later save replaces the whole contents.
        try store.save(ModelSnapshot(version: 5, datasets: 41, tensors: constantTensors(2)))
        #expect(store.load()?.sections == [])
        #expect(try store.loadState()?.durable == ModelStore.Durable())
        #expect(store.saves == 2)
    }

    @Test("A stored checkpoint with a required section this build does not know is an error naming the store")
    func unknownRequiredSection() throws {
        let (snapshot, durable) = Self.state()
        var contents = Checkpoint(snapshot, durable: durable).contents
        contents.sections.append(CheckpointSection(tag: 0x8042, bytes: [1, 2, 3]))  // optional: skipped
        #expect(try InMemoryCheckpointStore(contents).loadState()?.durable == durable)
        contents.sections.append(CheckpointSection(tag: 42, bytes: []))
        let error = #expect(throws: FileError.self) { try InMemoryCheckpointStore(contents).loadState() }
        #expect(error?.description.contains("an in-memory checkpoint store is not a usable checkpoint") == true)
        #expect(error?.description.contains("section 42") == true)
    }

    @Test("The file store writes the bytes Checkpoint.encode gives, and reads them back")
    func fileStoreBytes() throws {
        let dir = try temporaryDirectory("store")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.fedk").path
        let store = FileCheckpointStore(path: path)
        #expect(try store.load() == nil)
        let (snapshot, durable) = Self.state()
        try store.save(snapshot, durable: durable)
        let checkpoint = Checkpoint(snapshot, durable: durable)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == checkpoint.encode())
        #expect(try store.load() == checkpoint.contents)
        #expect(try CheckpointFile.read(from: path) == checkpoint)
        // No stray temporary file is left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["m.fedk"])
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: FileError.self) { try store.load() }
        #expect(error?.description.contains("\(path) is not a usable checkpoint") == true)
    }

    @Test("A server over an in-memory store writes no file, and a new server resumes from that store")
    func serverRestartsFromMemory() throws {
        let store = InMemoryCheckpointStore()
        let push = Push(clientID: "r", datasets: 10, baseVersion: 0, tensors: constantTensors(3), pushID: 77)
        do {
            let s = try RunningServer { $0.storage.checkpointStore = store }
            let c = try TestClient(port: s.port)
            _ = try c.send(.hello(Hello(minVersion: 1, maxVersion: 2, clientID: "r")))
            _ = try c.receive()
            try c.send(MessageCodec.encode(.push(push), requestID: 1, version: 2))
            guard case .ack(1, 10)? = try c.receive()?.1 else { throw TestError("no ACK") }
            #expect(store.load()?.version == 1)
            try s.server.shutdown()
            #expect(!FileManager.default.fileExists(atPath: s.checkpoint))
        }
        let again = try RunningServer(tensors: constantTensors(9)) { $0.storage.checkpointStore = store }
        #expect(again.server.store.snapshot().version == 1)
        #expect(again.server.store.snapshot().tensors == constantTensors(3))
        // The idempotency keys came back with the model: the repeated push is not applied again.
        let c = try TestClient(port: again.port)
        _ = try c.send(.hello(Hello(minVersion: 1, maxVersion: 2, clientID: "r")))
        _ = try c.receive()
        try c.send(MessageCodec.encode(.push(push), requestID: 2, version: 2))
        guard case .ack(1, 10)? = try c.receive()?.1 else { throw TestError("repeat after restart not answered") }
        #expect(again.server.store.snapshot().version == 1)
        var next = push
        next.pushID = 78
        try c.send(MessageCodec.encode(.push(next), requestID: 3, version: 2))
        guard case .ack(2, _)? = try c.receive()?.1 else { throw TestError("no ACK for a new push") }
        #expect(store.load()?.version == 2)
    }
}
