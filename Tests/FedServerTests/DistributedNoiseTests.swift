import FedClient
import FedCodec
import FedPrivacy
import FedSecureAggregation
import FedSecureClient
import FedTestSupport
import Foundation
import Synchronization
import Testing

@testable import FedServer

/// Differential privacy under secure aggregation (issue 26 item 4,
/// `Protocol/SPEC.md` 12.13): the clients add the noise, the server unmasks
/// only a noised sum of at least m inputs and accounts for it as DP-FedAvg.
@Suite("Distributed noise: differential privacy with secure aggregation over TCP", .serialized)
struct DistributedNoiseTests {
    private final class DecodeLog: Sendable {
        let sums = Mutex<[Int]>([])
    }

    private final class Parameters: Sendable {
        let values = Mutex<[String: String]>([:])
    }

    private static let shapes = [[50, 100]]
    private static let (z, clip) = (1.0, 1.0)

    /// Client `i`'s update, of norm far above the clip: every one is clipped to the same unit vector.
    private static func delta(_ i: Int) -> [Tensor] {
        shapes.map { shape in
            let count = shape.reduce(1, *)
            return try! Tensor(
                shape: shape, values: (0..<count).map { Float(($0 * 7) % 11 - 5) * 0.01 * Float(i + 1) })
        }
    }

    private static func server(
        clients: Int, survivors: Double, deadline: Duration, log: DecodeLog,
        privacy given: DifferentialPrivacy? = nil
    ) throws -> RunningServer {
        try RunningServer(tensors: constantTensors(0.5, shapes: shapes)) { c in
            var privacy =
                given
                ?? DifferentialPrivacy(
                    noiseMultiplier: z, clipping: .fixed(norm: clip), sampling: .fixed, population: clients)
            privacy.survivors = survivors
            var rounds = RoundConfiguration(
                cohortSize: clients, overSelection: 1, deadline: deadline, selectionWindow: .seconds(20),
                totalRounds: 1, privacy: privacy,
                secureAggregation: SecureAggregation(
                    threshold: 3, neighbours: clients - 1, stageTimeout: .seconds(120)))
            rounds.secureSumDecoded = { n in log.sums.withLock { $0.append(n) } }
            c.rounds = rounds
        }
    }

