import Crypto
import Foundation
import Testing

@testable import FedSecureAggregation

/// `Protocol/vectors/secagg_three_clients.json`: a SecAgg+ round of clients 1,
/// 2 and 3 computed by `generate.py` with Python's `cryptography` package
/// from fixed keys, seeds, Shamir coefficients and nonces. Every value is
/// recomputed here with FedSecureAggregation.
struct ThreeClientVector: Decodable {
    struct Client: Decodable {
        let id: UInt32
        let encryptionPrivateKey: String
        let maskingPrivateKey: String
        let selfMaskSeed: String
        /// "s" (masking key) and "b" (self-mask seed): per 15-byte chunk, c_1 ... c_(t-1) in decimal.
        let shamirCoefficients: [String: [[String]]]
        let encryptionPublicKey: String
        let maskingPublicKey: String
        let input: [UInt32]
        let selfMask: [UInt32]
        let maskedInput: [UInt32]
        let unmask: [Revealed]
    }

    struct Revealed: Decodable {
        let owner: UInt32
        let kind: Int
        let share: String
    }

    struct Pair: Decodable {
        let low: UInt32
        let high: UInt32
        let encryptionSharedSecret: String
        let shareKey: String
        let maskingSharedSecret: String
        let maskSeed: String
        let mask: [UInt32]
    }

    struct Bundle: Decodable {
        let sender: UInt32
        let recipient: UInt32
        let maskingKeyShare: String
        let selfMaskSeedShare: String
        let plaintext: String
        let nonce: String
        let associatedData: String
        let sealed: String
    }

    let round: UInt64
    let threshold: Int
    let ringBits: Int
    let elementCount: Int
    let participants: [UInt32]
    let clients: [Client]
    let pairs: [Pair]
    let bundles: [Bundle]
    let maskedSum: [UInt32]
    let sum: [UInt32]

    static let shared: ThreeClientVector = {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Protocol/vectors/secagg_three_clients.json")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try! decoder.decode(ThreeClientVector.self, from: Data(contentsOf: url))
    }()

    func client(_ id: UInt32) -> Client { clients.first { $0.id == id }! }

    func keys(_ id: UInt32) throws -> ParticipantKeys {
        let c = client(id)
        return ParticipantKeys(
            encryptionKey: try .init(rawRepresentation: bytes(c.encryptionPrivateKey)),
            maskingKey: try .init(rawRepresentation: bytes(c.maskingPrivateKey)))
    }

    func publicKeys(_ id: UInt32) throws -> ParticipantPublicKeys {
        try ParticipantPublicKeys(
            encryption: bytes(client(id).encryptionPublicKey), masking: bytes(client(id).maskingPublicKey))
    }
}

/// The bytes of lowercase hex.
func bytes(_ hex: String) -> [UInt8] {
    let digits = Array(hex.utf8).map { UInt8(($0 <= 57 ? $0 - 48 : $0 - 87)) }
    return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
}

@Suite("Three-client vector of the cryptography")
struct ThreeClientVectorTests {
    let v = ThreeClientVector.shared

    @Test("The vector is the round it says: ids 1-3, t = 2, a 32-bit ring, 5 elements")
    func shape() {
        #expect(v.participants == [1, 2, 3] && v.threshold == 2 && v.ringBits == 32 && v.elementCount == 5)
        #expect(v.clients.count == 3 && v.pairs.count == 3 && v.bundles.count == 6)
        #expect(v.maskedSum != v.sum)
    }

    @Test("X25519 public keys from the fixed private keys")
    func publicKeys() throws {
        for c in v.clients {
            let keys = try v.keys(c.id).publicKeys
            #expect(keys.encryption == bytes(c.encryptionPublicKey), "client \(c.id)")
            #expect(keys.masking == bytes(c.maskingPublicKey), "client \(c.id)")
        }
    }

