import FedClient
import FedCodec
import FedSecureAggregation
import FedSecureClient
import FedTestSupport

@testable import FedServer

/// Signing identities for a cohort of clients named `names` (the consistency check's tests).
struct TestIdentities {
    let identities: [String: SigningIdentity]
    let trusted: TrustedIdentities

    init(_ names: [String]) {
        let all = names.map { SigningIdentity.generate(name: $0) }
        identities = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
        trusted = TrustedIdentities(all)
    }

    /// The participant-side identity of `name`.
    func client(_ name: String) throws -> SecAggIdentity {
        try SecAggIdentity(identity: identities[name]!, trusted: trusted)
    }
}

/// The in-process calls of a `CHECK_IN` and a `SECAGG_*` request, awaited.
struct SecureInProcess {
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

    /// Sends `messages[i]` for every client at once (a stage closes when all answered) and
    /// returns the relayed answers of type `M`.
    func stage<M: ProtocolMessage>(
        _ messages: [any ProtocolMessage], tasks: [UInt64], names: [String], expecting: M.Type
    ) async throws -> [M] {
        let answers = await withTaskGroup(of: (Int, Result<Message, ErrorMessage>).self) { g in
            for i in messages.indices {
                let (m, t, n) = (messages[i], tasks[i], names[i])
                g.addTask { (i, await send(m, task: t, client: n)) }
            }
            var out = [Result<Message, ErrorMessage>?](repeating: nil, count: messages.count)
            for await (i, r) in g { out[i] = r }
            return out.map { $0! }
        }
        return try answers.map { r in
            guard case .success(.other(let m)) = r, let typed = m.as(M.self) else {
                throw TestError("expected \(M.descriptor.name), got \(r)")
            }
            return typed
        }
    }
}

func refusalCode(_ r: Result<Message, ErrorMessage>) -> ErrorCode? {
    if case .failure(let e) = r { return e.code }
    return nil
}
