import FedClient
import FedCodec
import FedSecureAggregation
import FedSecureClient
import FedTestSupport
import Testing

/// A malicious server, in process: it relays the participants' messages
/// itself and lies where the consistency check should catch it.
private struct Cohort {
    static let round: UInt64 = 9
    let names: [String]
    let ids: TestIdentities
    let binding: CohortBinding
    var participants: [SecAggParticipant]
    var signed: [SecAggSignedKeys] = []

    /// A cohort of `n` (ids 1...n) with threshold `t` on the complete graph, keys signed.
    init(n: Int, t: Int) throws {
        let names = (1...n).map { "client-\($0)" }
        let ids = TestIdentities(names)
        self.names = names
        self.ids = ids
        var members: [UInt32: String] = [:]
        for (i, name) in names.enumerated() { members[UInt32(i + 1)] = name }
        binding = try CohortBinding(round: Self.round, session: CohortBinding.randomSession(), members: members)
        let parameters = [
            "secagg.n": "\(n)", "secagg.k": "\(n - 1)", "secagg.t": "\(t)", "secagg.bits": "32",
            "secagg.clip": "10", "secagg.w": "100", "secagg.stage-ms": "1000", "secagg.consistency": "on",
            "secagg.cohort": binding.digestHex,
        ]
        participants = try names.enumerated().map { i, name in
            try SecAggParticipant(
                Assignment(
                    kind: .secureTrain, features: .secureAggregation, taskID: UInt64(100 + i), round: Self.round,
                    parameters: parameters),
                identity: ids.client(name))
        }
        signed = try participants.indices.map { try participants[$0].signedKeys() }
    }

    /// The honest roster of participant `id`: the whole cohort, every other member a neighbour.
    func roster(_ id: UInt32) -> SecAggSignedRoster {
        SecAggSignedRoster(
            taskID: UInt64(99 + id), participant: id, session: binding.session,
            cohort: binding.members.keys.sorted().map { .init(id: $0, name: binding.members[$0]!) },
            neighbours: (1...UInt32(names.count)).filter { $0 != id }.map {
                let k = signed[Int($0) - 1]
                return .init(
                    id: $0, encryptionKey: k.keys.encryptionKey, maskingKey: k.keys.maskingKey, signature: k.signature)
            })
    }

    /// Keys, shares and masked inputs, relayed honestly.
    mutating func runToInputs() throws {
        let shares = try participants.indices.map { try participants[$0].shares(forSigned: roster(UInt32($0 + 1))) }
        for i in participants.indices {
            let me = UInt32(i + 1)
            let bundles = shares.enumerated().compactMap { j, s in
                s.bundles.first { $0.participant == me }.map {
                    SealedShares(participant: UInt32(j + 1), sealed: $0.sealed)
                }
            }
            try participants[i].open(SecAggInbox(taskID: UInt64(100 + i), bundles: bundles))
        }
        let base = constantTensors(0, shapes: [[4]])
        for i in participants.indices {
            _ = try participants[i].input(trained: constantTensors(0.1, shapes: [[4]]), base: base, samples: 5)
        }
    }
}

@Suite("A lying server meets the consistency check")
struct LyingServerTests {
    @Test("A substituted key, a forged signature or another cohort in the roster: the client refuses to share")
    func substitutedKeyRefused() throws {
        var cohort = try Cohort(n: 4, t: 3)
        // The server puts its own X25519 key in place of client 1's encryption key (to read the shares sent to 1).
        var swapped = cohort.roster(2)
        swapped.neighbours[0].encryptionKey = ParticipantKeys().publicKeys.encryption
        let e1 = #expect(throws: SecureAggregationError.self) { try cohort.participants[1].shares(forSigned: swapped) }
        #expect("\(e1!)".contains("do not carry its signature"))
        // Re-signed by a key the server made for client 1: not the trusted one.
        let forger = SigningIdentity.generate(name: "client-1")
        swapped.neighbours[0].signature = try forger.sign(
            cohort.binding.keysStatement(
                name: "client-1", encryption: swapped.neighbours[0].encryptionKey,
                masking: swapped.neighbours[0].maskingKey))
        #expect(throws: SecureAggregationError.self) { try cohort.participants[1].shares(forSigned: swapped) }
        // Another cohort (client 4 renamed to a Sybil the server controls): not the one the keys were bound to.
        var sybil = cohort.roster(3)
        sybil.cohort[3].name = "sybil"
        let e2 = #expect(throws: SecureAggregationError.self) { try cohort.participants[2].shares(forSigned: sybil) }
        #expect("\(e2!)".contains("not the one this task was bound to"))
        // The honest roster passes (the refusals above are the lies', not the check's by default).
        _ = try cohort.participants[0].shares(forSigned: cohort.roster(1))
    }