    @Test("Shared secrets, HKDF share keys and mask seeds, the same from both ends; masks expanded by ChaCha20")
    func pairwise() throws {
        let ring = try MaskRing(bits: v.ringBits)
        for p in v.pairs {
            for (me, peer) in [(p.low, p.high), (p.high, p.low)] {
                let keys = try v.keys(me)
                let peerKeys = try v.publicKeys(peer)
                let encryptionSecret = try keys.encryptionKey.sharedSecretFromKeyAgreement(
                    with: .init(rawRepresentation: peerKeys.encryption))
                let maskingSecret = try keys.maskingKey.sharedSecretFromKeyAgreement(
                    with: .init(rawRepresentation: peerKeys.masking))
                #expect(encryptionSecret.withUnsafeBytes { [UInt8]($0) } == bytes(p.encryptionSharedSecret))
                #expect(maskingSecret.withUnsafeBytes { [UInt8]($0) } == bytes(p.maskingSharedSecret))
                let shareKey = try PairwiseKeys.shareKey(
                    privateKey: keys.encryptionKey, peerPublicKey: peerKeys.encryption, round: v.round, between: me,
                    and: peer)
                #expect(shareKey.withUnsafeBytes { [UInt8]($0) } == bytes(p.shareKey), "\(me) with \(peer)")
                let seed = try PairwiseKeys.maskSeed(
                    privateKey: keys.maskingKey, peerPublicKey: peerKeys.masking, round: v.round, between: me,
                    and: peer)
                #expect(seed.bytes == bytes(p.maskSeed), "\(me) with \(peer)")
                #expect(MaskExpansion.expand(seed, count: v.elementCount, ring: ring) == p.mask)
            }
        }
    }

    /// The share at `x` of the 32-byte `secret` of `owner` under the vector's coefficients (the
    /// polynomials are evaluated at all of the owner's holders: `Shamir.split` wants more holders than coefficients).
    func share(_ secret: [UInt8], of owner: UInt32, coefficients: [[String]], at x: UInt32) throws -> SecretShare {
        let holders = v.participants.filter { $0 != owner }
        var values: [Mersenne127] = []
        for (index, start) in stride(from: 0, to: secret.count, by: SecretShare.chunkByteCount).enumerated() {
            let chunk = secret[start..<min(start + SecretShare.chunkByteCount, secret.count)]
            let value = chunk.reduce(UInt128(0)) { $0 << 8 | UInt128($1) }
            let shares = try Shamir.split(
                Mersenne127(value), coefficients: coefficients[index].map { Mersenne127(UInt128($0)!) },
                at: holders.map { Mersenne127(UInt128($0)) })
            values.append(shares[holders.firstIndex(of: x)!].y)
        }
        return try SecretShare(x: x, secretByteCount: secret.count, values: values)
    }

