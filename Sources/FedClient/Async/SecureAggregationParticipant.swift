import FedCodec

/// One client's side of a secure-train task (feature `secure aggregation`,
/// `Protocol/SPEC.md` section 12.11), step by step: what to send at each
/// stage, given what the server relayed. FedClient carries the messages
/// (`FederationClient.secureTrain`); the cryptography is the conforming
/// type's (the product `FedSecureClient` provides one, `SecAggParticipant`),
/// so that this module does not build it.
///
/// The steps run once each, in this order; a step that throws ends the task
/// (the client drops out of the round, which secure aggregation tolerates).
public protocol SecureAggregationParticipant: Sendable {
    /// `SECAGG_KEYS`: the public keys to advertise.
    mutating func keys() throws -> SecAggKeys
    /// `SECAGG_SHARES`: the sealed shares for the roster's neighbours.
    mutating func shares(for roster: SecAggRoster) throws -> SecAggShares
    /// Opens the shares sealed to this client.
    mutating func open(_ inbox: SecAggInbox) throws
    /// `SECAGG_INPUT`: the update `trained - base`, clipped, encoded with its
    /// sample count and masked.
    mutating func input(trained: [Tensor], base: [Tensor], samples: UInt64) throws -> SecAggInput
    /// `SECAGG_UNMASK`: the shares the survivors' list calls for, once.
    mutating func unmask(_ survivors: SecAggSurvivors) throws -> SecAggUnmask

    // The consistency check (`secagg.consistency = on`, SPEC 12.11); a participant
    // without a signing identity keeps the defaults, which refuse.

    /// `SECAGG_SIGNED_KEYS`: the public keys, signed.
    mutating func signedKeys() throws -> SecAggSignedKeys
    /// `SECAGG_SHARES` for a signed roster, once its cohort and signatures verify.
    mutating func shares(forSigned roster: SecAggSignedRoster) throws -> SecAggShares
    /// `SECAGG_CONSISTENCY`: this participant's signature of U3.
    mutating func sign(_ contributors: SecAggContributors) throws -> SecAggConsistency
    /// `SECAGG_UNMASK` as U3 calls for, once at least t signatures of it verify.
    mutating func unmask(_ signatures: SecAggSignatures) throws -> SecAggUnmask
}

/// Why a participant without a signing identity refused a step of the consistency check.
public struct ConsistencyCheckUnsupported: Error, CustomStringConvertible {
    public init() {}
    public var description: String {
        "this participant holds no signing identity: it cannot take part in the consistency check"
    }
}

extension SecureAggregationParticipant {
    public mutating func signedKeys() throws -> SecAggSignedKeys { throw ConsistencyCheckUnsupported() }
    public mutating func shares(forSigned roster: SecAggSignedRoster) throws -> SecAggShares {
        throw ConsistencyCheckUnsupported()
    }
    public mutating func sign(_ contributors: SecAggContributors) throws -> SecAggConsistency {
        throw ConsistencyCheckUnsupported()
    }
    public mutating func unmask(_ signatures: SecAggSignatures) throws -> SecAggUnmask {
        throw ConsistencyCheckUnsupported()
    }
}

/// Makes the participant of a secure-train task from its assignment (whose
/// parameters `secagg.*` state the round's t, ring and clipping).
public typealias SecureParticipantFactory = @Sendable (Assignment) throws -> any SecureAggregationParticipant
