import FedClient
import FedCodec
import FedSecureAggregation
@testable import FedSecureClient
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

private let shapes = [[2, 3], [3]]

@Suite("The consistency check: the server refuses what is not signed, and is refused without identities")
struct SecureConsistencyRefusalTests {
    @Test(
        "Unsigned keys, a key signature by the wrong key and a bad signature of U3 are refused; the cohort still completes"
    )
    func badSignaturesRefused() async throws {
        let names = ["a", "b", "c"]
        let ids = TestIdentities(names)
        let s = try RunningServer(tensors: constantTensors(0.25, shapes: shapes)) { c in
            var secure = SecureAggregation(threshold: 2, stageTimeout: .seconds(240))
            secure.consistency = true
            secure.identities = ids.trusted
            c.rounds = RoundConfiguration(
                cohortSize: 3, overSelection: 1, minimumReports: 3, deadline: .seconds(240),
                selectionWindow: .seconds(20), totalRounds: 1, secureAggregation: secure)
        }
        let io = SecureInProcess(server: s.server)
        let assignments = await withTaskGroup(of: (Int, Assignment).self) { g in
            for i in 0..<3 { g.addTask { (i, await io.checkIn(names[i])) } }
            var out = [Assignment?](repeating: nil, count: 3)
            for await (i, a) in g { out[i] = a }
            return out.map { $0! }
        }
        #expect(assignments.allSatisfy { $0.parameters["secagg.consistency"] == "on" })
        #expect(Set(assignments.compactMap { $0.parameters["secagg.cohort"] }).count == 1)
        let tasks = assignments.map(\.taskID)
        var participants = try (0..<3).map { try SecAggParticipant(assignments[$0], identity: ids.client(names[$0])) }
        let signed = try (0..<3).map { try participants[$0].signedKeys() }

        // Unsigned keys, and "a"'s keys signed by a key the server does not trust for "a".
        #expect(refusalCode(await io.send(signed[0].keys, task: tasks[0], client: "a")) == .unexpectedMessage)
        var forged = signed[0]
        let digest = try #require(SecAggParticipant.bytes(hex: assignments[0].parameters["secagg.cohort"]!))
        forged.signature = try SigningIdentity.generate(name: "a").sign(
            CohortBinding.keysStatement(
                digest: digest, name: "a", encryption: forged.keys.encryptionKey, masking: forged.keys.maskingKey))
        #expect(refusalCode(await io.send(forged, task: tasks[0], client: "a")) == .unauthorized)
        // "b"'s signature on "a"'s keys: a signature of another member.
        var borrowed = signed[0]
        borrowed.signature = signed[1].signature
        #expect(refusalCode(await io.send(borrowed, task: tasks[0], client: "a")) == .unauthorized)

        let rosters = try await io.stage(signed, tasks: tasks, names: names, expecting: SecAggSignedRoster.self)
        #expect(rosters.allSatisfy { $0.cohort.map(\.name) == names && $0.neighbours.count == 2 })
        let shares = try (0..<3).map { try participants[$0].shares(forSigned: rosters[$0]) }
        let inboxes = try await io.stage(shares, tasks: tasks, names: names, expecting: SecAggInbox.self)
        for i in 0..<3 { try participants[i].open(inboxes[i]) }
        let base = constantTensors(0.25, shapes: shapes)
        let trained = constantTensors(0.75, shapes: shapes)
        let inputs = try (0..<3).map { try participants[$0].input(trained: trained, base: base, samples: 10) }
        let u3 = try await io.stage(inputs, tasks: tasks, names: names, expecting: SecAggContributors.self)
        #expect(u3.allSatisfy { $0.contributors == [1, 2, 3] })

        // A signature of another U3 ({1, 2}) is refused; an unmask before the check is out of stage.
        let cohort = try #require(participants[0].consistency?.cohort)
        let otherU3 = SecAggConsistency(
            taskID: tasks[0], signature: try ids.identities["a"]!.sign(cohort.contributorsStatement([1, 2])))
        #expect(refusalCode(await io.send(otherU3, task: tasks[0], client: "a")) == .unauthorized)
        let early = SecAggUnmask(taskID: tasks[0], shares: [])
        #expect(refusalCode(await io.send(early, task: tasks[0], client: "a")) == .unexpectedMessage)

        let consistency = try (0..<3).map { try participants[$0].sign(u3[$0]) }
        let signatures = try await io.stage(consistency, tasks: tasks, names: names, expecting: SecAggSignatures.self)
        #expect(signatures.allSatisfy { $0.signatures.map(\.signer) == [1, 2, 3] })
        let unmasks = try (0..<3).map { try participants[$0].unmask(signatures[$0]) }
        let answers = await withTaskGroup(of: Result<Message, ErrorMessage>.self) { g in
            for i in 0..<3 { g.addTask { await io.send(unmasks[i], task: tasks[i], client: names[i]) } }
            var out: [Result<Message, ErrorMessage>] = []
            for await r in g { out.append(r) }
            return out
        }
        for a in answers {
            guard case .success(.ack(let version, let datasets)) = a else {
                Issue.record("expected ACK, got \(a)")
                continue
            }
            #expect(version == 1 && datasets == 30)
        }
        for t in s.server.service.current().tensors { for v in t.values { #expect(abs(v - 0.75) < 1e-4) } }
    }

    @Test("Fewer than t signatures of U3 by the consistency stage's timeout: the round is abandoned, nothing applied")
    func consistencyStageTimeout() async throws {
        let names = ["a", "b", "c"]
        let ids = TestIdentities(names)
        let s = try RunningServer(tensors: constantTensors(0.25, shapes: shapes)) { c in
            // Stages of 30 s (room for a loaded test pool): the keys, shares and input stages close as soon as all three answered;
            // only the consistency stage is meant to time out.
            var secure = SecureAggregation(threshold: 2, stageTimeout: .seconds(30))
            secure.consistency = true
            secure.identities = ids.trusted
            c.rounds = RoundConfiguration(
                cohortSize: 3, overSelection: 1, minimumReports: 3, deadline: .seconds(240),
                selectionWindow: .seconds(20), totalRounds: 1, secureAggregation: secure)
        }
        let io = SecureInProcess(server: s.server)
        let assignments = await withTaskGroup(of: (Int, Assignment).self) { g in
            for i in 0..<3 { g.addTask { (i, await io.checkIn(names[i])) } }
            var out = [Assignment?](repeating: nil, count: 3)
            for await (i, a) in g { out[i] = a }
            return out.map { $0! }
        }
        let tasks = assignments.map(\.taskID)
        var participants = try (0..<3).map { try SecAggParticipant(assignments[$0], identity: ids.client(names[$0])) }
        let signed = try (0..<3).map { try participants[$0].signedKeys() }
        let rosters = try await io.stage(signed, tasks: tasks, names: names, expecting: SecAggSignedRoster.self)
        let shares = try (0..<3).map { try participants[$0].shares(forSigned: rosters[$0]) }
        let inboxes = try await io.stage(shares, tasks: tasks, names: names, expecting: SecAggInbox.self)
        for i in 0..<3 { try participants[i].open(inboxes[i]) }
        let base = constantTensors(0.25, shapes: shapes)
        let inputs = try (0..<3).map {
            try participants[$0].input(trained: constantTensors(0.5, shapes: shapes), base: base, samples: 10)
        }
        let u3 = try await io.stage(inputs, tasks: tasks, names: names, expecting: SecAggContributors.self)
        // Only "a" signs: 1 < t = 2 when the stage times out.
        let answer = await io.send(try participants[0].sign(u3[0]), task: tasks[0], client: "a")
        #expect(refusalCode(answer) == .roundClosed, "\(answer)")
        #expect(s.server.service.current().version == 0)
        #expect(s.server.roundStatistics?.abandoned == 1)
    }

    @Test("consistency=on without the clients' identities, or with 2t <= n, is refused with its reason")
    func configurationRefused() throws {
        var secure = try SecureAggregation(spec: "consistency=on,t=3")
        #expect(secure.consistency)
        let config = { (s: SecureAggregation) in
            RoundConfiguration(cohortSize: 6, overSelection: 1, minimumReports: 3, secureAggregation: s).problem()
        }
        let missing = try #require(config(secure))
        #expect(missing.contains("needs the clients' identities") && missing.contains("--secagg-identities"))
        secure.identities = TestIdentities((0..<6).map { "c\($0)" }).trusted
        let half = try #require(config(secure))
        #expect(half.contains("2t > n"), "\(half)")
        secure.threshold = 4
        #expect(config(secure) == nil)
        // Only trusted clients are selected; without the check, any.
        #expect(secure.admits("c0") && !secure.admits("stranger"))
        #expect(SecureAggregation().admits("stranger"))
        // The default t with the check is floor(n/2) + 1.
        #expect(try SecureAggregation(spec: "consistency=on").threshold(cohort: 6) == 4)
        #expect(throws: SecureAggregationSpecError.self) { try SecureAggregation(spec: "consistency=maybe") }
    }

    @Test("A client and a round that disagree on the check: the task is refused with a clear message")
    func participantRefusesMismatch() throws {
        let ids = TestIdentities(["a", "b", "c"])
        var parameters = [
            "secagg.n": "3", "secagg.k": "2", "secagg.t": "2", "secagg.bits": "32", "secagg.clip": "10",
            "secagg.w": "100", "secagg.stage-ms": "1000",
        ]
        let plain = Assignment(kind: .secureTrain, taskID: 7, round: 1, parameters: parameters)
        let withIdentity = #expect(throws: SecAggParticipant.ParameterError.self) {
            try SecAggParticipant(plain, identity: ids.client("a"))
        }
        #expect(withIdentity?.description.contains("only in secure rounds with the consistency check") == true)
        parameters["secagg.consistency"] = "on"
        parameters["secagg.cohort"] = String(repeating: "ab", count: 32)
        let checked = Assignment(kind: .secureTrain, taskID: 7, round: 1, parameters: parameters)
        let without = #expect(throws: SecAggParticipant.ParameterError.self) { try SecAggParticipant(checked) }
        #expect(without?.description.contains("--secagg-identity") == true)
        _ = try SecAggParticipant(checked, identity: ids.client("a"))
        // A participant without an identity refuses the check's steps (the client's core would call them).
        var p = try SecAggParticipant(plain)
        #expect(throws: ConsistencyCheckUnsupported.self) { try p.signedKeys() }
    }
}
