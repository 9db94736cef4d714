import Crypto
import Foundation

/// What participant i sends participant j, through the server, in the
/// share-keys round: j's shares of i's masking key s_i and of i's self-mask
/// seed b_i. Both shares sit at j's x-coordinate (j's id).
public struct ShareBundle: Hashable, Sendable {
    /// The recipient's share of the sender's masking private key (32 bytes shared).
    public let maskingKeyShare: SecretShare
    /// The recipient's share of the sender's self-mask seed (32 bytes shared).
    public let selfMaskSeedShare: SecretShare

    /// A bundle of two shares at the same x-coordinate.
    ///
    /// - Throws: ``SecureAggregationError/malformedBundle(_:)`` when their x-coordinates differ.
    public init(maskingKeyShare: SecretShare, selfMaskSeedShare: SecretShare) throws {
        guard maskingKeyShare.x == selfMaskSeedShare.x else {
            throw SecureAggregationError.malformedBundle("the two shares are for different x-coordinates")
        }
        self.maskingKeyShare = maskingKeyShare
        self.selfMaskSeedShare = selfMaskSeedShare
    }

    /// The recipient's id (both shares' x-coordinate).
    public var recipient: UInt32 { maskingKeyShare.x }

    /// The plaintext: the two shares' encodings, one after the other.
    public var encoded: [UInt8] { maskingKeyShare.encoded + selfMaskSeedShare.encoded }

    /// The bundle that ``encoded`` wrote.
    ///
    /// - Throws: ``SecureAggregationError/malformedBundle(_:)``.
    public init(encoded bytes: [UInt8]) throws {
        do {
            guard bytes.count >= 6 else { throw SecretSharingError.malformedShare("too short") }
            let firstLength = SecretShare.encodedByteCount(secretByteCount: Int(bytes.readBigEndian(at: 4) as UInt16))
            guard firstLength <= bytes.count else { throw SecretSharingError.malformedShare("too short") }
            try self.init(
                maskingKeyShare: SecretShare(encoded: bytes[..<firstLength]),
                selfMaskSeedShare: SecretShare(encoded: bytes[firstLength...]))
        } catch let error as SecretSharingError {
            throw SecureAggregationError.malformedBundle(error.description)
        }
    }
}

/// Encryption of a ``ShareBundle`` from participant i to participant j with
/// ChaCha20-Poly1305 (RFC 8439) under their pairwise share key
/// (``PairwiseKeys/shareKey(privateKey:peerPublicKey:round:between:and:)``).
///
/// The associated data binds the ciphertext to (round, sender, recipient):
/// the server that relays it cannot pass it off as another round's, or as
/// sent by or to anyone else. The nonce is random (96 bits) and sent in the
/// ciphertext: a key encrypts at most two bundles (one each way) per round.
///
/// Ciphertext layout: nonce (12 bytes), encrypted bundle, tag (16 bytes).
public enum ShareEncryption {
    static let label = Array("swift-federated secagg share v1".utf8)

    /// The associated data: label, round (UInt64), sender, recipient (UInt32), big-endian.
    static func associatedData(round: UInt64, sender: UInt32, recipient: UInt32) -> [UInt8] {
        var data = label
        data.appendBigEndian(round)
        data.appendBigEndian(sender)
        data.appendBigEndian(recipient)
        return data
    }

    /// `bundle` sealed from `sender` to its recipient in `round`.
    ///
    /// - Throws: ``SecureAggregationError/invalidParticipant(_:)`` when the sender is
    ///   the recipient or 0; a swift-crypto error if sealing fails.
    public static func seal(_ bundle: ShareBundle, key: SymmetricKey, round: UInt64, sender: UInt32) throws -> [UInt8] {
        try seal(bundle, key: key, round: round, sender: sender, nonce: ChaChaPoly.Nonce())
    }

    /// `bundle` sealed under the given 12-byte nonce. For test vectors only
    /// (`Protocol/vectors/secagg_three_clients.json`): a nonce must never repeat
    /// under a key, which the public `seal` ensures by drawing it at random.
    static func seal(
        _ bundle: ShareBundle, key: SymmetricKey, round: UInt64, sender: UInt32, nonce: ChaChaPoly.Nonce
    ) throws -> [UInt8] {
        guard sender != 0, sender != bundle.recipient else { throw SecureAggregationError.invalidParticipant(sender) }
        let box = try ChaChaPoly.seal(
            bundle.encoded, using: key, nonce: nonce,
            authenticating: associatedData(round: round, sender: sender, recipient: bundle.recipient))
        return [UInt8](box.combined)
    }

    /// The bundle in `ciphertext`, which must have been sealed with `key` from
    /// `sender` to `recipient` in `round`.
    ///
    /// - Throws: ``SecureAggregationError/authenticationFailed`` for any other key,
    ///   round, sender or recipient or any change to the bytes;
    ///   ``SecureAggregationError/malformedBundle(_:)`` if the plaintext is not a
    ///   bundle of shares at the recipient's x-coordinate.
    public static func open(
        _ ciphertext: [UInt8], key: SymmetricKey, round: UInt64, sender: UInt32, recipient: UInt32
    ) throws -> ShareBundle {
        let plaintext: Data
        do {
            let box = try ChaChaPoly.SealedBox(combined: ciphertext)
            plaintext = try ChaChaPoly.open(
                box, using: key, authenticating: associatedData(round: round, sender: sender, recipient: recipient))
        } catch {
            throw SecureAggregationError.authenticationFailed
        }
        let bundle = try ShareBundle(encoded: [UInt8](plaintext))
        guard bundle.recipient == recipient else {
            throw SecureAggregationError.malformedBundle("shares at x = \(bundle.recipient), not \(recipient)")
        }
        return bundle
    }
}
