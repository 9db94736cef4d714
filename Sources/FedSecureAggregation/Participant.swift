import Crypto

/// One client's side of one SecAgg+ aggregation (Bonawitz et al. 2017; Bell
/// et al. 2020), step by step, in the order the protocol runs them:
///
/// 1. ``publicKeys``: advertise c and s.
/// 2. ``share(as:with:)``: given its id and its neighbours' keys, Shamir-share
///    s and a fresh self-mask seed b among the neighbours (threshold t) and
///    seal each neighbour's pair of shares to it.
/// 3. ``open(_:)``: open the bundles sealed to it; their senders are the
///    neighbours it masks against.
/// 4. ``mask(_:ring:)``: y = x + PRG(b) ± PRG(s_ij) for each sender j.
/// 5. ``reveal(survivors:contributors:)``: for each sender, its share of b
///    if the sender's input arrived, else its share of s. Once.
///
/// Invariants: the private keys and b never leave this value except as
/// shares; for any one neighbour, at most one kind of share is revealed, and
/// ``reveal(survivors:contributors:)`` answers once; each step runs once, in order.
public struct Participant: Sendable {
    /// The aggregation's round (bound into every derived key and sealed bundle).
    public let round: UInt64
    /// t: shares needed to rebuild a secret.
    public let threshold: Int
    private let keys: ParticipantKeys
    private let selfMaskSeed: MaskSeed
    private var stage = Stage.advertised
    private var id: UInt32 = 0
    private var roster: [UInt32: ParticipantPublicKeys] = [:]
    /// The shares the neighbours sealed to this participant, by sender.
    private var held: [UInt32: ShareBundle] = [:]

    private enum Stage { case advertised, shared, opened, masked, revealed }

    /// A participant with fresh keys and seed from the system's CSPRNG.
    ///
    /// - Throws: ``SecureAggregationError/protocolViolation(_:)`` for a threshold below 1.
    public init(round: UInt64, threshold: Int) throws {
        try self.init(round: round, threshold: threshold, keys: ParticipantKeys(), selfMaskSeed: .random())
    }

    /// A participant with these keys and seed (test vectors).
    public init(round: UInt64, threshold: Int, keys: ParticipantKeys, selfMaskSeed: MaskSeed) throws {
        guard threshold >= 1 else { throw SecureAggregationError.protocolViolation("threshold \(threshold) below 1") }
        self.round = round
        self.threshold = threshold
        self.keys = keys
        self.selfMaskSeed = selfMaskSeed
    }

    /// The public keys to advertise.
    public var publicKeys: ParticipantPublicKeys { keys.publicKeys }

    /// This participant's id once ``share(as:with:)`` ran (0 before).
    public var participant: UInt32 { id }

    /// The sealed bundles for `neighbours` (recipient id, ciphertext), recipients ascending.
    ///
    /// - Throws: ``SecureAggregationError/protocolViolation(_:)`` when called twice, when
    ///   there are fewer than t neighbours (fewer than t holders could never rebuild a
    ///   secret) or the roster names this participant; the errors of key agreement.
    public mutating func share<G: RandomNumberGenerator>(
        as id: UInt32, with neighbours: [UInt32: ParticipantPublicKeys], using generator: inout G
    ) throws -> [(recipient: UInt32, sealed: [UInt8])] {
        guard stage == .advertised else { throw SecureAggregationError.protocolViolation("shares already made") }
        guard id != 0, neighbours[id] == nil, neighbours[0] == nil else {
            throw SecureAggregationError.invalidParticipant(id)
        }
        guard neighbours.count >= threshold else {
            throw SecureAggregationError.protocolViolation(
                "\(neighbours.count) neighbours, fewer than the threshold \(threshold)")
        }
        let recipients = neighbours.keys.sorted()
        let keyShares = try SecretShare.split(
            [UInt8](keys.maskingKey.rawRepresentation), threshold: threshold, at: recipients, using: &generator)
        let seedShares = try SecretShare.split(
            selfMaskSeed.bytes, threshold: threshold, at: recipients, using: &generator)
        var out: [(recipient: UInt32, sealed: [UInt8])] = []
        for (index, recipient) in recipients.enumerated() {
            let key = try PairwiseKeys.shareKey(
                privateKey: keys.encryptionKey, peerPublicKey: neighbours[recipient]!.encryption, round: round,
                between: id, and: recipient)
            let bundle = try ShareBundle(maskingKeyShare: keyShares[index], selfMaskSeedShare: seedShares[index])
            out.append((recipient, try ShareEncryption.seal(bundle, key: key, round: round, sender: id)))
        }
        self.id = id
        self.roster = neighbours
        stage = .shared
        return out
    }

