import FedClient
import FedCodec
import FedSecureAggregation
import FedSecureClient
import FedTestSupport
import Foundation
import Synchronization
import Testing

@testable import FedServer

private let shapes = secureTestShapes

/// The sample-weighted mean of the deltas of `clients`, coordinate `v` of tensor `t`.
private func meanDelta(_ clients: [Int], samples: [UInt64], _ t: Int, _ v: Int) -> Double {
    let total = clients.reduce(0.0) { $0 + Double(samples[$1]) }
    return clients.reduce(0.0) { $0 + Double(samples[$1]) * Double(secureTestDelta($1)[t].values[v]) } / total
}

/// What the clients of a test share.
private final class Shared: Sendable {
    let assigned = Mutex<[Int: Assignment]>([:])
    let released = Mutex(false)
    let decoded = Mutex<[Int]>([])
}

/// Client `i` checks in, and trains from `base` when `released` is set (at once if `waits` is false).
private func member(
    _ i: Int, port: Int, shared: Shared, waits: Bool, base: [Tensor], update: [Tensor], samples: UInt64
) async -> Result<FederationClient.Acknowledgement, any Error> {
    let client = FederationClient(host: "127.0.0.1", port: port, configuration: .init(clientID: "device-\(i)"))
    defer { Task { await client.close() } }
    do {
        let assignment = try await client.checkIn(
            CheckIn(features: .secureAggregation, abilities: .train, waitMilliseconds: 20_000))
        shared.assigned.withLock { $0[i] = assignment }
        return .success(
            try await client.secureTrain(assignment, participant: try SecAggParticipant(assignment)) {
                if waits {
                    for _ in 0..<600 where !shared.released.withLock({ $0 }) {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
                return (update, base, samples)
            })
    } catch {
        return .failure(error)
    }
}

@Suite("FedBuff cohorts under secure aggregation over TCP", .serialized)
struct SecureCohortsOverTCPTests {
    @Test(
        "Two cohorts formed at check-in run at once from version 0; the second closes first, and the first is applied as a buffer one version stale, its mean step scaled by s(1)"
    )
    func overlappingCohorts() async throws {
        let shared = Shared()
        let s = try RunningServer(tensors: constantTensors(0.5, shapes: shapes)) { c in
            // s(tau) = (1 + tau)^-1 and a plain step: the result is known in closed form.
            c.aggregation.strategy = FedBuff(bufferSize: 3, staleness: .polynomial(1))
            var rounds = RoundConfiguration(
                cohortSize: 3, overSelection: 1, minimumReports: 3, deadline: .seconds(60),
                selectionWindow: .seconds(20), admission: .cohorts(inFlight: 2),
                secureAggregation: SecureAggregation(threshold: 2, neighbours: 2, stageTimeout: .seconds(60)))
            rounds.secureSumDecoded = { n in shared.decoded.withLock { $0.append(n) } }
            c.rounds = rounds
        }
        let port = s.port
        let samples: [UInt64] = [10, 20, 30, 40, 50, 60]
        let base = constantTensors(0.5, shapes: shapes)
        let results = await withTaskGroup(of: (Int, Result<FederationClient.Acknowledgement, any Error>).self) {
            group in
            func add(_ i: Int) {
                let trained = zip(base, secureTestDelta(i)).map { b, d in
                    try! Tensor(shape: b.shape, values: zip(b.values, d.values).map { $0 + $1 })
                }
                // The first cohort (clients 0-2) trains until the second has closed.
                group.addTask {
                    (
                        i,
                        await member(
                            i, port: port, shared: shared, waits: i < 3, base: base, update: trained,
                            samples: samples[i])
                    )
                }
            }
            for i in 0..<3 { add(i) }
            // The second cohort checks in once the first has its tasks.
            for _ in 0..<400 where shared.assigned.withLock({ $0.count }) < 3 {
                try? await Task.sleep(for: .milliseconds(25))
            }
            for i in 3..<6 { add(i) }
            var out: [Int: Result<FederationClient.Acknowledgement, any Error>] = [:]
            for await (i, r) in group {
                out[i] = r
                if (3..<6).allSatisfy({ out[$0] != nil }) { shared.released.withLock { $0 = true } }
            }
            return out
        }

        let tasks = shared.assigned.withLock { $0 }
        #expect(tasks.count == 6)
        // Both cohorts trained from version 0, under different round numbers.
        #expect(tasks.values.allSatisfy { $0.modelVersion == 0 && $0.kind == .secureTrain })
        #expect(Set(tasks.values.map(\.round)).count == 2)
        for i in 0..<6 {
            guard case .success(let ack) = results[i] else {
                Issue.record("client \(i): \(String(describing: results[i]))")
                continue
            }
            // The second cohort published version 1, the first (one version stale) version 2.
            #expect(ack.version == (i < 3 ? 2 : 1), "client \(i)")
        }
        #expect(shared.decoded.withLock { $0 } == [3, 3])
        let model = s.server.service.current()
        #expect(model.version == 2)
        #expect(model.datasets == samples.reduce(0, +))
        // 0.5 + mean of the second cohort + s(1) * mean of the first, within the fixed point's
        // bound (the default 32-bit encoding with weights up to 10,000) for each of the two sums.
        let encoding = try FixedPointEncoding(
            bits: 32, clipping: .l2Norm(10), maximumSummands: 3, maximumWeight: 10_000)
        let bound = Float(3.0 * 10_000 / (60 * encoding.scale)) * 2 + 1e-6
        for (t, tensor) in model.tensors.enumerated() {
            for v in tensor.values.indices {
                let expected =
                    0.5 + meanDelta([3, 4, 5], samples: samples, t, v) + 0.5
                    * meanDelta([0, 1, 2], samples: samples, t, v)
                #expect(abs(tensor.values[v] - Float(expected)) <= bound, "tensor \(t) index \(v)")
            }
        }
    }

    @Test("A cohort whose base fell more than the server's window behind is abandoned, not applied")
    func tooStaleCohortAbandoned() async throws {
        let s = try RunningServer(tensors: constantTensors(0.5, shapes: shapes)) { c in
            // A push beside the rounds publishes at once (a buffer of one).
            c.aggregation.strategy = FedBuff(bufferSize: 1)
            c.aggregation.maxStaleness = 0
            c.rounds = RoundConfiguration(
                cohortSize: 3, overSelection: 1, minimumReports: 3, deadline: .seconds(60),
                selectionWindow: .seconds(20), admission: .cohorts(inFlight: 1),
                secureAggregation: SecureAggregation(threshold: 2, neighbours: 2, stageTimeout: .seconds(60)))
        }
        let port = s.port
        let shared = Shared()
        let base = constantTensors(0.5, shapes: shapes)
        let results = await withTaskGroup(of: Result<FederationClient.Acknowledgement, any Error>?.self) { group in
            for i in 0..<3 {
                group.addTask {
                    await member(
                        i, port: port, shared: shared, waits: true, base: base,
                        update: constantTensors(0.6, shapes: shapes), samples: 10)
                }
            }
            // Once the cohort has its tasks, a push beside the rounds (a version 1-3 client) publishes.
            for _ in 0..<400 where shared.assigned.withLock({ $0.count }) < 3 {
                try? await Task.sleep(for: .milliseconds(25))
            }
            if let pusher = try? TestClient(port: port), (try? pusher.handshake("pusher")) != nil {
                _ = try? pusher.push(constantTensors(0.7, shapes: shapes), datasets: 5)
            }
            shared.released.withLock { $0 = true }
            var out: [Result<FederationClient.Acknowledgement, any Error>] = []
            for await r in group { if let r { out.append(r) } }
            return out
        }
        let refusals = results.compactMap { r -> ClientError? in
            if case .failure(let e as ClientError) = r { return e }
            return nil
        }
        #expect(refusals.count == 3 && refusals.allSatisfy { $0.code == .server(.roundClosed) }, "\(results)")
        #expect(refusals.allSatisfy { $0.message.contains("versions behind") }, "\(refusals)")
        // Only the push was applied.
        #expect(s.server.service.current().version == 1)
    }
}
