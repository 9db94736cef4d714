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
}

/// Makes the participant of a secure-train task from its assignment (whose
/// parameters `secagg.*` state the round's t, ring and clipping).
public typealias SecureParticipantFactory = @Sendable (Assignment) throws -> any SecureAggregationParticipant
