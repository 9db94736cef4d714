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

@Suite("Secure aggregation with the consistency check over TCP", .serialized)
struct SecureConsistencyOverTCPTests {
    @Test(
        "A cohort of 5 with identities, one gone after sharing keys: every survivor verifies t signatures of the same U3, and the round applies the exact weighted mean of the 4 inputs"
    )
    func cohortWithConsistency() async throws {
        let clients = 5
        let names = (0..<clients).map { "signer-\($0)" }
        let ids = TestIdentities(names)
        let sums = Mutex<[Int]>([])
        let s = try RunningServer(tensors: constantTensors(0.5, shapes: shapes)) { c in
            var secure = SecureAggregation(neighbours: clients - 1, stageTimeout: .seconds(60))
            secure.consistency = true
            secure.identities = ids.trusted
            var rounds = RoundConfiguration(
                cohortSize: clients, overSelection: 1, minimumReports: 3, deadline: .seconds(20),
                selectionWindow: .seconds(30), totalRounds: 1, secureAggregation: secure)
            rounds.secureSumDecoded = { n in sums.withLock { $0.append(n) } }
            c.rounds = rounds
        }
        let port = s.port
        let samples: [UInt64] = [10, 20, 30, 40, 50]
        let results = await withTaskGroup(of: (Int, Result<FederationClient.Acknowledgement, any Error>).self) {
            group in
            for i in 0..<clients {
                group.addTask {
                    let client = FederationClient(
                        host: "127.0.0.1", port: port, configuration: .init(clientID: names[i]))
                    defer { Task { await client.close() } }
                    do {
                        let assignment = try await client.checkIn(
                            CheckIn(features: .secureAggregation, abilities: .train, waitMilliseconds: 30_000))
                        guard assignment.kind == .secureTrain, assignment.parameters["secagg.t"] == "3" else {
                            throw ClientError(code: .invalidArgument, message: "not the task expected: \(assignment)")
                        }
                        let participant = try SecAggParticipant(assignment, identity: ids.client(names[i]))
                        let ack = try await client.secureTrain(assignment, participant: participant) {
                            // Client 4 trains forever (gone after sharing its keys).
                            if i == 4 { try await Task.sleep(for: .seconds(60)) }
                            guard case .model(_, _, let base) = try await client.fetch() else {
                                throw ClientError(code: .invalidArgument, message: "no model")
                            }
                            let trained = try zip(base, secureTestDelta(i)).map { b, d in
                                try Tensor(shape: b.shape, values: zip(b.values, d.values).map { $0 + $1 })
                            }
                            return (trained, base, samples[i])
                        }
                        return (i, .success(ack))
                    } catch {
                        return (i, .failure(error))
                    }
                }
            }
            var out: [Int: Result<FederationClient.Acknowledgement, any Error>] = [:]
            for await (i, r) in group {
                out[i] = r
                if out.count == clients - 1 { group.cancelAll() }
            }
            return out
        }
        for i in 0..<4 {
            guard case .success(let ack) = results[i] else {
                Issue.record("client \(i): \(String(describing: results[i]))")
                continue
            }
            #expect(ack.version == 1 && ack.datasets == 100)
        }
        #expect(sums.withLock { $0 } == [4])
        let model = s.server.service.current()
        #expect(model.version == 1)
        let encoding = try FixedPointEncoding(
            bits: 32, clipping: .l2Norm(10), maximumSummands: 5, maximumWeight: 10_000)
        let bound = Float(4.0 * 10_000 / (100 * encoding.scale)) + 1e-6
        var worst: Float = 0
        for (t, tensor) in model.tensors.enumerated() {
            for v in tensor.values.indices {
                var expected = 0.0
                for i in 0..<4 { expected += Double(samples[i]) * Double(secureTestDelta(i)[t].values[v]) }
                worst = max(worst, abs(tensor.values[v] - Float(0.5 + expected / 100)))
            }
        }
        print("consistency cohort over TCP: max error \(worst), bound \(bound)")
        #expect(worst <= bound)
    }
}
