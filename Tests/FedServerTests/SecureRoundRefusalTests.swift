import FedClient
import FedCodec
import FedSecureClient
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

private let shapes = [[2, 3], [3]]

/// The in-process calls of a `CHECK_IN` and a `SECAGG_*` request, awaited.
private struct InProcess {
    let server: FederatedServer

    func checkIn(_ client: String) async -> Assignment {
        await withCheckedContinuation { c in
            _ = server.checkIn(
                CheckIn(features: .secureAggregation, abilities: .train, waitMilliseconds: 20_000), clientID: client
            ) { c.resume(returning: $0) }
        }
    }

    func send(_ message: any ProtocolMessage, task: UInt64, client: String) async -> Result<Message, ErrorMessage> {
        await withCheckedContinuation { c in
            if let refusal = server.secure(
                message, taskID: task, clientID: client, completion: { c.resume(returning: $0) })
            {
                c.resume(returning: .failure(refusal))
            }
        }
    }
}

private func code(_ r: Result<Message, ErrorMessage>) -> ErrorCode? {
    if case .failure(let e) = r { return e.code }
    return nil
}

private func relayed<M: ProtocolMessage>(_ r: Result<Message, ErrorMessage>, as: M.Type) throws -> M {
    guard case .success(.other(let m)) = r, let typed = m.as(M.self) else {
        throw TestError("expected \(M.descriptor.name), got \(r)")
    }
    return typed
}

