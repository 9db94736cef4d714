import FedCodec
import FedTestSupport
import Testing

@testable import FedServer

/// The model a server publishes is finite and within `Limits.maxMagnitude`,
/// whatever finite values clients push, for every strategy and fetch-delta
/// encoding (issue 21, items 1 and 2).
@Suite("Published model bounds")
struct BoundsTests {
    static let shapes = [[300], [7]]  // two tensors, one spanning two quantization blocks
    static let limit = Limits.maxMagnitude

    /// Adversarial finite pushes: the extremes, alternating signs, subnormals, zeros.
    static func adversarial() -> [[Float]] {
        let n = 307
        let big: Float = 3e38
        return [
            (0..<n).map { $0 % 2 == 0 ? big : -big },
            [Float](repeating: big, count: n),
            [Float](repeating: -big, count: n),
            [Float](repeating: .greatestFiniteMagnitude, count: n),
            (0..<n).map { $0 % 2 == 0 ? limit : -limit },
            [Float](repeating: limit, count: n),
            [Float](repeating: limit, count: n),
            [Float](repeating: -limit, count: n),
            [Float](repeating: -limit, count: n),
            (0..<n).map { $0 % 3 == 0 ? Float.leastNonzeroMagnitude : -Float.leastNormalMagnitude },
            [Float](repeating: 0, count: n),
            (0..<n).map { $0 % 2 == 0 ? limit : Float.leastNonzeroMagnitude },
            [Float](repeating: limit * 0.999, count: n),
            [Float](repeating: -limit * 0.999, count: n),
        ]
    }

    static func tensors(_ flat: [Float]) -> [Tensor] {
        [
            try! Tensor(shape: shapes[0], values: Array(flat[0..<300])),
            try! Tensor(shape: shapes[1], values: Array(flat[300..<307])),
        ]
    }

    static let strategies = [
        "running-average", "fedasync", "fedbuff/k=2", "fedavg/k=2", "fedbuff/k=2/opt=adam",
        "fedavg/k=2/opt=momentum:1:0.5", "fedbuff/k=3/combine=median", "fedbuff/k=3/combine=trimmed:0.2",
        "fedbuff/k=4/combine=krum:1", "fedbuff/k=2/clip=adaptive", "fedbuff/k=2/opt=yogi", "fedbuff/k=2/s=poly:0.5",
    ]
    static let encodings: [ValueEncoding?] = [nil, .float16, .int8, .int4, .int2]

    @Test("Adversarial finite pushes never publish a value beyond the bound", arguments: strategies, encodings)
    func adversarialPushes(spec: String, encoding: ValueEncoding?) throws {
        let store = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes)),
            configuration: .init(strategy: try StrategySpec(spec).strategy, deltaEncoding: encoding))
        var accepted = 0
        var refused = 0
        // Every order of bases: the current version, and stale ones (0, then the previous).
        for (round, values) in (Self.adversarial() + Self.adversarial().reversed()).enumerated() {
            let current = store.snapshot().version
            let base = round % 3 == 0 ? 0 : (round % 3 == 1 ? current : max(1, current) - 1)
            for client in ["a", "b", "c"] {
                let result = store.applyBatch(
                    [
                        ModelStore.Update(
                            tensors: Self.tensors(values), datasets: 100, clientID: client, baseVersion: base)
                    ]
                ) { _, _ in }
                switch result[0] {
                case .success: accepted += 1
                case .failure(let r):
                    #expect(r.code == .nonFiniteValue, "\(r)")
                    refused += 1
                }
                let published = store.snapshot()
                #expect(
                    Limits.firstOutOfRange(published.tensors) == nil,
                    "\(spec) \(encoding?.description ?? "fp32"): version \(published.version) holds an out-of-range value"
                )
                // Every retained step decodes to finite values.
                for v in 1...max(1, published.version) {
                    _ = store.retained(version: v)
                }
            }
        }
        #expect(accepted > 0)
        #expect(refused > 0)
    }

    @Test("A server refuses to start from an initial model beyond the bound")
    func initialBeyondBound() {
        #expect(throws: (any Error).self) { _ = try RunningServer(tensors: constantTensors(2e38)) }
        #expect(throws: (any Error).self) { _ = try RunningServer(tensors: constantTensors(.nan)) }
    }

    @Test("fp16 fetch deltas: a step beyond fp16's range is published in parts, never as infinity")
    func float16LargeSteps() throws {
        let store = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes)),
            configuration: .init(deltaEncoding: .float16))
        var last: Float = 0
        for _ in 0..<4 {
            let s = try store.apply(constantTensors(1e6, shapes: Self.shapes), datasets: 10)
            #expect(Limits.firstOutOfRange(s.tensors) == nil)
            #expect(s.tensors[0].values[0] > last)
            last = s.tensors[0].values[0]
        }
        #expect(last == 4 * 65504)
    }

    @Test("A push beyond the bound is refused with non_finite_value and changes nothing")
    func refusedBeyondBound() throws {
        let store = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(1, shapes: Self.shapes)))
        for v: Float in [Self.limit.nextUp, -Self.limit.nextUp, 2e38, .greatestFiniteMagnitude] {
            #expect(
                performing: { try store.apply(constantTensors(v, shapes: Self.shapes), datasets: 10) },
                throws: { ($0 as? RejectedUpdate)?.code == .nonFiniteValue })
        }
        #expect(store.snapshot().version == 0)
        let at = try store.apply(constantTensors(Self.limit, shapes: Self.shapes), datasets: 10)
        #expect(at.version == 1 && at.tensors[0].values[0] == Self.limit)
    }

    @Test("A combination beyond the bound publishes nothing, refuses its last update and discards the buffer")
    func combinationBeyondBound() throws {
        let store = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: Self.shapes)),
            configuration: .init(strategy: try StrategySpec("fedbuff/k=2/s=constant").strategy))
        func push(_ client: String, _ v: Float, base: UInt64) -> Result<Acknowledgement, RejectedUpdate> {
            store.applyBatch([
                ModelStore.Update(
                    tensors: constantTensors(v, shapes: Self.shapes), datasets: 10, clientID: client, baseVersion: base)
            ]) { _, _ in }[0]
        }
        let limit = Self.limit
        // Version 1 at limit/2 (base 0: not named, the current version), version 2 at the limit
        // (deltas of limit/2 from base 1); two more deltas of limit/2 from the stale base 1
        // would publish 1.5 x limit.
        #expect((try? push("a", limit / 2, base: 0).get()) != nil)
        #expect((try? push("b", limit / 2, base: 0).get())?.version == 1)
        #expect((try? push("c", limit, base: 1).get()) != nil)
        #expect((try? push("d", limit, base: 1).get())?.version == 2)
        #expect(store.snapshot().tensors[0].values[0] == limit)
        #expect((try? push("e", limit, base: 1).get())?.version == 2)
        guard case .failure(let r) = push("f", limit, base: 1) else {
            Issue.record("the combination beyond the bound was accepted")
            return
        }
        #expect(r.code == .nonFiniteValue && r.message.contains("discarded"), "\(r)")
        #expect(store.snapshot().version == 2)
        #expect(store.durable().buffer.isEmpty)
        #expect(store.discardedUpdates.load(ordering: .relaxed) == 1)
        // The server goes on: honest updates are combined as before.
        #expect((try? push("g", 1, base: 2).get()) != nil)
        let next = try #require(try? push("h", 1, base: 2).get())
        #expect(next.version == 3)
        #expect(Limits.firstOutOfRange(store.snapshot().tensors) == nil)
    }
}
