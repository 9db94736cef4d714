import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Synchronization
import Testing

@testable import FedServer

/// Each strategy's formula against values computed by hand.
@Suite("Strategies")
struct StrategyTests {
    func t(_ values: [Float]) -> [Tensor] { [try! Tensor(shape: [values.count], values: values)] }

    func update(_ w: [Float], base: [Float]?, samples: UInt64 = 1, claimed: UInt64? = nil, staleness: UInt64 = 0)
        -> ClientUpdate
    {
        ClientUpdate(
            clientID: "c", weights: t(w), claimedSamples: claimed ?? samples, samples: samples, baseVersion: 1,
            staleness: staleness, base: base.map { t($0) })
    }

    @Test("running-average: (a Ws + b Wc)/(a + b) with the claimed count; a = 0 takes the update")
    func runningAverage() {
        var state = FederationState(weights: t([1, -2]), samples: 2)
        #expect(RunningAverage().accept(update([4, 4], base: nil, claimed: 1), state: &state))
        #expect(state.weights == t([2, 0]) && state.samples == 3)
        var fresh = FederationState(weights: t([9, 9]), samples: 0)
        _ = RunningAverage().accept(update([0.5, 0.25], base: nil, claimed: 7), state: &fresh)
        #expect(fresh.weights == t([0.5, 0.25]) && fresh.samples == 7)
    }

    @Test(
        "fedasync: W <- (1 - a) W + a Wc with a = alpha s(tau)",
        arguments: [
            (StalenessWeight.polynomial(0.5), UInt64(3), Float(2.5)),  // a = 0.5 * 4^-0.5 = 0.25
            (.constant, 3, 5),  // a = 0.5
            (.hinge(a: 1, b: 2), 4, 10.0 / 6),  // a = 0.5 / (1 * 2 + 1)
            (.hinge(a: 1, b: 2), 2, 5),
        ])
    func fedAsync(_ s: StalenessWeight, _ tau: UInt64, _ expected: Float) {
        var state = FederationState(weights: t([0]), samples: 10)
        #expect(FedAsync(alpha: 0.5, staleness: s).accept(update([10], base: nil, staleness: tau), state: &state))
        #expect(abs(state.weights[0].values[0] - expected) < 1e-6, "\(state.weights)")
        #expect(state.samples == 11)
    }

    @Test("fedbuff: buffers K deltas, publishes their sample-weighted mean with SGD at the K-th")
    func fedBuffMean() {
        let strategy = FedBuff(bufferSize: 2, staleness: .constant, optimizer: .sgd(learningRate: 1))
        var state = FederationState(weights: t([10]), samples: 100)
        #expect(!strategy.accept(update([11], base: [10], samples: 1), state: &state))
        #expect(state.weights == t([10]) && state.buffer.count == 1)
        // The second was trained from an older base: its delta is 14 - 10 = 4.
        #expect(strategy.accept(update([14], base: [10], samples: 3), state: &state))
        #expect(state.weights == t([13.25]))  // 10 + (1*1 + 4*3)/4
        #expect(state.buffer.isEmpty && state.samples == 104)
    }

    @Test("fedbuff scales each delta by s(staleness) over K: here 1/sqrt(1 + tau)")
    func fedBuffStaleness() {
        let strategy = FedBuff(bufferSize: 2, staleness: .polynomial(0.5), weighBySamples: false)
        var state = FederationState(weights: t([0]), samples: 0)
        _ = strategy.accept(update([3], base: [0], staleness: 0), state: &state)
        _ = strategy.accept(update([6], base: [0], staleness: 3), state: &state)
        // s = 1 and 0.5: (3 * 1 + 6 * 0.5) / 2 = 3
        #expect(abs(state.weights[0].values[0] - 3) < 1e-6)
    }

    @Test(
        "Robust combination: coordinate-wise median, trimmed mean, Multi-Krum",
        arguments: [
            (FedBuff.Combiner.median, [Float(1), 100, 2], Float(2)),
            (.median, [1, 100, 2, 4], 3),
            (.trimmedMean(beta: 0.2), [1, 2, 3, 4, 100], 3),
            (.trimmedMean(beta: 0.2), [1, 2, -50, 4, 100], 7.0 / 3),
            // f = 0, 2 neighbours: scores 0 -> 1+9, 1 -> 1+4, 3 -> 4+9, 100 -> 97^2+99^2.
            (.krum(f: 0, keep: 1), [0, 1, 3, 100], 1),
            (.krum(f: 0, keep: 2), [0, 1, 3, 100], 0.5),
            // f = 1, 2 neighbours: 2 -> 2, 100 -> 19013, 1 -> 5, -80 -> 13285, 3 -> 5; keep 2, 1, 3.
            (.krum(f: 1, keep: 3), [2, 100, 1, -80, 3], 2),
        ])
    func robust(_ combiner: FedBuff.Combiner, _ deltas: [Float], _ expected: Float) {
        let strategy = FedBuff(bufferSize: deltas.count, combiner: combiner)
        var state = FederationState(weights: t([0]), samples: 0)
        var published = false
        for d in deltas { published = strategy.accept(update([d], base: [0]), state: &state) }
        #expect(published)
        #expect(abs(state.weights[0].values[0] - expected) < 1e-5, "\(state.weights)")
    }

