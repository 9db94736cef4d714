import FedClient
import FedCodec
import FedSecureAggregation
import FedSecureClient
import FedTestSupport
import Foundation
import Synchronization
import Testing

@testable import FedServer

/// What the secure rounds' test hook saw: the number of inputs in each sum the server decoded.
private final class DecodeLog: Sendable {
    let sums = Mutex<[Int]>([])
}

private let shapes = [[3, 4], [4]]

/// Client `i`'s update: a fixed pattern scaled by `i + 1`, so the mean is known.
private func delta(_ i: Int) -> [Tensor] {
    shapes.enumerated().map { t, shape in
        let count = shape.reduce(1, *)
        return try! Tensor(
            shape: shape, values: (0..<count).map { Float(($0 * 7 + t * 3) % 11 - 5) * 0.01 * Float(i + 1) })
    }
}

private func secureServer(clients: Int, deadline: Duration, log: DecodeLog) throws -> RunningServer {
    try RunningServer(tensors: constantTensors(0.5, shapes: shapes)) { c in
        var rounds = RoundConfiguration(
            cohortSize: clients, overSelection: 1, minimumReports: 3, deadline: deadline,
            selectionWindow: .seconds(20), totalRounds: 1,
            secureAggregation: SecureAggregation(
                threshold: min(3, clients - 1), neighbours: clients - 1, stageTimeout: .seconds(30)))
        rounds.secureSumDecoded = { n in log.sums.withLock { $0.append(n) } }
        c.rounds = rounds
    }
}

@Suite("Secure aggregation over TCP (version 4, feature bit 2)", .serialized)
struct SecureRoundsOverTCPTests {
    @Test(
        "A cohort of 5 with one client gone after sharing keys: the round applies the weighted mean of the 4 inputs that arrived, decoded only as a sum"
    )
    func cohortWithDropout() async throws {
        let clients = 5
        let log = DecodeLog()
        let s = try secureServer(clients: clients, deadline: .seconds(15), log: log)
        let port = s.port
        let samples: [UInt64] = [10, 20, 30, 40, 50]
        let results = await withTaskGroup(of: (Int, Result<FederationClient.Acknowledgement, any Error>).self) {
            group in
            for i in 0..<clients {
                group.addTask {
                    let client = FederationClient(
                        host: "127.0.0.1", port: port, configuration: .init(clientID: "device-\(i)"))
                    defer { Task { await client.close() } }
                    do {
                        let assignment = try await client.checkIn(
                            CheckIn(features: .secureAggregation, abilities: .train, waitMilliseconds: 20_000))
                        guard assignment.kind == .secureTrain else {
                            throw ClientError(code: .invalidArgument, message: "not a secure task: \(assignment.kind)")
                        }
                        let ack = try await client.secureTrain(
                            assignment, participant: try SecAggParticipant(assignment)
                        ) {
                            // Client 4 trains forever (gone after sharing its keys).
                            if i == 4 { try await Task.sleep(for: .seconds(30)) }
                            guard case .model(_, _, let base) = try await client.fetch() else {
                                throw ClientError(code: .invalidArgument, message: "no model")
                            }
                            let trained = try zip(base, delta(i)).map { b, d in
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
                // The four that took part are done: the fifth is still "training".
                if out.count == clients - 1 { group.cancelAll() }
            }
            return out
        }
        for i in 0..<4 {
            guard case .success(let ack) = results[i] else {
                Issue.record("client \(i): \(String(describing: results[i]))")
                continue
            }
            #expect(ack.version == 1)
            #expect(ack.datasets == 100)
        }
        // The server decoded one sum, of four inputs, and nothing else.
        #expect(log.sums.withLock { $0 } == [4])
        let model = s.server.service.current()
        #expect(model.version == 1)
        // The weighted mean of the four deltas, within the fixed point's bound.
        let encoding = try FixedPointEncoding(
            bits: 32, clipping: .l2Norm(10), maximumSummands: 5, maximumWeight: 10_000)
        let bound = Float(4.0 * 10_000 / (100 * encoding.scale)) + 1e-6
        for (t, tensor) in model.tensors.enumerated() {
            for v in tensor.values.indices {
                var expected = 0.0
                for i in 0..<4 { expected += Double(samples[i]) * Double(delta(i)[t].values[v]) }
                expected = 0.5 + expected / 100
                #expect(abs(tensor.values[v] - Float(expected)) <= bound)
            }
        }
    }

    @Test("A plain REPORT of a secure-train task is refused: its update travels masked")
    func plainReportRefused() async throws {
        let log = DecodeLog()
        let s = try secureServer(clients: 3, deadline: .seconds(2), log: log)
        let port = s.port
        let refused = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<3 {
                group.addTask {
                    let client = FederationClient(
                        host: "127.0.0.1", port: port, configuration: .init(clientID: "plain-\(i)"))
                    defer { Task { await client.close() } }
                    guard
                        let assignment = try? await client.checkIn(
                            CheckIn(features: .secureAggregation, abilities: .train, waitMilliseconds: 20_000)),
                        assignment.kind == .secureTrain
                    else { return false }
                    do {
                        _ = try await client.report(
                            constantTensors(1, shapes: shapes), samples: 5, taskID: assignment.taskID)
                        return false
                    } catch let error as ClientError {
                        return error.code == .server(.unexpectedMessage)
                    } catch {
                        return false
                    }
                }
            }
            var all = true
            for await r in group { all = all && r }
            return all
        }
        #expect(refused)
        #expect(log.sums.withLock { $0 }.isEmpty)
        #expect(s.server.service.current().version == 0)
    }
}
