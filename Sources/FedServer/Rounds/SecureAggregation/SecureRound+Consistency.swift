import FedCodec
import FedSecureAggregation

/// The consistency check's cohort and trusted keys for one secure round.
struct SecureRoundIdentities: Sendable {
    let cohort: CohortBinding
    let trusted: TrustedIdentities
}

/// The consistency check (Bonawitz et al. 2017's active-security version,
/// `Protocol/SPEC.md` section 12.11): keys advertised signed, the cohort and
/// the signatures relayed with the roster, and a stage between input and
/// unmask in which every survivor signs U3. The server verifies every
/// signature to refuse a bad one early; the clients verify them again.
extension SecureRound {
    /// `roster` with the cohort, the session and each neighbour's signature of its keys.
    func signedRoster(_ roster: SecAggRoster) -> SecAggSignedRoster {
        let cohort = identities!.cohort
        return SecAggSignedRoster(
            taskID: roster.taskID, participant: roster.participant, session: cohort.session,
            cohort: cohort.members.keys.sorted().map { SecAggSignedRoster.Member(id: $0, name: cohort.members[$0]!) },
            neighbours: roster.neighbours.map {
                SecAggSignedRoster.Neighbour(
                    id: $0.id, encryptionKey: $0.encryptionKey, maskingKey: $0.maskingKey,
                    signature: keySignatures[$0.id]!)
            })
    }

    mutating func advertiseSigned(_ m: SecAggSignedKeys, _ id: UInt32, _ answer: @escaping Answer) -> Outcome {
        guard let identities else {
            answer(
                Self.refusal(.unexpectedMessage, "this round does not run the consistency check: send SECAGG_KEYS"))
            return .wait
        }
        guard stage == .keys else { return outOfStage("SECAGG_SIGNED_KEYS", answer) }
        do {
            try ConsistencyCheck.verifyKeys(
                identities.cohort, id: id, encryption: m.keys.encryptionKey, masking: m.keys.maskingKey,
                signature: m.signature, trusted: identities.trusted)
        } catch {
            answer(Self.refusal(.unauthorized, "\(error)"))
            return .wait
        }
        // A retry keeps the first signature (the keys must be the same: `advertise` checks).
        if keyMessages[id] == nil { keySignatures[id] = m.signature }
        return advertise(m.keys, id, answer)
    }

    mutating func signContributors(_ m: SecAggConsistency, _ id: UInt32, _ answer: @escaping Answer) -> Outcome {
        guard let identities else {
            answer(Self.refusal(.unexpectedMessage, "this round does not run the consistency check"))
            return .wait
        }
        guard stage == .consistency, contributors.contains(id) else { return outOfStage("SECAGG_CONSISTENCY", answer) }
        if consistencySignatures[id] == nil {
            let name = identities.cohort.members[id] ?? ""
            let statement = identities.cohort.contributorsStatement(contributors.sorted())
            guard identities.trusted.isValid(m.signature, of: statement, by: name) else {
                answer(
                    Self.refusal(
                        .unauthorized, "the signature of U3 by participant \(id) (\(name)) does not verify"))
                return .wait
            }
            consistencySignatures[id] = m.signature
        }
        hold(id, answer)
        return consistencySignatures.count == contributors.count ? closeConsistency() : .wait
    }

    /// The consistency stage's timeout, or every survivor signed: at least t
    /// signatures are relayed to the signers, or the round is abandoned.
    mutating func closeConsistency() -> Outcome {
        guard stage == .consistency else { return .wait }
        stage = .unmask
        let answers = waiting
        waiting = [:]
        if consistencySignatures.count < threshold {
            refuseAll(answers, "\(consistencySignatures.count) survivors signed U3, fewer than t = \(threshold)")
            return .abandon(
                "\(consistencySignatures.count) survivors signed U3; the consistency check needs t = \(threshold)")
        }
        let signed = consistencySignatures.keys.sorted().map {
            SecAggSignatures.Signed(signer: $0, signature: consistencySignatures[$0]!)
        }
        for (id, pending) in answers {
            let message = SecAggSignatures(taskID: rosters[id]!.taskID, signatures: signed)
            for a in pending { a(.success(.other(AnyProtocolMessage(message)))) }
        }
        return .wait
    }
}
