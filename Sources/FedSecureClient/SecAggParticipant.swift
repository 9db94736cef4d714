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
///
/// With distributed noise (differential privacy under secure aggregation,
/// `Protocol/SPEC.md` 12.13): `dp.client-noise` is σ, each coordinate's
/// Gaussian noise added after clipping (from the system's CSPRNG),
/// `secagg.range` the coordinates' range R, and `secagg.min-inputs` m: the
/// participant reveals no share for a sum of fewer than m inputs, whose
/// noise would fall short of what the round was accounted for. With
/// `dp.count-scale` κ (adaptive clipping) the participant clips the update
/// to `secagg.clip` itself and appends (b - 1/2) κ, b = 1 when the update
/// was within the clip, so the server learns only the noised count.
public struct SecAggParticipant: SecureAggregationParticipant {
    /// Why an assignment cannot be taken part in.
    public struct ParameterError: Error, CustomStringConvertible {
        public let description: String
    }

    public let taskID: UInt64
    public let encoding: FixedPointEncoding
    /// σ: the noise added to each coordinate after clipping (0: none).
    public let noise: Double
    /// m: the fewest inputs a sum may hold for this participant to help unmask it.
    public let minimumInputs: Int
    /// C: the L2 norm each update is clipped to.
    public let clip: Double
    /// κ: with adaptive clipping, the scale of the clipped-or-not coordinate; nil otherwise.
    public let countScale: Double?
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
        func number(_ key: String) throws -> Double? {
            guard let text = assignment.parameters[key] else { return nil }
            guard let value = Double(text), value.isFinite, value >= 0 else {
                throw ParameterError(description: "the task's parameter \(key) is not a number >= 0")
            }
            return value
        }
        taskID = assignment.taskID
        noise = try number("dp.client-noise") ?? 0
        minimumInputs = assignment.parameters["secagg.min-inputs"] == nil ? 1 : try integer("secagg.min-inputs")
        self.clip = clip
        countScale = try number("dp.count-scale")
        // With the count appended the participant clips, and every coordinate is within the bound.
        let clipping: FixedPointEncoding.Clipping =
            countScale.map { .perCoordinate(max(clip, $0 / 2)) } ?? .l2Norm(clip)
        encoding = try FixedPointEncoding(
            bits: try integer("secagg.bits"), clipping: clipping, maximumSummands: try integer("secagg.n"),
            maximumWeight: try integer("secagg.w"), range: try number("secagg.range"))
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
        if let scale = countScale {
            guard update.allSatisfy(\.isFinite) else { throw FixedPointError.nonFinite }
            let norm = update.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            // A hair inside C, so that rounding to Float cannot push the norm past it.
            if norm > clip { update = update.map { Float(Double($0) * clip / norm * (1 - 1e-6)) } }
            update.append(Float(((norm <= clip ? 1.0 : 0.0) - 0.5) * scale))
        }
        // With distributed noise every input weighs 1, whatever its samples: a weight of 0
        // would cancel this client's share of the noise.
        let weight =
            noise > 0 || countScale != nil ? encoding.maximumWeight : Int(min(samples, UInt64(encoding.maximumWeight)))
        let encoded = try encoding.encode(update, weight: weight, noise: noise)
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

    /// `SECAGG_UNMASK`: the participant's shares as `survivors` call for; none for a
    /// sum of fewer inputs than its noise was calibrated for.
    mutating func reveal(survivors: Set<UInt32>, contributors: Int) throws -> SecAggUnmask {
        guard contributors >= minimumInputs else {
            throw ParameterError(
                description:
                    "the sum holds \(contributors) inputs, fewer than the \(minimumInputs) its noise was calibrated for: no share is revealed"
            )
        }
        let revealed = try participant.reveal(survivors: survivors, contributors: contributors)
        return SecAggUnmask(
            taskID: taskID,
            shares: revealed.map {
                SecAggUnmask.Revealed(
                    owner: $0.owner, kind: $0.selfMaskSeed ? .selfMaskSeed : .maskingKey, share: $0.share.encoded)
            })
    }
}
