import Testing

@testable import FedModel

@Suite("AlignedFloats")
struct AlignedFloatsTests {
    @Test("The first element is 64-byte aligned, for any count", arguments: [0, 1, 15, 16, 17, 208, 163_072])
    func aligned(count: Int) {
        let x = AlignedFloats(repeating: 1, count: count)
        #expect(x.count == count)
        x.withUnsafeBufferPointer { #expect(Int(bitPattern: $0.baseAddress) % 64 == 0) }
        #expect(x.allSatisfy { $0 == 1 })
    }

    @Test("Copies are values: changing one (by subscript or in place) leaves the other as it was")
    func copyOnWrite() {
        let original = AlignedFloats([1, 2, 3, 4])
        var a = original
        a[0] = 10
        var b = original
        b.withUnsafeMutableBufferPointer { $0[3] = 40 }
        #expect(Array(original) == [1, 2, 3, 4])
        #expect(Array(a) == [10, 2, 3, 4])
        #expect(Array(b) == [1, 2, 3, 40])
        #expect(a != original && AlignedFloats([1, 2, 3, 4]) == original)
    }

    @Test("setAll changes every element, and a copy that shared them keeps its own")
    func setAllKeepsCopies() {
        var a = AlignedFloats([1, 2, 3, 4])
        let copy = a
        a.setAll(to: 0)
        #expect(Array(a) == [0, 0, 0, 0] && Array(copy) == [1, 2, 3, 4])
        a.setAll(to: 5)  // not shared now: in place
        #expect(Array(a) == [5, 5, 5, 5] && Array(copy) == [1, 2, 3, 4])
    }

    @Test("A model read from a trainer keeps its weights while the trainer goes on training")
    func trainerModelIsASnapshot() {
        let data = Dataset(
            images: (0..<64 * 20).map { Float($0 % 7) / 7 }, labels: (0..<64).map { UInt8($0 % 3) }, features: 20)
        let trainer = Trainer(model: MLP(sizes: [20, 16, 3], seed: 1), maxBatch: 32)
        var rng = SeededGenerator(seed: 2)
        trainer.trainEpoch(data, batchSize: 32, rng: &rng)
        let snapshot = trainer.model
        let before = snapshot.tensors().map(\.values)
        trainer.trainEpoch(data, batchSize: 32, rng: &rng)
        #expect(snapshot.tensors().map(\.values) == before)
        #expect(trainer.model.tensors().map(\.values) != before)
    }
}