    @Test("Clipping scales a delta to the bound; adaptive clipping moves towards the quantile")
    func clipping() {
        let fixed = FedBuff(bufferSize: 1, clipping: .fixed(1))
        var state = FederationState(weights: t([0, 0]), samples: 0)
        _ = fixed.accept(update([3, 4], base: [0, 0]), state: &state)
        #expect(abs(state.weights[0].values[0] - 0.6) < 1e-6 && abs(state.weights[0].values[1] - 0.8) < 1e-6)

        let adaptive = FedBuff(bufferSize: 2, clipping: .adaptive(initial: 1, quantile: 0.5, rate: 0.2))
        var s2 = FederationState(weights: t([0]), samples: 0)
        _ = adaptive.accept(update([0.5], base: [0]), state: &s2)
        _ = adaptive.accept(update([0.6], base: [0]), state: &s2)
        // Both norms under C: b = 1, C <- exp(-0.2 * 0.5).
        #expect(abs(s2.scalars["clip"]! - exp(-0.1)) < 1e-12)
        _ = adaptive.accept(update([0.1], base: [0]), state: &s2)
        _ = adaptive.accept(update([5], base: [0]), state: &s2)
        // One of two under C: b = 0.5, C unchanged.
        #expect(abs(s2.scalars["clip"]! - exp(-0.1)) < 1e-12)
    }

    @Test(
        "Server optimizers' first step with d = 1 (and momentum's second)",
        arguments: [
            (ServerOptimizer.adamDefault, Float(0.1 * 0.1 / (0.1 + 0.001))),
            (.yogiDefault, Float(0.01 * 0.1 / (0.1 + 0.001))),
            (.adagradDefault, Float(0.1 * 1 / (1 + 0.001))),
            (.sgd(learningRate: 0.5), 0.5),
            (.momentum(learningRate: 1, beta: 0.9), 1),
        ])
    func optimizers(_ opt: ServerOptimizer, _ expected: Float) {
        let strategy = FedBuff(bufferSize: 1, optimizer: opt)
        var state = FederationState(weights: t([0]), samples: 0)
        _ = strategy.accept(update([1], base: [0]), state: &state)
        #expect(abs(state.weights[0].values[0] - expected) < 1e-6, "\(opt): \(state.weights)")
        if case .momentum = opt {
            let w = state.weights[0].values[0]
            _ = strategy.accept(update([w + 1], base: [w]), state: &state)
            #expect(abs(state.weights[0].values[0] - (1 + 1.9)) < 1e-5)
        }
    }

    @Test("DP noise: deterministic for a seed, spread z C / K")
    func dpNoise() {
        let strategy = FedBuff(bufferSize: 4, clipping: .fixed(1), noiseMultiplier: 2, seed: 7)
        func run() -> [Float] {
            var state = FederationState(weights: [Tensor(zeros: [20_000])], samples: 0)
            let zero = Tensor(zeros: [20_000])
            for _ in 0..<4 {
                _ = strategy.accept(
                    ClientUpdate(
                        clientID: "c", weights: [zero], claimedSamples: 1, samples: 1, baseVersion: 1, staleness: 0,
                        base: [zero]), state: &state)
            }
            return state.weights[0].values
        }
        let a = run()
        #expect(a == run())
        let sd = (a.reduce(0) { $0 + Double($1) * Double($1) } / Double(a.count)).squareRoot()
        #expect(abs(sd - 0.5) < 0.02, "sd \(sd), expected 2 * 1 / 4")
    }

    @Test("Strategy texts parse, and bad ones say why")
    func specs() throws {
        #expect(try StrategySpec("running-average").strategy is RunningAverage)
        let buff = try #require(
            try StrategySpec("fedbuff/k=5/combine=trimmed:0.2/clip=adaptive/opt=adam").strategy as? FedBuff)
        #expect(buff.bufferSize == 5 && buff.combiner == .trimmedMean(beta: 0.2) && buff.optimizer == .adamDefault)
        let krum = try #require(try StrategySpec("fedavg/combine=krum:2:6").strategy as? FedBuff)
        #expect(krum.combiner == .krum(f: 2, keep: 6))
        #expect((try StrategySpec("fedbuff/combine=krum:1").strategy as? FedBuff)?.combiner == .krum(f: 1, keep: 1))
        for bad in [
            "fedbuff/k=0", "fedbuff/noise=1", "fedasync/s=poly", "nope", "fedbuff/x=1", "fedbuff/opt=sgd:a",
            "fedbuff/combine=krum", "fedbuff/combine=krum:x", "fedbuff/combine=krum:1:0", "fedbuff/combine=krum:1:2:3",
        ] {
            #expect(throws: StrategySpecError.self, "\(bad)") { try StrategySpec(bad) }
        }
    }
}