    @Test(
        "A server that tells clients 1-2 that client 1 survived and clients 3-5 that it dropped: the first group refuses to unmask, and no client's two kinds of share are ever revealed"
    )
    func differentSurvivorSetsRefused() throws {
        var cohort = try Cohort(n: 5, t: 3)
        try cohort.runToInputs()
        let view = { (u3: [UInt32], id: Int) in SecAggContributors(taskID: UInt64(100 + id), contributors: u3) }
        let withOne: [UInt32] = [1, 2, 3, 4, 5]
        let withoutOne: [UInt32] = [2, 3, 4, 5]
        // Clients 1-2 sign U3 with 1; clients 3-5 sign U3 without it.
        var signatures: [UInt32: [UInt8]] = [:]
        for i in 0..<5 {
            let u3 = i < 2 ? withOne : withoutOne
            signatures[UInt32(i + 1)] = try cohort.participants[i].sign(view(u3, i)).signature
        }
        let relay = { (signers: [UInt32], id: Int) in
            SecAggSignatures(
                taskID: UInt64(100 + id), signatures: signers.map { .init(signer: $0, signature: signatures[$0]!) })
        }
        var revealed: [SecAggUnmask.Revealed] = []
        // Every signature relayed to client 1: those of 3-5 are of another U3.
        var c1 = cohort.participants[0]
        let e1 = #expect(throws: SecureAggregationError.self) { try c1.unmask(relay([1, 2, 3, 4, 5], 0)) }
        #expect("\(e1!)".contains("survivor sets differ"), "\(e1!)")
        // Only the two valid ones relayed to client 2: fewer than t = 3.
        var c2 = cohort.participants[1]
        let e2 = #expect(throws: SecureAggregationError.self) { try c2.unmask(relay([1, 2], 1)) }
        #expect("\(e2!)".contains("fewer than the threshold 3"), "\(e2!)")
        // Clients 3-5 see three valid signatures of their U3 and reveal: masking-key shares of 1.
        for i in 2..<5 {
            var c = cohort.participants[i]
            revealed += try c.unmask(relay([3, 4, 5], i)).shares
        }
        let ofOne = revealed.filter { $0.owner == 1 }
        #expect(ofOne.count == 3 && ofOne.allSatisfy { $0.kind == .maskingKey })
        // No owner has shares of both kinds revealed.
        for owner in 1...UInt32(5) {
            #expect(Set(revealed.filter { $0.owner == owner }.map(\.kind)).count <= 1, "owner \(owner)")
        }
    }

    @Test("The same U3 for everyone: every client verifies the signatures and reveals")
    func consistentSurvivorSetAccepted() throws {
        var cohort = try Cohort(n: 5, t: 3)
        try cohort.runToInputs()
        let u3: [UInt32] = [1, 2, 3, 4, 5]
        var signed: [SecAggSignatures.Signed] = []
        for i in 0..<5 {
            let s = try cohort.participants[i].sign(SecAggContributors(taskID: UInt64(100 + i), contributors: u3))
            signed.append(.init(signer: UInt32(i + 1), signature: s.signature))
        }
        for i in 0..<5 {
            let unmask = try cohort.participants[i].unmask(
                SecAggSignatures(taskID: UInt64(100 + i), signatures: signed))
            #expect(unmask.shares.count == 4 && unmask.shares.allSatisfy { $0.kind == .selfMaskSeed })
        }
        // A participant signs one U3 only.
        #expect(throws: (any Error).self) {
            try cohort.participants[0].sign(SecAggContributors(taskID: 100, contributors: [1, 2, 3]))
        }
    }

    @Test("An identity signs keys under one cohort digest once: a replayed run of a round is refused")
    func replayedRunRefused() throws {
        let identity = SigningIdentity.generate(name: "client-1")
        let shared = try SecAggIdentity(identity: identity, trusted: TrustedIdentities([identity]))
        let task = { (taskID: UInt64, digest: String) in
            Assignment(
                kind: .secureTrain, taskID: taskID, round: 3,
                parameters: [
                    "secagg.n": "5", "secagg.k": "4", "secagg.t": "3", "secagg.bits": "32", "secagg.clip": "10",
                    "secagg.w": "100", "secagg.consistency": "on", "secagg.cohort": digest,
                ])
        }
        let digest = String(repeating: "5a", count: 32)
        var first = try SecAggParticipant(task(1, digest), identity: shared)
        _ = try first.signedKeys()
        var replay = try SecAggParticipant(task(2, digest), identity: shared)
        let e = #expect(throws: SecAggParticipant.ParameterError.self) { try replay.signedKeys() }
        #expect(e?.description.contains("already signed keys") == true)
        var fresh = try SecAggParticipant(task(3, String(repeating: "5b", count: 32)), identity: shared)
        _ = try fresh.signedKeys()
    }
}
