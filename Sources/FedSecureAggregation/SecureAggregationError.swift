/// Why a secure-aggregation step refused its input. Secret sharing has its own
/// ``SecretSharingError``.
public enum SecureAggregationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A seed or key of the wrong length (32 bytes expected).
    case wrongKeyLength(expected: Int, got: Int)
    /// Bytes that are not an X25519 public key, or a key agreement that gave
    /// an all-zero secret (a low-order point).
    case invalidPublicKey
    /// A participant paired with itself, or a participant id of 0 (ids are
    /// Shamir x-coordinates and must be non-zero).
    case invalidParticipant(UInt32)
    /// A ciphertext that does not open with this key and associated data:
    /// tampered with, sent by or to someone else, or of another round.
    case authenticationFailed
    /// Decrypted bytes that are not a share bundle, or a bundle whose shares
    /// are not addressed to its recipient: the reason in words.
    case malformedBundle(String)
    /// A ring width outside 1...32 bits.
    case ringWidthOutOfRange(Int)
    /// Vectors of different lengths combined.
    case lengthMismatch(expected: Int, got: Int)
    /// A step of the protocol out of order, or an input that breaks its
    /// rules (a roster shorter than the threshold, a survivor that never
    /// shared, a second request to reveal): the reason in words.
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .wrongKeyLength(let expected, let got): "a key of \(got) bytes where \(expected) are needed"
        case .invalidPublicKey: "not a usable X25519 public key"
        case .invalidParticipant(let id): "participant \(id) is not allowed here (ids are non-zero, pairs distinct)"
        case .authenticationFailed: "the ciphertext does not authenticate for this key, round, sender and recipient"
        case .malformedBundle(let reason): "malformed share bundle: \(reason)"
        case .ringWidthOutOfRange(let bits): "a ring of \(bits) bits (1 to 32 are supported)"
        case .lengthMismatch(let expected, let got): "a vector of \(got) elements where \(expected) are expected"
        case .protocolViolation(let reason): "secure aggregation protocol violation: \(reason)"
        }
    }
}