@Suite("Strategies in the store")
struct StrategyStoreTests {
    func store(_ strategy: any FederationStrategy, maxStaleness: Int = 2) -> ModelStore {
        ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: [[2]])),
            configuration: .init(strategy: strategy, maxStaleness: maxStaleness))
    }

    func push(_ s: ModelStore, _ value: Float, datasets: UInt64 = 10, base: UInt64 = 0, strict: Bool = false)
        -> Result<Acknowledgement, RejectedUpdate>
    {
        s.applyBatch([
            .init(
                tensors: constantTensors(value, shapes: [[2]]), datasets: datasets, clientID: "c", baseVersion: base,
                strictBase: strict)
        ]) { _, _ in }[0]
    }

    @Test("A base outside the window: stale_base for version-2 peers, the oldest retained version for others")
    func stalenessWindow() throws {
        let s = store(FedAsync(alpha: 1, staleness: .constant))
        for v in 1...4 { _ = push(s, Float(v), base: UInt64(v - 1)) }
        #expect(s.snapshot().version == 4)
        guard case .failure(let e) = push(s, 9, base: 1, strict: true) else { throw TestError("accepted") }
        #expect(e.code == .staleBase && !e.code.isRetryableByDefault)
        #expect(s.snapshot().version == 4)
        // Version 2 and 3 were dropped from the window of 2; the oldest kept is 2.
        let buff = store(FedBuff(bufferSize: 1, staleness: .constant, optimizer: .sgd(learningRate: 1)))
        for v in 1...4 { _ = push(buff, Float(v), base: UInt64(v - 1)) }
        let before = buff.snapshot().tensors[0].values[0]
        _ = push(buff, 100, base: 1)  // not strict: delta against version 2's weights
        let retainedBase = Float(2)
        #expect(buff.snapshot().tensors[0].values[0] == before + (100 - retainedBase))
    }

    @Test("A running total is counted as the samples since its base; the count is capped")
    func sampleCounts() throws {
        final class Seen: Sendable {
            let values = Mutex<[UInt64]>([])
        }
        let seen = Seen()
        struct Recorder: FederationStrategy {
            let seen: Seen
            var name: String { "recorder" }
            func accept(_ update: ClientUpdate, state: inout FederationState) -> Bool {
                seen.values.withLock { $0.append(update.samples) }
                state.samples += update.samples
                return true
            }
        }
        let s = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: constantTensors(0, shapes: [[2]])),
            configuration: .init(strategy: Recorder(seen: seen), maxUpdateSamples: 5000))
        _ = push(s, 1, datasets: 1000)  // first push: 1000
        _ = push(s, 1, datasets: 1600, base: 1)  // a running total: 1600 - 1000 at version 1
        _ = push(s, 1, datasets: 50_000, base: 2)  // capped
        _ = push(s, 1, datasets: 300, base: 3)  // below the count at its base: its own count
        #expect(seen.values.withLock { $0 } == [1000, 600, 5000, 300])
    }

    @Test("A buffered update is in the checkpoint and comes back after a restart")
    func bufferDurable() throws {
        let dir = try temporaryDirectory("buf")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.fedk").path
        let strategy = FedBuff(bufferSize: 2, staleness: .constant, optimizer: .adamDefault)
        let s = store(strategy)
        let first = s.applyBatch([.init(tensors: constantTensors(1, shapes: [[2]]), datasets: 10, clientID: "a")]) {
            try CheckpointFile.save($0, durable: $1, to: path)
        }
        #expect((try? first[0].get())?.version == 0)  // buffered: the model is still version 0
        let (snapshot, durable) = try #require(try CheckpointFile.loadState(from: path))
        #expect(snapshot.version == 0 && durable.buffer.count == 1 && durable.buffer[0].samples == 10)
        let resumed = ModelStore(initial: snapshot, durable: durable, configuration: .init(strategy: strategy))
        _ = resumed.applyBatch([.init(tensors: constantTensors(3, shapes: [[2]]), datasets: 10, clientID: "b")]) {
            try CheckpointFile.save($0, durable: $1, to: path)
        }
        #expect(resumed.snapshot().version == 1 && resumed.snapshot().datasets == 20)
        let after = try #require(try CheckpointFile.loadState(from: path))
        #expect(after.durable.buffer.isEmpty && after.durable.tensors["m"] != nil && after.durable.tensors["v"] != nil)
    }
}
