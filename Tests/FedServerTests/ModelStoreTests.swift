import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

@Suite("ModelStore")
struct ModelStoreTests {
    @Test("Federated averaging is the original's (a*Ws + b*Wc)/(a+b)")
    func averaging() throws {
        let store = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(9, shapes: [[2]])))
        // a = 0: the update replaces the model.
        let s1 = try store.apply(constantTensors(1, shapes: [[2]]), datasets: 5000)
        #expect(s1.version == 1 && s1.datasets == 5000 && s1.tensors[0].values == [1, 1])
        // (5000*1 + 15000*5) / 20000 = 4
        let s2 = try store.apply(constantTensors(5, shapes: [[2]]), datasets: 15000)
        #expect(s2.version == 2 && s2.datasets == 20000 && s2.tensors[0].values == [4, 4])
    }

    @Test("Invalid updates are rejected with their code and change nothing")
    func rejections() throws {
        let store = ModelStore(initial: ModelSnapshot(version: 3, datasets: 100, tensors: constantTensors(2)))
        var nan = constantTensors(1)
        nan[4].values[7] = .nan
        var inf = constantTensors(1)
        inf[0].values[0] = -.infinity
        var shapes = constantTensors(1)
        shapes.removeLast()
        let cases: [([Tensor], UInt64, ErrorCode)] = [
            (nan, 10, .nonFiniteValue), (inf, 10, .nonFiniteValue), (shapes, 10, .shapeMismatch),
            (constantTensors(1, shapes: [[784, 10]]), 10, .shapeMismatch), (constantTensors(1), 0, .invalidDatasets),
            (constantTensors(1), 60_001, .invalidDatasets), (constantTensors(1), 1_000_000_000, .invalidDatasets),
        ]
        for (tensors, datasets, code) in cases {
            #expect(
                performing: { try store.apply(tensors, datasets: datasets) },
                throws: { ($0 as? RejectedUpdate)?.code == code })
        }
        let after = store.snapshot()
        #expect(after.version == 3 && after.datasets == 100 && after.tensors == constantTensors(2))
    }

    @Test("Readers racing writers always see all tensors of one version")
    func noMixedReads() async throws {
        let store = ModelStore(initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0)))
        // Every update is a constant, so every version's tensors hold one
        // value everywhere; a mixed read would show two values.
        try await withThrowingTaskGroup(of: Int.self) { group in
            for w in 0..<2 {
                group.addTask {
                    for i in 0..<60 { try store.apply(constantTensors(Float(w * 1000 + i)), datasets: 100) }
                    return 0
                }
            }
            for _ in 0..<4 {
                group.addTask {
                    var reads = 0
                    var lastVersion: UInt64 = 0
                    while lastVersion < 120 {
                        let s = store.snapshot()
                        #expect(s.version >= lastVersion)
                        lastVersion = s.version
                        let first = s.tensors[0].values[0]
                        #expect(
                            s.tensors.allSatisfy { t in t.values.allSatisfy { $0 == first } },
                            "mixed model at \(s.version)")
                        #expect(s.datasets == s.version * 100)
                        reads += 1
                    }
                    return reads
                }
            }
            var total = 0
            for try await r in group { total += r }
            #expect(total > 0)
        }
        #expect(store.snapshot().version == 120)
    }

    @Test("Each encoding is made once per version and shared; its frame decodes")
    func encodingsCached() async throws {
        var rng = SystemRandomNumberGenerator()
        let tensors = Tensor.mnistMLPShapes.map { shape in
            try! Tensor(
                shape: shape,
                values: (0..<Tensor.elementCount(shape)!).map { _ in Float.random(in: -1...1, using: &rng) })
        }
        let snapshot = ModelSnapshot(version: 7, datasets: 5000, tensors: tensors)
        let payloads = await withTaskGroup(of: [UInt8].self) { group in
            for _ in 0..<8 { group.addTask { snapshot.modelPayload(.shuffleZlib).bytes } }
            var all: [[UInt8]] = []
            for await p in group { all.append(p) }
            return all
        }
        #expect(Set(payloads).count == 1)
        #expect(snapshot.cachedEncodingCount == 1)
        for compression in Compression.allCases {
            let (header, payload) = snapshot.modelFrameHeader(requestID: 42, compression: compression)
            var decoder = FrameDecoder()
            decoder.append(header + payload)
            let frame = try #require(try decoder.next())
            #expect(frame.header.requestID == 42)
            guard case .model(let m) = try MessageCodec.decode(frame) else {
                Issue.record("not a MODEL")
                return
            }
            #expect(m.version == 7 && m.datasets == 5000 && m.tensors == tensors)
        }
        #expect(snapshot.cachedEncodingCount == 3)
    }

    @Test("A new version's encodings that readers used of the last one are made before it is published")
    func encodingsPrepared() throws {
        let store = ModelStore(initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0)))
        try store.apply(constantTensors(1), datasets: 10)
        #expect(store.snapshot().cachedEncodingCount == 0)  // no reader asked for version 0
        _ = store.snapshot().modelPayload(.zlib)
        _ = store.snapshot().legacyJSON(serverID: "s")
        try store.apply(constantTensors(2), datasets: 10)
        let v2 = store.snapshot()
        #expect(v2.version == 2 && v2.cachedEncodingCount == 2)
        // Made by the committer, asked for by no reader: the next version is not prepared.
        try store.apply(constantTensors(3), datasets: 10)
        #expect(store.snapshot().cachedEncodingCount == 0)
        let fresh = MessageCodec.payload(
            .model(Model(version: 2, datasets: v2.datasets, tensors: v2.tensors, compression: .zlib)), level: 1)
        #expect(v2.modelPayload(.zlib).bytes == fresh)
        #expect(v2.cachedEncodingCount == 2)
    }

    @Test("The legacy JSON has the original's shape and Python's number format")
    func legacyJSON() throws {
        let tensors = [
            try Tensor(shape: [2, 2], values: [0.1, -2, 0, 1e-8]), try Tensor(shape: [2], values: [3.5, 7]),
        ]
        let bytes = LegacyJSON.modelAnswer(serverID: "srv\"1", datasets: 10, tensors: tensors)
        let text = String(decoding: bytes, as: UTF8.self)
        // Python: json.dumps(np.float32(0.1).item()) == "0.10000000149011612"
        #expect(text.contains("[[0.10000000149011612, -2.0], [0.0, 9.99999993922529e-09]]"))
        let root = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(root["id"] as? String == "srv\"1")
        #expect(root["datasets"] as? Int == 10)
        #expect((root["weights"] as? [Any])?.count == 2)
    }

    @Test("Checkpoint files round-trip, and a corrupt one is an error, not a fresh start")
    func checkpointFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ck-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("model.fedk").path
        #expect(try CheckpointFile.load(from: path) == nil)
        let snapshot = ModelSnapshot(version: 4, datasets: 20000, tensors: constantTensors(0.25))
        try CheckpointFile.save(snapshot, to: path)
        try CheckpointFile.save(snapshot, to: path)  // replacing works too
        let loaded = try #require(try CheckpointFile.load(from: path))
        #expect(loaded.version == 4 && loaded.datasets == 20000 && loaded.tensors == snapshot.tensors)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.fedk"])  // no temporary left
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(throws: FileError.self) { try CheckpointFile.load(from: path) }
        try Data("pickle".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: FileError.self) { try CheckpointFile.load(from: path) }
    }
}
