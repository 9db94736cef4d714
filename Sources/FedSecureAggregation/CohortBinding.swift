import Crypto

/// What every signature of a secure round with the consistency check is
/// bound to (`Protocol/SPEC.md` section 12.11, "Consistency check"): the
/// round, a session nonce fresh for each run of it, and the cohort (every
/// member's id and name). Its ``digest`` reaches each client in its
/// assignment (`secagg.cohort`) before it signs its keys, so that everyone
/// who holds one client's shares agrees on the cohort and on the run.
///
/// Statements signed (Ed25519, by the member's identity):
/// - keys: "swift-federated secagg keys v1" | digest | u16 len | name | c | s
/// - U3:   "swift-federated secagg consistency v1" | digest | u16 count | u32 ids
///
/// digest = SHA-256("swift-federated secagg cohort v1" | u64 round | session |
/// u16 count | (u32 id | u16 len | name) per member, ids ascending); integers
/// big-endian.
public struct CohortBinding: Sendable, Equatable {
    public let round: UInt64
    public let session: [UInt8]
    /// Member names by id.
    public let members: [UInt32: String]
    public let digest: [UInt8]

    /// - Throws: ``SecureAggregationError/protocolViolation(_:)`` for a session that is
    ///   not 32 bytes, an id 0, an empty name or a name given twice.
    public init(round: UInt64, session: [UInt8], members: [UInt32: String]) throws {
        guard session.count == 32 else { throw SecureAggregationError.protocolViolation("a session is 32 bytes") }
        guard members[0] == nil, !members.values.contains(where: \.isEmpty) else {
            throw SecureAggregationError.protocolViolation("cohort members need ids from 1 and non-empty names")
        }
        guard Set(members.values).count == members.count else {
            throw SecureAggregationError.protocolViolation("a name appears twice in the cohort")
        }
        self.round = round
        self.session = session
        self.members = members
        var text = Array("swift-federated secagg cohort v1".utf8)
        Self.append(round, to: &text)
        text += session
        Self.append(UInt16(members.count), to: &text)
        for id in members.keys.sorted() {
            Self.append(id, to: &text)
            Self.append(name: members[id]!, to: &text)
        }
        digest = Array(SHA256.hash(data: text))
    }

    /// A fresh session nonce from the system's CSPRNG.
    public static func randomSession() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// The digest in hex, as `secagg.cohort` carries it.
    public var digestHex: String { IdentityFile.hex(digest) }

    /// What member `name` signs to advertise its keys `c` and `s`.
    public func keysStatement(name: String, encryption c: [UInt8], masking s: [UInt8]) -> [UInt8] {
        Self.keysStatement(digest: digest, name: name, encryption: c, masking: s)
    }

    /// ``keysStatement(name:encryption:masking:)`` before the cohort is known: from the digest.
    public static func keysStatement(digest: [UInt8], name: String, encryption c: [UInt8], masking s: [UInt8])
        -> [UInt8]
    {
        var text = Array("swift-federated secagg keys v1".utf8) + digest
        append(name: name, to: &text)
        return text + c + s
    }

    /// What each survivor signs: U3, the ids whose masked inputs are in the sum.
    public func contributorsStatement(_ contributors: [UInt32]) -> [UInt8] {
        var text = Array("swift-federated secagg consistency v1".utf8) + digest
        Self.append(UInt16(contributors.count), to: &text)
        for id in contributors.sorted() { Self.append(id, to: &text) }
        return text
    }

    private static func append<T: FixedWidthInteger>(_ v: T, to text: inout [UInt8]) {
        withUnsafeBytes(of: v.bigEndian) { text.append(contentsOf: $0) }
    }

    private static func append(name: String, to text: inout [UInt8]) {
        append(UInt16(name.utf8.count), to: &text)
        text += Array(name.utf8)
    }
}
