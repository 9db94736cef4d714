import FedClient
import FedCodec
import FedSecureAggregation

/// The consistency check (`secagg.consistency = on`, `Protocol/SPEC.md`
/// section 12.11): keys signed and bound to the round's cohort, the cohort
/// and every neighbour's signature verified before sharing, U3 signed, and at
/// least t signatures of the same U3 verified before revealing anything.
extension SecAggParticipant {
    /// What a participant with a signing identity holds for the check.
    struct ConsistencyState: Sendable {
        let identity: SecAggIdentity
        /// The cohort digest of the assignment (`secagg.cohort`).
        let digest: [UInt8]
        /// The cohort, once the signed roster verified.
        var cohort: CohortBinding?
        /// U3, once signed.
        var contributors: [UInt32]?
    }

    /// The state of `assignment` for `identity`, or nil for a round without the check.
    ///
    /// - Throws: ``ParameterError`` when the round and the client disagree on the
    ///   check: a client with an identity takes part only in rounds that run it.
    static func consistencyState(_ assignment: Assignment, identity: SecAggIdentity?) throws -> ConsistencyState? {
        let on = assignment.parameters["secagg.consistency"] == "on"
        guard let identity else {
            if on {
                throw ParameterError(
                    description:
                        "the round runs the consistency check, which needs a signing identity (fed client --secagg-identity FILE --secagg-trusted FILE)"
                )
            }
            return nil
        }
        guard on else {
            throw ParameterError(
                description:
                    "this client holds a signing identity and takes part only in secure rounds with the consistency check (fed server --secagg consistency=on); without it a malicious server could learn its update"
            )
        }
        guard let hex = assignment.parameters["secagg.cohort"], let digest = Self.bytes(hex: hex), digest.count == 32
        else {
            throw ParameterError(description: "the task's parameter secagg.cohort is missing or not 64 hex digits")
        }
        return ConsistencyState(identity: identity, digest: digest)
    }

    public mutating func signedKeys() throws -> SecAggSignedKeys {
        guard let state = consistency else { throw ConsistencyCheckUnsupported() }
        guard state.identity.claim(state.digest) else {
            throw ParameterError(description: "this client already signed keys for this cohort and run of the round")
        }
        let keys = participant.publicKeys
        let statement = CohortBinding.keysStatement(
            digest: state.digest, name: state.identity.identity.name, encryption: keys.encryption,
            masking: keys.masking)
        return SecAggSignedKeys(
            keys: SecAggKeys(taskID: taskID, encryptionKey: keys.encryption, maskingKey: keys.masking),
            signature: try state.identity.identity.sign(statement))
    }

    public mutating func shares(forSigned roster: SecAggSignedRoster) throws -> SecAggShares {
        guard var state = consistency, state.cohort == nil else { throw ConsistencyCheckUnsupported() }
        guard roster.taskID == taskID else { throw ParameterError(description: "a roster of another task") }
        let cohort = try CohortBinding(
            round: participant.round, session: roster.session,
            members: Dictionary(uniqueKeysWithValues: roster.cohort.map { ($0.id, $0.name) }))
        try ConsistencyCheck.verifyCohort(
            cohort, digest: state.digest, name: state.identity.identity.name, participant: roster.participant,
            threshold: participant.threshold, trusted: state.identity.trusted)
        for n in roster.neighbours {
            try ConsistencyCheck.verifyKeys(
                cohort, id: n.id, encryption: n.encryptionKey, masking: n.maskingKey, signature: n.signature,
                trusted: state.identity.trusted)
        }
        state.cohort = cohort
        consistency = state
        return try shares(for: roster.roster)
    }

    public mutating func sign(_ contributors: SecAggContributors) throws -> SecAggConsistency {
        guard var state = consistency, let cohort = state.cohort, state.contributors == nil else {
            throw ConsistencyCheckUnsupported()
        }
        guard contributors.taskID == taskID else { throw ParameterError(description: "a U3 of another task") }
        let u3 = contributors.contributors
        guard u3.contains(participant.participant), u3.allSatisfy({ cohort.members[$0] != nil }) else {
            throw ParameterError(description: "U3 must hold this participant and members of the cohort only")
        }
        guard u3.count >= participant.threshold else {
            throw ParameterError(description: "\(u3.count) inputs in U3, fewer than the threshold")
        }
        state.contributors = u3
        consistency = state
        return SecAggConsistency(
            taskID: taskID, signature: try state.identity.identity.sign(cohort.contributorsStatement(u3)))
    }

    public mutating func unmask(_ signatures: SecAggSignatures) throws -> SecAggUnmask {
        guard let state = consistency, let cohort = state.cohort, let u3 = state.contributors else {
            throw ConsistencyCheckUnsupported()
        }
        guard signatures.taskID == taskID else { throw ParameterError(description: "signatures of another task") }
        _ = try ConsistencyCheck.verifyContributors(
            cohort, contributors: u3, signatures: signatures.signatures.map { ($0.signer, $0.signature) },
            threshold: participant.threshold, trusted: state.identity.trusted)
        let survivors = Set(participant.maskingNeighbours).intersection(u3)
        return try reveal(survivors: survivors, contributors: u3.count)
    }

    static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(byte)
        }
        return out
    }
}