    /// ``share(as:with:using:)`` with the system's CSPRNG for the sharing polynomials.
    public mutating func share(as id: UInt32, with neighbours: [UInt32: ParticipantPublicKeys]) throws
        -> [(recipient: UInt32, sealed: [UInt8])]
    {
        var generator = SystemRandomNumberGenerator()
        return try share(as: id, with: neighbours, using: &generator)
    }

    /// Opens the bundles sealed to this participant (sender id, ciphertext).
    ///
    /// - Throws: ``SecureAggregationError/protocolViolation(_:)`` out of order, for a
    ///   sender not on the roster or given twice; ``SecureAggregationError/authenticationFailed``
    ///   for a bundle that does not open.
    public mutating func open(_ inbox: [(sender: UInt32, sealed: [UInt8])]) throws {
        guard stage == .shared else { throw SecureAggregationError.protocolViolation("inbox out of order") }
        var held: [UInt32: ShareBundle] = [:]
        for (sender, sealed) in inbox {
            guard let peer = roster[sender] else {
                throw SecureAggregationError.protocolViolation("a bundle from \(sender), not a neighbour")
            }
            guard held[sender] == nil else {
                throw SecureAggregationError.protocolViolation("two bundles from \(sender)")
            }
            let key = try PairwiseKeys.shareKey(
                privateKey: keys.encryptionKey, peerPublicKey: peer.encryption, round: round, between: id, and: sender)
            held[sender] = try ShareEncryption.open(sealed, key: key, round: round, sender: sender, recipient: id)
        }
        self.held = held
        stage = .opened
    }

    /// The neighbours whose bundles arrived: those this participant masks against.
    public var maskingNeighbours: [UInt32] { held.keys.sorted() }

    /// `input` (elements of `ring`) masked with b and the pairwise seeds of ``maskingNeighbours``.
    ///
    /// - Throws: ``SecureAggregationError/protocolViolation(_:)`` out of order; the errors
    ///   of key agreement.
    public mutating func mask(_ input: [UInt32], ring: MaskRing) throws -> [UInt32] {
        guard stage == .opened else { throw SecureAggregationError.protocolViolation("input out of order") }
        var seeds: [UInt32: MaskSeed] = [:]
        for j in held.keys {
            seeds[j] = try PairwiseKeys.maskSeed(
                privateKey: keys.maskingKey, peerPublicKey: roster[j]!.masking, round: round, between: id, and: j)
        }
        let masked = try Masking.maskedInput(
            input, ring: ring, participant: id, selfMaskSeed: selfMaskSeed, pairwiseSeeds: seeds)
        stage = .masked
        return masked
    }

    /// What this participant reveals, once: for each masking neighbour, its
    /// share of the neighbour's self-mask seed if the neighbour is in
    /// `survivors`, else its share of the neighbour's masking key.
    ///
    /// - Throws: ``SecureAggregationError/protocolViolation(_:)`` when called before
    ///   masking or a second time, when `survivors` names someone who is not a masking
    ///   neighbour, or when `contributors` is below t (the sum of fewer than t inputs
    ///   is not to be unmasked).
    public mutating func reveal(survivors: Set<UInt32>, contributors: Int) throws -> [(
        owner: UInt32, selfMaskSeed: Bool, share: SecretShare
    )] {
        guard stage == .masked else {
            throw SecureAggregationError.protocolViolation(
                stage == .revealed ? "shares were already revealed" : "unmask out of order")
        }
        guard contributors >= threshold else {
            throw SecureAggregationError.protocolViolation(
                "\(contributors) inputs in the sum, fewer than the threshold \(threshold)")
        }
        for s in survivors where held[s] == nil {
            throw SecureAggregationError.protocolViolation("survivor \(s) is not a masking neighbour")
        }
        stage = .revealed
        return held.keys.sorted().map { owner in
            let bundle = held[owner]!
            return survivors.contains(owner)
                ? (owner, true, bundle.selfMaskSeedShare) : (owner, false, bundle.maskingKeyShare)
        }
    }
}
