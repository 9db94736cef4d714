import Crypto
import Foundation

/// A 256-bit seed from which a mask is expanded (``MaskExpansion``): a
/// pairwise seed s_ij agreed by two participants, or a participant's own
/// self-mask seed b_i.
///
/// Invariant: `bytes.count == 32`.
public struct MaskSeed: Hashable, Sendable {
    /// The seed's length in bytes.
    public static let byteCount = 32

    /// The seed's 32 bytes.
    public let bytes: [UInt8]

    /// The seed with these bytes.
    ///
    /// - Throws: ``SecureAggregationError/wrongKeyLength(expected:got:)`` unless there are 32.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == Self.byteCount else {
            throw SecureAggregationError.wrongKeyLength(expected: Self.byteCount, got: bytes.count)
        }
        self.bytes = bytes
    }

    /// A seed drawn from `generator` (tests); protocol seeds use ``random()``.
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> MaskSeed {
        try! MaskSeed(bytes: (0..<byteCount).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    /// A seed from the system's CSPRNG.
    public static func random() -> MaskSeed {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }
}

/// A participant's two X25519 key pairs for one aggregation, as in Bonawitz
/// et al. 2017: the encryption key c agrees the keys that protect the shares
/// it sends and receives, the masking key s agrees its pairwise mask seeds.
/// They are separate because s is Shamir-shared: when a participant drops
/// out, its neighbours reveal s so that the server can remove its pairwise
/// masks, and that must not also open the shares relayed to and from it.
///
/// The private keys never leave the participant except as shares of s.
public struct ParticipantKeys: Sendable {
    /// c: agrees share-encryption keys.
    public let encryptionKey: Curve25519.KeyAgreement.PrivateKey
    /// s: agrees pairwise mask seeds; shared among neighbours.
    public let maskingKey: Curve25519.KeyAgreement.PrivateKey

    /// Fresh key pairs from the system's CSPRNG.
    public init() {
        self.init(encryptionKey: .init(), maskingKey: .init())
    }

    /// These key pairs (a reconstructed masking key, or fixed test vectors).
    public init(encryptionKey: Curve25519.KeyAgreement.PrivateKey, maskingKey: Curve25519.KeyAgreement.PrivateKey) {
        self.encryptionKey = encryptionKey
        self.maskingKey = maskingKey
    }

    /// The public halves, advertised to the other participants through the server.
    public var publicKeys: ParticipantPublicKeys {
        ParticipantPublicKeys(
            unchecked: [UInt8](encryptionKey.publicKey.rawRepresentation),
            masking: [UInt8](maskingKey.publicKey.rawRepresentation))
    }
}

/// A participant's advertised public keys, 32 raw bytes each (RFC 7748).
public struct ParticipantPublicKeys: Hashable, Sendable {
    /// c's public key.
    public let encryption: [UInt8]
    /// s's public key.
    public let masking: [UInt8]

    /// Public keys from their raw bytes.
    ///
    /// - Throws: ``SecureAggregationError/wrongKeyLength(expected:got:)`` unless each is 32 bytes.
    public init(encryption: [UInt8], masking: [UInt8]) throws {
        for key in [encryption, masking] where key.count != 32 {
            throw SecureAggregationError.wrongKeyLength(expected: 32, got: key.count)
        }
        self.init(unchecked: encryption, masking: masking)
    }

    init(unchecked encryption: [UInt8], masking: [UInt8]) {
        self.encryption = encryption
        self.masking = masking
    }
}

/// The keys two participants derive from an X25519 agreement with HKDF-SHA256
/// (RFC 5869). Both sides get the same key: the derivation's info names the
/// pair as (smaller id, larger id), the round and the key's purpose, so keys
/// of different rounds, pairs or purposes are independent.
///
/// Info layout: purpose label (ASCII), round (UInt64), smaller id, larger id
/// (UInt32), all big-endian; salt: "swift-federated secagg v1".
public enum PairwiseKeys {
    static let salt = Array("swift-federated secagg v1".utf8)

    /// The pairwise mask seed s_ij, from i's masking key and j's masking public key.
    ///
    /// - Throws: ``SecureAggregationError/invalidParticipant(_:)`` when i == j or either is 0,
    ///   ``SecureAggregationError/invalidPublicKey`` for a key that does not agree.
    public static func maskSeed(
        privateKey: Curve25519.KeyAgreement.PrivateKey, peerPublicKey: [UInt8], round: UInt64,
        between i: UInt32, and j: UInt32
    ) throws -> MaskSeed {
        let key = try derive(privateKey, peerPublicKey, "mask seed", round: round, i, j)
        return try MaskSeed(bytes: key.withUnsafeBytes { [UInt8]($0) })
    }

    /// The AEAD key under which i and j encrypt shares to each other, from i's
    /// encryption key and j's encryption public key.
    ///
    /// - Throws: as ``maskSeed(privateKey:peerPublicKey:round:between:and:)``.
    public static func shareKey(
        privateKey: Curve25519.KeyAgreement.PrivateKey, peerPublicKey: [UInt8], round: UInt64,
        between i: UInt32, and j: UInt32
    ) throws -> SymmetricKey {
        try derive(privateKey, peerPublicKey, "share key", round: round, i, j)
    }

    static func derive(
        _ privateKey: Curve25519.KeyAgreement.PrivateKey, _ peerPublicKey: [UInt8], _ purpose: String,
        round: UInt64, _ i: UInt32, _ j: UInt32
    ) throws -> SymmetricKey {
        guard i != 0 else { throw SecureAggregationError.invalidParticipant(i) }
        guard j != 0, j != i else { throw SecureAggregationError.invalidParticipant(j) }
        let shared: SharedSecret
        do {
            let peer = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: peerPublicKey)
            shared = try privateKey.sharedSecretFromKeyAgreement(with: peer)
        } catch {
            throw SecureAggregationError.invalidPublicKey
        }
        // swift-crypto does not refuse the all-zero secret of a low-order point (RFC 7748, section 6.1).
        guard shared.withUnsafeBytes({ $0.reduce(0, |) }) != 0 else { throw SecureAggregationError.invalidPublicKey }
        var info = Array(purpose.utf8)
        info.appendBigEndian(round)
        info.appendBigEndian(min(i, j))
        info.appendBigEndian(max(i, j))
        return shared.hkdfDerivedSymmetricKey(using: SHA256.self, salt: salt, sharedInfo: info, outputByteCount: 32)
    }
}