    @Test("Shamir shares, bundle plaintexts, associated data and ChaCha20-Poly1305 sealing with the fixed nonces")
    func bundles() throws {
        for b in v.bundles {
            let sender = v.client(b.sender)
            let keyShare = try share(
                bytes(sender.maskingPrivateKey), of: b.sender, coefficients: sender.shamirCoefficients["s"]!,
                at: b.recipient)
            let seedShare = try share(
                bytes(sender.selfMaskSeed), of: b.sender, coefficients: sender.shamirCoefficients["b"]!, at: b.recipient
            )
            #expect(keyShare.encoded == bytes(b.maskingKeyShare), "\(b.sender) to \(b.recipient)")
            #expect(seedShare.encoded == bytes(b.selfMaskSeedShare), "\(b.sender) to \(b.recipient)")
            let bundle = try ShareBundle(maskingKeyShare: keyShare, selfMaskSeedShare: seedShare)
            #expect(bundle.encoded == bytes(b.plaintext))
            #expect(
                ShareEncryption.associatedData(round: v.round, sender: b.sender, recipient: b.recipient)
                    == bytes(b.associatedData))
            let key = try PairwiseKeys.shareKey(
                privateKey: v.keys(b.sender).encryptionKey, peerPublicKey: v.publicKeys(b.recipient).encryption,
                round: v.round, between: b.sender, and: b.recipient)
            let sealed = try ShareEncryption.seal(
                bundle, key: key, round: v.round, sender: b.sender, nonce: ChaChaPoly.Nonce(data: bytes(b.nonce)))
            #expect(sealed == bytes(b.sealed), "\(b.sender) to \(b.recipient)")
            // The recipient opens it with the key it derives, and only as from this sender to itself.
            let recipientKey = try PairwiseKeys.shareKey(
                privateKey: v.keys(b.recipient).encryptionKey, peerPublicKey: v.publicKeys(b.sender).encryption,
                round: v.round, between: b.recipient, and: b.sender)
            let opened = try ShareEncryption.open(
                bytes(b.sealed), key: recipientKey, round: v.round, sender: b.sender, recipient: b.recipient)
            #expect(opened == bundle)
            #expect(throws: SecureAggregationError.self) {
                try ShareEncryption.open(
                    bytes(b.sealed), key: recipientKey, round: v.round + 1, sender: b.sender, recipient: b.recipient)
            }
        }
    }

    @Test("Any t = 2 of a client's shares rebuild its masking key and self-mask seed")
    func recovery() throws {
        for c in v.clients {
            let held = v.bundles.filter { $0.sender == c.id }
            let keyShares = try held.map { try SecretShare(encoded: bytes($0.maskingKeyShare)) }
            let seedShares = try held.map { try SecretShare(encoded: bytes($0.selfMaskSeedShare)) }
            #expect(try SecretShare.recover(keyShares, threshold: v.threshold) == bytes(c.maskingPrivateKey))
            #expect(try SecretShare.recover(seedShares, threshold: v.threshold) == bytes(c.selfMaskSeed))
        }
    }

    @Test("Self masks and masked inputs, from the seeds (Masking) and through a Participant's steps")
    func maskedInputs() throws {
        let ring = try MaskRing(bits: v.ringBits)
        for c in v.clients {
            let seed = try MaskSeed(bytes: bytes(c.selfMaskSeed))
            #expect(MaskExpansion.expand(seed, count: v.elementCount, ring: ring) == c.selfMask)
            var seeds: [UInt32: MaskSeed] = [:]
            for p in v.pairs where p.low == c.id || p.high == c.id {
                seeds[p.low == c.id ? p.high : p.low] = try MaskSeed(bytes: bytes(p.maskSeed))
            }
            #expect(
                try Masking.maskedInput(
                    c.input, ring: ring, participant: c.id, selfMaskSeed: seed, pairwiseSeeds: seeds)
                    == c.maskedInput, "client \(c.id)")

            // The client's own path: its shares are drawn afresh, but the bundles sealed to it are the vector's.
            var participant = try Participant(
                round: v.round, threshold: v.threshold, keys: v.keys(c.id), selfMaskSeed: seed)
            let others = v.participants.filter { $0 != c.id }
            var roster: [UInt32: ParticipantPublicKeys] = [:]
            for j in others { roster[j] = try v.publicKeys(j) }
            _ = try participant.share(as: c.id, with: roster)
            try participant.open(
                v.bundles.filter { $0.recipient == c.id }.map { ($0.sender, bytes($0.sealed)) })
            #expect(participant.maskingNeighbours == others)
            #expect(try participant.mask(c.input, ring: ring) == c.maskedInput, "client \(c.id)")
            let revealed = try participant.reveal(survivors: Set(others), contributors: 3)
            #expect(revealed.map(\.owner) == c.unmask.map(\.owner))
            #expect(revealed.allSatisfy(\.selfMaskSeed) && c.unmask.allSatisfy { $0.kind == 1 })
            #expect(revealed.map(\.share.encoded) == c.unmask.map { bytes($0.share) })
        }
    }

    @Test("The server's sum: the masked inputs add to masked_sum; unmasked with the revealed shares, to sum")
    func unmasking() throws {
        let ring = try MaskRing(bits: v.ringBits)
        var total = MaskedSum(ring: ring, count: v.elementCount)
        for c in v.clients { try total.add(maskedInput: c.maskedInput, from: c.id) }
        #expect(total.total == v.maskedSum)
        var seedShares: [UInt32: [SecretShare]] = [:]
        for c in v.clients {
            for r in c.unmask { seedShares[r.owner, default: []].append(try SecretShare(encoded: bytes(r.share))) }
        }
        var maskingKeys: [UInt32: [UInt8]] = [:]
        var neighbours: [UInt32: [UInt32]] = [:]
        for c in v.clients {
            maskingKeys[c.id] = bytes(c.maskingPublicKey)
            neighbours[c.id] = v.participants.filter { $0 != c.id }
        }
        let unmasking = CohortUnmasking(
            round: v.round, threshold: v.threshold, maskingKeys: maskingKeys, maskingNeighbours: neighbours)
        #expect(
            unmasking.isComplete(
                contributors: Set(v.participants), selfMaskSeedShares: seedShares, maskingKeyShares: [:]))
        try unmasking.unmask(&total, selfMaskSeedShares: seedShares, maskingKeyShares: [:])
        #expect(total.total == v.sum)
        var plain = [UInt32](repeating: 0, count: v.elementCount)
        for c in v.clients { try ring.add(c.input, to: &plain) }
        #expect(plain == v.sum)
    }
}