    /// Runs `clients` secure clients against `port`; client `gone` never sends its input;
    /// client `small`'s update is within any clip of 0.01 or more.
    /// Returns each client's outcome and the task parameters the first one got.
    private static func cohort(port: Int, clients: Int, gone: Int, small: Int = -1) async -> (
        [Int: Result<FederationClient.Acknowledgement, any Error>], [String: String]
    ) {
        let parameters = Parameters()
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
                        parameters.values.withLock { $0 = assignment.parameters }
                        let ack = try await client.secureTrain(
                            assignment, participant: try SecAggParticipant(assignment)
                        ) {
                            if i == gone { try await Task.sleep(for: .seconds(60)) }
                            guard case .model(_, _, let base) = try await client.fetch() else {
                                throw ClientError(code: .invalidArgument, message: "no model")
                            }
                            let factor: Float = i == small ? 1e-3 : 1
                            let trained = try zip(base, delta(i)).map { b, d in
                                try Tensor(
                                    shape: b.shape, values: zip(b.values, d.values).map { $0 + $1 * factor })
                            }
                            return (trained, base, 100)
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
        return (results, parameters.values.withLock { $0 })
    }

    @Test(
        "A cohort of 5, one gone after sharing keys: the 4 inputs (m = 4) carry the whole noise; the server publishes base + (sum of clipped updates + N(0, (zC)^2)) / 5, decoded only as a sum, accounted as DP-FedAvg"
    )
    func noisedSumOfSurvivors() async throws {
        let clients = 5
        let log = DecodeLog()
        let s = try Self.server(clients: clients, survivors: 0.8, deadline: .seconds(20), log: log)
        let (results, parameters) = await Self.cohort(port: s.port, clients: clients, gone: 4)
        for i in 0..<4 {
            guard case .success(let ack) = results[i] else {
                Issue.record("client \(i): \(String(describing: results[i]))")
                continue
            }
            #expect(ack.version == 1)
        }
        // Each client clips to C, weighs 1 and adds sigma = z C / sqrt(m), m = ceil(0.8 x 5) = 4.
        #expect(parameters["secagg.min-inputs"] == "4")
        #expect(parameters["secagg.w"] == "1")
        #expect(parameters["secagg.clip"] == String(Self.clip))
        #expect(parameters["dp.client-noise"] == String(Self.z * Self.clip / 2))
        #expect(log.sums.withLock { $0 } == [4])
        let model = s.server.service.current()
        #expect(model.version == 1)

        // What the server published, times the expected cohort, less the four clipped updates: the noise.
        let direction = Self.delta(0)[0].values.map(Double.init)
        let norm = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let residual = model.tensors[0].values.indices.map { i in
            (Double(model.tensors[0].values[i]) - 0.5) * Double(clients) - 4 * Self.clip * direction[i] / norm
        }
        let n = Double(residual.count)
        let mean = residual.reduce(0, +) / n
        let sd = (residual.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot()
        // 4 shares of variance (zC)^2 / 4: standard deviation zC (5,000 coordinates: within 5%).
        #expect(abs(sd - Self.z * Self.clip) < 0.05 * Self.z * Self.clip, "sd \(sd)")
        #expect(abs(mean) < 4 * Self.z * Self.clip / n.squareRoot(), "mean \(mean)")

        // The same epsilon as the server adding the noise itself: one fixed-size round at z/2.
        var accountant = RDPAccountant()
        try accountant.compose(.fixedSizeSampledGaussian(sampleSize: 5, populationSize: 5, noise: Self.z / 2))
        let spent = try #require(s.server.privacySpent)
        #expect(spent.rounds == 1)
        #expect(abs(spent.epsilon - accountant.epsilon(delta: 1e-5).epsilon) < 1e-12)
    }

    @Test(
        "With survivors 1 (m = 5), a cohort of 5 with one gone: the sum of 4 would hold too little noise, so it is never unmasked and nothing is published or accounted"
    )
    func tooFewInputsAreNotUnmasked() async throws {
        let clients = 5
        let log = DecodeLog()
        let s = try Self.server(clients: clients, survivors: 1, deadline: .seconds(6), log: log)
        let (results, parameters) = await Self.cohort(port: s.port, clients: clients, gone: 4)
        #expect(parameters["secagg.min-inputs"] == "5")
        for i in 0..<4 {
            guard case .failure(let error) = results[i] else {
                Issue.record("client \(i) was acknowledged: \(String(describing: results[i]))")
                continue
            }
            // Abandoned for want of inputs, not for a stage that timed out.
            #expect("\(error)".contains("4 masked inputs arrived"), "\(error)")
        }
        #expect(log.sums.withLock { $0 }.isEmpty)
        #expect(s.server.service.current().version == 0)
        #expect(try #require(s.server.privacySpent).rounds == 0)
        #expect(s.server.roundStatistics?.abandoned == 1)
    }

    @Test(
        "Adaptive clipping under secure aggregation: each client appends its noised clipped-or-not bit, and the server moves the clip by the noised count alone"
    )
    func adaptiveClipFromTheNoisedCount() async throws {
        let clients = 5
        let log = DecodeLog()
        // z 0.1 and a count noise of 0.1: the count's noise on the fraction is 0.02.
        let privacy = DifferentialPrivacy(
            noiseMultiplier: 0.1, clipping: .adaptive(initialNorm: 1, quantile: 0.5, rate: 0.2), sampling: .fixed,
            population: clients, countNoise: 0.1)
        let s = try Self.server(clients: clients, survivors: 0.8, deadline: .seconds(20), log: log, privacy: privacy)
        let (results, parameters) = await Self.cohort(port: s.port, clients: clients, gone: 4, small: 0)
        for i in 0..<4 {
            guard case .success = results[i] else {
                Issue.record("client \(i): \(String(describing: results[i]))")
                continue
            }
        }
        // kappa = z_value C / sigma_count, z_value = (0.1^-2 - 0.2^-2)^(-1/2).
        let zValue = 1 / (1 / 0.01 - 1 / 0.04).squareRoot()
        let kappa = try #require(parameters["dp.count-scale"].flatMap(Double.init))
        #expect(abs(kappa - zValue * 1 / 0.1) < 1e-12)
        #expect(log.sums.withLock { $0 } == [4])
        // Client 0 was within the clip, clients 1-3 were clipped: a centred count of 1/2 - 3/2 = -1,
        // a fraction of -1/5 + 1/2 = 0.3 (sd 0.02), so the clip becomes exp(-0.2 (0.3 - 0.5)).
        let spent = try #require(s.server.privacySpent)
        #expect(spent.rounds == 1)
        #expect(abs(spent.clip - exp(0.04)) < 0.2 * 5 * 0.02, "clip \(spent.clip)")
        #expect(abs(spent.clip - exp(0.08)) > 0.02 && abs(spent.clip - exp(0)) > 0.02)
        // The model moved by the clipped updates' sum over K, within the value noise.
        let direction = Self.delta(1)[0].values.map(Double.init)
        let norm = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let model = s.server.service.current()
        let residual = model.tensors[0].values.indices.map { i in
            // Client 0 sent 1e-3 x delta(0), which is 0.5e-3 x delta(1).
            (Double(model.tensors[0].values[i]) - 0.5) * Double(clients) - 3 * direction[i] / norm
                - 0.5e-3 * direction[i]
        }
        let sd = (residual.reduce(0) { $0 + $1 * $1 } / Double(residual.count)).squareRoot()
        #expect(abs(sd - zValue) < 0.05 * zValue, "sd \(sd), z_value \(zValue)")
    }

    @Test("A participant reveals no share for a sum of fewer inputs than its noise was calibrated for")
    func participantRefusesShortSums() throws {
        let assignment = Assignment(
            kind: .secureTrain, features: .secureAggregation, taskID: 7, round: 1, modelVersion: 0,
            deadlineMilliseconds: 1_000,
            parameters: [
                "secagg.n": "5", "secagg.t": "3", "secagg.bits": "32", "secagg.clip": "1", "secagg.w": "1",
                "secagg.range": "4", "secagg.min-inputs": "4", "dp.client-noise": "0.5",
            ])
        var participant = try SecAggParticipant(assignment)
        #expect(participant.minimumInputs == 4 && participant.noise == 0.5 && participant.encoding.range == 4)
        #expect(throws: SecAggParticipant.ParameterError.self) {
            try participant.unmask(SecAggSurvivors(taskID: 7, contributors: 3, survivors: [1, 2, 3]))
        }
    }

    @Test("Survivors must be in (0, 1]; m and the clients' noise follow from it")
    func survivorsAndCalibration() throws {
        let poisson = RoundConfiguration(
            cohortSize: 10, overSelection: 1,
            privacy: DifferentialPrivacy(noiseMultiplier: 1, clipping: .fixed(norm: 1), population: 100),
            secureAggregation: SecureAggregation())
        #expect(poisson.problem()?.contains("sampling=fixed") == true)
        let fixedSampling = RoundConfiguration(
            cohortSize: 10, overSelection: 1,
            privacy: DifferentialPrivacy(
                noiseMultiplier: 1, clipping: .fixed(norm: 1), sampling: .fixed, population: 100),
            secureAggregation: SecureAggregation())
        #expect(fixedSampling.problem() == nil)
        #expect(throws: PrivacyError.self) {
            try DifferentialPrivacy(spec: "population=100,noise=1,clip=1,survivors=0", cohort: 10, rounds: 1)
        }
        let p = try DifferentialPrivacy(spec: "population=1000,noise=1,clip=1,survivors=0.6", cohort: 100, rounds: 1)
        // 60 of 100 carry the noise; all 100 carry sqrt(100/60) = 1.29 times it.
        #expect(p.minimumInputs(drawn: 100) == 60)
        #expect(abs(p.clientNoise(clip: 1, expectedCohort: 100, drawn: 100) - 1 / 60.0.squareRoot()) < 1e-15)
        #expect(abs((100.0 / 60).squareRoot() - 1.29) < 0.005)
    }
}
