import FedSecureAggregation
import Synchronization

/// A client's signing identity and the keys it trusts, for secure
/// aggregation's consistency check (`fed client --secagg-identity FILE
/// --secagg-trusted FILE`). One value serves every task of a client: it
/// remembers each cohort digest it signed keys under and refuses a second
/// task bound to the same one, so that this client signs at most one survivor
/// set per run of a round (a server replaying a run is refused).
public final class SecAggIdentity: Sendable {
    public let identity: SigningIdentity
    public let trusted: TrustedIdentities
    private let signed = Mutex<Set<[UInt8]>>([])

    /// - Throws: ``IdentityFileError`` when the identity's own key is not the one
    ///   `trusted` lists for its name (a mismatch would only surface as refusals).
    public init(identity: SigningIdentity, trusted: TrustedIdentities) throws {
        guard trusted.keys[identity.name] == Array(identity.publicKey.rawRepresentation) else {
            throw IdentityFileError(
                "the trusted keys do not list \(identity.name) with this identity's public key")
        }
        self.identity = identity
        self.trusted = trusted
    }

    /// Records that this client signs keys under `digest`; false if it already did.
    func claim(_ digest: [UInt8]) -> Bool { signed.withLock { $0.insert(digest).inserted } }
}
