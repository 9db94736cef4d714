/// The checks of secure aggregation's consistency round (Bonawitz et al.
/// 2017, the active-security version; `Protocol/SPEC.md` section 12.11), as
/// a client makes them before it shares and before it reveals. The server
/// makes the same checks to refuse a bad signature early; a client never
/// relies on the server's.
public enum ConsistencyCheck {
    /// Checks a relayed cohort: it hashes to `digest` (the one this client
    /// signed its keys under), names `name` at `participant`, every member is
    /// trusted, and 2t > n, so that a server cannot gather t signatures on two
    /// different survivor sets from distinct honest members.
    ///
    /// - Throws: ``SecureAggregationError/protocolViolation(_:)`` naming what is wrong.
    public static func verifyCohort(
        _ cohort: CohortBinding, digest: [UInt8], name: String, participant: UInt32, threshold: Int,
        trusted: TrustedIdentities
    ) throws {
        guard cohort.digest == digest else {
            throw SecureAggregationError.protocolViolation("the cohort relayed is not the one this task was bound to")
        }
        guard cohort.members[participant] == name else {
            throw SecureAggregationError.protocolViolation(
                "the cohort names \(cohort.members[participant] ?? "no one") as participant \(participant), not \(name)"
            )
        }
        if let stranger = cohort.members.values.sorted().first(where: { !trusted.contains($0) }) {
            throw SecureAggregationError.protocolViolation("cohort member \(stranger) holds no trusted key")
        }
        guard 2 * threshold > cohort.members.count else {
            throw SecureAggregationError.protocolViolation(
                "threshold \(threshold) in a cohort of \(cohort.members.count): the consistency check needs 2t > n")
        }
    }

    /// Checks member `id`'s signature of its keys `c`, `s`.
    ///
    /// - Throws: ``SecureAggregationError/protocolViolation(_:)`` for an id outside the
    ///   cohort or a signature that does not verify under the member's trusted key.
    public static func verifyKeys(
        _ cohort: CohortBinding, id: UInt32, encryption c: [UInt8], masking s: [UInt8], signature: [UInt8],
        trusted: TrustedIdentities
    ) throws {
        guard let name = cohort.members[id] else {
            throw SecureAggregationError.protocolViolation("participant \(id) is not in the cohort")
        }
        guard trusted.isValid(signature, of: cohort.keysStatement(name: name, encryption: c, masking: s), by: name)
        else {
            throw SecureAggregationError.protocolViolation(
                "the keys of participant \(id) (\(name)) do not carry its signature")
        }
    }

    /// Checks the signatures of U3 (`contributors`) relayed: every one is by
    /// a distinct member of U3 and verifies under its trusted key, and there
    /// are at least `threshold` of them. Returns how many there are.
    ///
    /// - Throws: ``SecureAggregationError/protocolViolation(_:)`` for a signer outside U3
    ///   or the cohort, a signer given twice, a bad signature, or fewer than t.
    public static func verifyContributors(
        _ cohort: CohortBinding, contributors: [UInt32], signatures: [(signer: UInt32, signature: [UInt8])],
        threshold: Int, trusted: TrustedIdentities
    ) throws -> Int {
        let statement = cohort.contributorsStatement(contributors)
        let members = Set(contributors)
        var seen: Set<UInt32> = []
        for (signer, signature) in signatures {
            guard members.contains(signer), let name = cohort.members[signer] else {
                throw SecureAggregationError.protocolViolation("a signature of U3 by \(signer), who is not in U3")
            }
            guard seen.insert(signer).inserted else {
                throw SecureAggregationError.protocolViolation("two signatures of U3 by \(signer)")
            }
            guard trusted.isValid(signature, of: statement, by: name) else {
                throw SecureAggregationError.protocolViolation(
                    "the signature of U3 by \(signer) (\(name)) does not verify: the survivor sets differ")
            }
        }
        guard seen.count >= threshold else {
            throw SecureAggregationError.protocolViolation(
                "\(seen.count) valid signatures of U3, fewer than the threshold \(threshold)")
        }
        return seen.count
    }
}