@Suite("Secure rounds refuse what breaks the protocol")
struct SecureRoundRefusalTests {
    @Test(
        "Out-of-stage, misaddressed and malformed requests are refused one by one, and the cohort's round still completes"
    )
    func refusalsThenCompletion() async throws {
        let s = try RunningServer(tensors: constantTensors(0.25, shapes: shapes)) { c in
            c.rounds = RoundConfiguration(
                cohortSize: 3, overSelection: 1, minimumReports: 3, deadline: .seconds(240),
                selectionWindow: .seconds(20), totalRounds: 1,
                // Nothing here waits for a timeout: long ones, so that a test pool starved by the
                // rest of the suite cannot close a stage under it.
                secureAggregation: SecureAggregation(threshold: 2, stageTimeout: .seconds(240)))
        }
        let io = InProcess(server: s.server)
        let names = ["a", "b", "c"]
        let assignments = await withTaskGroup(of: (Int, Assignment).self) { g in
            for i in 0..<3 { g.addTask { (i, await io.checkIn(names[i])) } }
            var out = [Assignment?](repeating: nil, count: 3)
            for await (i, a) in g { out[i] = a }
            return out.map { $0! }
        }
        #expect(assignments.allSatisfy { $0.kind == .secureTrain })
        var participants = try assignments.map { try SecAggParticipant($0) }
        let tasks = assignments.map(\.taskID)

        // An input before the keys, and keys for another client's task.
        let early = SecAggInput(taskID: tasks[0], elementBytes: 4, values: [1, 2, 3])
        #expect(code(await io.send(early, task: tasks[0], client: "a")) == .unexpectedMessage)
        let keys = try (0..<3).map { try participants[$0].keys() }
        #expect(code(await io.send(keys[1], task: tasks[1], client: "a")) == .unknownTask)

        let rosters = try await withThrowingTaskGroup(of: (Int, SecAggRoster).self) { g in
            for i in 0..<3 {
                g.addTask {
                    (i, try relayed(await io.send(keys[i], task: tasks[i], client: names[i]), as: SecAggRoster.self))
                }
            }
            var out = [SecAggRoster?](repeating: nil, count: 3)
            for try await (i, r) in g { out[i] = r }
            return out.map { $0! }
        }
        #expect(Set(rosters.map(\.participant)) == [1, 2, 3])

        // Shares missing a neighbour's bundle.
        let shares = try (0..<3).map { try participants[$0].shares(for: rosters[$0]) }
        var short = shares[0]
        short.bundles.removeLast()
        #expect(code(await io.send(short, task: tasks[0], client: "a")) == .malformedPayload)
        let inboxes = try await withThrowingTaskGroup(of: (Int, SecAggInbox).self) { g in
            for i in 0..<3 {
                g.addTask {
                    (i, try relayed(await io.send(shares[i], task: tasks[i], client: names[i]), as: SecAggInbox.self))
                }
            }
            var out = [SecAggInbox?](repeating: nil, count: 3)
            for try await (i, r) in g { out[i] = r }
            return out.map { $0! }
        }
        for i in 0..<3 { try participants[i].open(inboxes[i]) }

        // An input of the wrong length, then the real ones (update: +0.5 on every weight).
        let base = constantTensors(0.25, shapes: shapes)
        let trained = constantTensors(0.75, shapes: shapes)
        let inputs = try (0..<3).map { try participants[$0].input(trained: trained, base: base, samples: 10) }
        var wrong = inputs[0]
        wrong.values.removeLast()
        #expect(code(await io.send(wrong, task: tasks[0], client: "a")) == .shapeMismatch)
        let survivors = try await withThrowingTaskGroup(of: (Int, SecAggSurvivors).self) { g in
            for i in 0..<3 {
                g.addTask {
                    (
                        i,
                        try relayed(
                            await io.send(inputs[i], task: tasks[i], client: names[i]), as: SecAggSurvivors.self)
                    )
                }
            }
            var out = [SecAggSurvivors?](repeating: nil, count: 3)
            for try await (i, r) in g { out[i] = r }
            return out.map { $0! }
        }
        #expect(survivors.allSatisfy { $0.contributors == 3 })

        // Shares of the wrong kind (a masking key asked for a survivor): refused, nothing rebuilt.
        let unmasks = try (0..<3).map { try participants[$0].unmask(survivors[$0]) }
        var flipped = unmasks[0]
        flipped.shares[0].kind = .maskingKey
        #expect(code(await io.send(flipped, task: tasks[0], client: "a")) == .malformedPayload)
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
            #expect(version == 1)
            #expect(datasets == 30)
        }
        let model = s.server.service.current()
        for t in model.tensors { for v in t.values { #expect(abs(v - 0.75) < 1e-4) } }
    }

    @Test(
        "A round whose clients do not all advertise keys before the stage timeout is abandoned: every waiting request gets round_closed"
    )
    func keysStageTimeout() async throws {
        let s = try RunningServer(tensors: constantTensors(0, shapes: shapes)) { c in
            c.rounds = RoundConfiguration(
                cohortSize: 3, overSelection: 1, minimumReports: 3, deadline: .seconds(20),
                selectionWindow: .seconds(20),
                secureAggregation: SecureAggregation(threshold: 2, stageTimeout: .seconds(1)))
        }
        let io = InProcess(server: s.server)
        let assigned = await withTaskGroup(of: (String, Assignment).self) { g in
            for name in ["a", "b", "c"] { g.addTask { (name, await io.checkIn(name)) } }
            var out: [(String, Assignment)] = []
            for await a in g { out.append(a) }
            return out.sorted { $0.0 < $1.0 }
        }
        // Only "a" advertises: the round needs max(M, t + 1) = 3 clients after the keys stage.
        let (name, assignment) = assigned[0]
        var p = try SecAggParticipant(assignment)
        let keys = try p.keys()
        // Answered round_closed when the stage times out (or at once, when the test ran late).
        let answer = await io.send(keys, task: assignment.taskID, client: name)
        #expect(code(answer) == .roundClosed, "\(answer)")
        // The task is remembered as closed; nothing was applied.
        #expect(code(await io.send(keys, task: assignment.taskID, client: name)) == .roundClosed)
        #expect(s.server.service.current().version == 0)
        #expect(s.server.roundStatistics?.abandoned == 1)
    }
}
