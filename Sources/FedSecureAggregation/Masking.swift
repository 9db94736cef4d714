import Crypto

/// A participant's masked input (Bonawitz et al. 2017, with Bell et al.
/// 2020's neighbourhoods): for participant i with input x_i, self-mask seed
/// b_i and pairwise seeds s_ij with each neighbour j,
///
///     y_i = x_i + PRG(b_i) + Σ_{j > i} PRG(s_ij) − Σ_{j < i} PRG(s_ij)   (mod 2^b)
///
/// so that in a sum over a set of participants closed under neighbourhood
/// every pairwise mask appears once with each sign and cancels. PRG is
/// ``MaskExpansion``.
public enum Masking {
    /// +1 if participant i adds the mask it shares with j (j > i), −1 if it subtracts it.
    public static func pairwiseSign(of i: UInt32, toward j: UInt32) -> Int { j > i ? 1 : -1 }

    /// y_i for `input` (elements below 2^b) of `participant` i.
    ///
    /// - Throws: ``SecureAggregationError/invalidParticipant(_:)`` if `pairwiseSeeds`
    ///   names i itself or 0; ``SecureAggregationError/lengthMismatch(expected:got:)``
    ///   cannot happen (masks are expanded to the input's length).
    public static func maskedInput(
        _ input: [UInt32], ring: MaskRing, participant i: UInt32, selfMaskSeed: MaskSeed,
        pairwiseSeeds: [UInt32: MaskSeed]
    ) throws -> [UInt32] {
        var masked = input.map(ring.reduce)
        MaskExpansion.apply(selfMaskSeed, to: &masked, ring: ring, adding: true)
        for (j, seed) in pairwiseSeeds {
            guard j != i, j != 0 else { throw SecureAggregationError.invalidParticipant(j) }
            MaskExpansion.apply(seed, to: &masked, ring: ring, adding: pairwiseSign(of: i, toward: j) > 0)
        }
        return masked
    }
}

/// The server's side: the sum of the masked inputs that arrived, from which
/// it removes the self-masks of the participants whose inputs are in the sum
/// and the pairwise masks that the dropped participants share with them.
/// What remains is the sum of the inputs modulo 2^b.
///
/// Invariant: a participant's self-mask and its pairwise masks are never
/// both removed, since removing both is exactly what would unmask one input:
/// self-masks only of contributors, pairwise masks only of non-contributors,
/// and no input is added after a mask has been removed.
public struct MaskedSum: Sendable {
    /// The ring the inputs are in.
    public let ring: MaskRing
    /// The inputs' length.
    public let count: Int
    /// The participants whose masked inputs are in the sum.
    public private(set) var contributors: Set<UInt32> = []
    /// The running total; the sum of the inputs once every mask is removed.
    public private(set) var total: [UInt32]
    private var unmaskingStarted = false
    private var selfMasksRemoved: Set<UInt32> = []
    private var pairwiseMasksRemoved: Set<[UInt32]> = []

    /// An empty sum of vectors of `count` elements of `ring`.
    public init(ring: MaskRing, count: Int) {
        self.ring = ring
        self.count = count
        self.total = [UInt32](repeating: 0, count: count)
    }

    /// Adds `participant`'s masked input.
    ///
    /// - Throws: ``SecureAggregationError/invalidParticipant(_:)`` for a participant
    ///   already added or an input after unmasking began;
    ///   ``SecureAggregationError/lengthMismatch(expected:got:)``.
    public mutating func add(maskedInput: [UInt32], from participant: UInt32) throws {
        guard !unmaskingStarted, !contributors.contains(participant) else {
            throw SecureAggregationError.invalidParticipant(participant)
        }
        try ring.add(maskedInput.map(ring.reduce), to: &total)
        contributors.insert(participant)
    }

    /// Removes the self-mask PRG(b) of `participant`, a contributor, given its
    /// seed b (reconstructed from its neighbours' shares).
    ///
    /// - Throws: ``SecureAggregationError/invalidParticipant(_:)`` unless `participant` is a
    ///   contributor whose self-mask has not been removed yet.
    public mutating func removeSelfMask(seed: MaskSeed, of participant: UInt32) throws {
        guard contributors.contains(participant), selfMasksRemoved.insert(participant).inserted else {
            throw SecureAggregationError.invalidParticipant(participant)
        }
        unmaskingStarted = true
        MaskExpansion.apply(seed, to: &total, ring: ring, adding: false)
    }

    /// Removes the pairwise mask that contributor `survivor` applied for its
    /// neighbour `dropped`, whose input is not in the sum, given their seed.
    ///
    /// - Throws: ``SecureAggregationError/invalidParticipant(_:)`` unless `survivor`
    ///   is a contributor and `dropped` is not, and this pair's mask has not been removed yet.
    public mutating func removePairwiseMask(seed: MaskSeed, survivor: UInt32, dropped: UInt32) throws {
        guard contributors.contains(survivor) else { throw SecureAggregationError.invalidParticipant(survivor) }
        guard !contributors.contains(dropped), dropped != 0,
            pairwiseMasksRemoved.insert([survivor, dropped]).inserted
        else {
            throw SecureAggregationError.invalidParticipant(dropped)
        }
        unmaskingStarted = true
        // The survivor added the mask if dropped > survivor: take it away.
        MaskExpansion.apply(
            seed, to: &total, ring: ring, adding: Masking.pairwiseSign(of: survivor, toward: dropped) < 0)
    }

    /// Removes every pairwise mask of `dropped` from the contributors among its
    /// neighbours, given its masking private key (reconstructed from shares)
    /// and the neighbours' masking public keys.
    ///
    /// - Throws: as ``removePairwiseMask(seed:survivor:dropped:)`` and
    ///   ``PairwiseKeys/maskSeed(privateKey:peerPublicKey:round:between:and:)``.
    public mutating func removePairwiseMasks(
        ofDropped dropped: UInt32, maskingKey: Curve25519.KeyAgreement.PrivateKey,
        neighbourMaskingKeys: [UInt32: [UInt8]], round: UInt64
    ) throws {
        for (survivor, publicKey) in neighbourMaskingKeys.sorted(by: { $0.key < $1.key })
        where contributors.contains(survivor) {
            let seed = try PairwiseKeys.maskSeed(
                privateKey: maskingKey, peerPublicKey: publicKey, round: round, between: dropped, and: survivor)
            try removePairwiseMask(seed: seed, survivor: survivor, dropped: dropped)
        }
    }
}
