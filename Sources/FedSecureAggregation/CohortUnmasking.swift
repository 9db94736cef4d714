import Crypto

/// The server's last step of a SecAgg+ round: from the shares the answering
/// participants revealed, rebuild each contributor's self-mask seed and each
/// dropped participant's masking key, and take their masks out of the sum.
///
/// The participants are those that shared keys (U2); a participant's masking
/// neighbours are its neighbours in U2 (the senders of its inbox).
/// Contributors (U3, the inputs in the sum) have their self-masks removed;
/// every other participant of U2 has dropped, and its pairwise masks with the
/// contributors among its masking neighbours are removed. ``MaskedSum``
/// refuses to remove both kinds of mask for one participant.
public struct CohortUnmasking: Sendable {
    /// The aggregation's round.
    public let round: UInt64
    /// t.
    public let threshold: Int
    /// Masking public keys (s) of every participant of U2.
    public let maskingKeys: [UInt32: [UInt8]]
    /// Each participant of U2's masking neighbours.
    public let maskingNeighbours: [UInt32: [UInt32]]

    public init(
        round: UInt64, threshold: Int, maskingKeys: [UInt32: [UInt8]], maskingNeighbours: [UInt32: [UInt32]]
    ) {
        self.round = round
        self.threshold = threshold
        self.maskingKeys = maskingKeys
        self.maskingNeighbours = maskingNeighbours
    }

    /// Whether the shares at hand rebuild every secret the sum needs: at least
    /// t self-mask seed shares of each contributor, t masking-key shares of
    /// each dropped participant that masked against a contributor.
    public func isComplete(
        contributors: Set<UInt32>, selfMaskSeedShares: [UInt32: [SecretShare]],
        maskingKeyShares: [UInt32: [SecretShare]]
    ) -> Bool {
        for u in contributors where (selfMaskSeedShares[u]?.count ?? 0) < threshold { return false }
        for d in dropped(contributors) where (maskingKeyShares[d]?.count ?? 0) < threshold { return false }
        return true
    }

    /// The participants of U2 whose masks stay in the sum unless removed:
    /// those not contributing that masked against at least one contributor.
    public func dropped(_ contributors: Set<UInt32>) -> [UInt32] {
        maskingNeighbours.keys.filter { d in
            !contributors.contains(d) && maskingNeighbours[d]!.contains(where: contributors.contains)
        }.sorted()
    }

    /// Removes every mask from `sum`, leaving the sum of the contributors' inputs.
    ///
    /// - Throws: ``SecretSharingError`` when a secret cannot be rebuilt (too few or
    ///   inconsistent shares); ``SecureAggregationError/protocolViolation(_:)`` when a
    ///   rebuilt masking key is not the one its owner advertised; the errors of
    ///   ``MaskedSum``.
    public func unmask(
        _ sum: inout MaskedSum, selfMaskSeedShares: [UInt32: [SecretShare]], maskingKeyShares: [UInt32: [SecretShare]]
    ) throws {
        let contributors = sum.contributors
        for u in contributors.sorted() {
            let seed = try SecretShare.recover(selfMaskSeedShares[u] ?? [], threshold: threshold)
            try sum.removeSelfMask(seed: MaskSeed(bytes: seed), of: u)
        }
        for d in dropped(contributors) {
            let raw = try SecretShare.recover(maskingKeyShares[d] ?? [], threshold: threshold)
            let key: Curve25519.KeyAgreement.PrivateKey
            do {
                key = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: raw)
            } catch {
                throw SecureAggregationError.protocolViolation("the masking key rebuilt for \(d) is not a key")
            }
            guard [UInt8](key.publicKey.rawRepresentation) == maskingKeys[d] else {
                throw SecureAggregationError.protocolViolation(
                    "the masking key rebuilt for \(d) is not the one it advertised")
            }
            var keys: [UInt32: [UInt8]] = [:]
            for j in maskingNeighbours[d]! { keys[j] = maskingKeys[j] }
            try sum.removePairwiseMasks(ofDropped: d, maskingKey: key, neighbourMaskingKeys: keys, round: round)
        }
    }
}
