import FedClient
import FedCodec
import FedSecureAggregation

/// A client's side of SecAgg+ for one secure-train task, with fresh X25519
/// keys and self-mask seed from the system's CSPRNG (`Participant`), the
/// fixed-point encoding the assignment states (`secagg.bits`, `secagg.clip`,
/// `secagg.n`, `secagg.w`), and the threshold `secagg.t`.
///
/// The update sent is `trained - base`, flattened tensor by tensor, clipped
/// to L2 norm `secagg.clip` and weighted by min(samples, `secagg.w`) /
/// `secagg.w`; the sample count rides in the masked vector. Keys and shares
/// live in this value only, for this one task.
public struct SecAggParticipant: SecureAggregationParticipant {
    /// Why an assignment cannot be taken part in.
    public struct ParameterError: Error, CustomStringConvertible {
        public let description: String
    }

    public let taskID: UInt64
    public let encoding: FixedPointEncoding
    var participant: Participant
    /// The consistency check's state; nil in a round without it.
    var consistency: ConsistencyState?

    /// The participant of `assignment`, a secure-train task.
    ///
    /// - Throws: ``ParameterError`` when a `secagg.*` parameter is missing or
    ///   out of range; the encoding's errors.
    /// With `identity`, the participant takes part only in rounds with the
    /// consistency check (and needs it for them).
    public init(_ assignment: Assignment, identity: SecAggIdentity? = nil) throws {
        func integer(_ key: String) throws -> Int {
            guard let value = assignment.parameters[key].flatMap({ Int($0) }), value > 0 else {
                throw ParameterError(description: "the task's parameter \(key) is missing or not a positive integer")
            }
            return value
        }
        guard let clip = assignment.parameters["secagg.clip"].flatMap(Double.init), clip.isFinite, clip > 0 else {
            throw ParameterError(description: "the task's parameter secagg.clip is missing or not a positive number")
        }
        taskID = assignment.taskID
        encoding = try FixedPointEncoding(
            bits: try integer("secagg.bits"), clipping: .l2Norm(clip), maximumSummands: try integer("secagg.n"),
            maximumWeight: try integer("secagg.w"))
        participant = try Participant(round: assignment.round, threshold: try integer("secagg.t"))
        consistency = try Self.consistencyState(assignment, identity: identity)
    }

    /// A factory for `FederationClient.RunOptions.secureAggregation`.
    public static let factory: SecureParticipantFactory = { try SecAggParticipant($0) }

    /// A factory of participants that hold `identity` (the consistency check).
    public static func factory(identity: SecAggIdentity) -> SecureParticipantFactory {
        { try SecAggParticipant($0, identity: identity) }
    }

    public mutating func keys() throws -> SecAggKeys {
        guard consistency == nil else { throw ParameterError(description: "keys of this round are to be signed") }
        let keys = participant.publicKeys
        return SecAggKeys(taskID: taskID, encryptionKey: keys.encryption, maskingKey: keys.masking)
    }

    public mutating func shares(for roster: SecAggRoster) throws -> SecAggShares {
        guard roster.taskID == taskID else { throw ParameterError(description: "a roster of another task") }
        var neighbours: [UInt32: ParticipantPublicKeys] = [:]
        for n in roster.neighbours {
            neighbours[n.id] = try ParticipantPublicKeys(encryption: n.encryptionKey, masking: n.maskingKey)
        }
        let sealed = try participant.share(as: roster.participant, with: neighbours)
        return SecAggShares(
            taskID: taskID, bundles: sealed.map { SealedShares(participant: $0.recipient, sealed: $0.sealed) })
    }

    public mutating func open(_ inbox: SecAggInbox) throws {
        guard inbox.taskID == taskID else { throw ParameterError(description: "an inbox of another task") }
        try participant.open(inbox.bundles.map { ($0.participant, $0.sealed) })
    }

    public mutating func input(trained: [Tensor], base: [Tensor], samples: UInt64) throws -> SecAggInput {
        guard trained.map(\.shape) == base.map(\.shape) else {
            throw ParameterError(description: "the trained weights' shapes differ from the model's")
        }
        var update: [Float] = []
        update.reserveCapacity(base.reduce(0) { $0 + $1.values.count })
        for (t, b) in zip(trained, base) {
            for i in b.values.indices { update.append(t.values[i] - b.values[i]) }
        }
        let weight = Int(min(samples, UInt64(encoding.maximumWeight)))
        let encoded = try encoding.encode(update, weight: weight)
        let masked = try participant.mask(encoded.values, ring: encoding.ring)
        return SecAggInput(taskID: taskID, elementBytes: encoding.ring.bits <= 16 ? 2 : 4, values: masked)
    }

    public mutating func unmask(_ survivors: SecAggSurvivors) throws -> SecAggUnmask {
        guard survivors.taskID == taskID else { throw ParameterError(description: "a survivors' list of another task") }
        guard consistency == nil else {
            throw ParameterError(description: "this round reveals only after the consistency check")
        }
        return try reveal(survivors: Set(survivors.survivors), contributors: Int(survivors.contributors))
    }

    /// `SECAGG_UNMASK`: the participant's shares as `survivors` call for.
    mutating func reveal(survivors: Set<UInt32>, contributors: Int) throws -> SecAggUnmask {
        let revealed = try participant.reveal(survivors: survivors, contributors: contributors)
        return SecAggUnmask(
            taskID: taskID,
            shares: revealed.map {
                SecAggUnmask.Revealed(
                    owner: $0.owner, kind: $0.selfMaskSeed ? .selfMaskSeed : .maskingKey, share: $0.share.encoded)
            })
    }
}
