/// The messages of secure aggregation's consistency check (version 4,
/// feature bit 2, `Protocol/SPEC.md` section 12.11, "Consistency check"):
/// Bonawitz et al.'s active-security version, for clients that hold signing
/// identities. A round with `secagg.consistency = on` runs
///
///     SECAGG_SIGNED_KEYS  -> SECAGG_SIGNED_ROSTER  (advertise keys, signed)
///     SECAGG_SHARES       -> SECAGG_INBOX          (share keys, as without it)
///     SECAGG_INPUT        -> SECAGG_CONTRIBUTORS   (masked input; U3, whole)
///     SECAGG_CONSISTENCY  -> SECAGG_SIGNATURES     (each signs U3; all signatures)
///     SECAGG_UNMASK       -> ACK | ERROR           (unmask, as U3 calls for)
///
/// Every list is bounded before anything is allocated, as in the other
/// `SECAGG_*` messages; signatures are Ed25519 (64 bytes).
public enum SecureAggregationIdentityLimits {
    /// An Ed25519 signature's length.
    public static let signatureBytes = 64
    /// A session nonce's length.
    public static let sessionBytes = 32
    /// A member's name (its client id) is 1 to this many bytes of UTF-8.
    public static let maxNameBytes = 256
}

/// `SECAGG_SIGNED_KEYS` (to server): `SECAGG_KEYS` with the participant's
/// Ed25519 signature of its keys, bound to the round's cohort (SPEC 12.11).
public struct SecAggSignedKeys: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggSignedKeys, name: "SECAGG_SIGNED_KEYS", label: "secAggSignedKeys", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toServer)

    public var keys: SecAggKeys
    /// 64 bytes.
    public var signature: [UInt8]

    public init(keys: SecAggKeys, signature: [UInt8]) {
        self.keys = keys
        self.signature = signature
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        keys.write(into: &w, version: version)
        w.append(signature)
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggSignedKeys
    {
        let keys = try SecAggKeys.read(from: &r, version: version, limits: limits)
        return SecAggSignedKeys(keys: keys, signature: try ConsistencyCoding.signature(&r))
    }
}

/// `SECAGG_SIGNED_ROSTER` (to client): the round's whole cohort (id and
/// name of every member, ids ascending) with the session nonce they are bound
/// to, and the participant's neighbours that advertised keys, each with its
/// signature of them.
public struct SecAggSignedRoster: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggSignedRoster, name: "SECAGG_SIGNED_ROSTER", label: "secAggSignedRoster", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toClient)

    public struct Member: Hashable, Sendable {
        public var id: UInt32
        /// The member's client id: the name its public key is trusted under.
        public var name: String
        public init(id: UInt32, name: String) {
            self.id = id
            self.name = name
        }
    }

    public struct Neighbour: Hashable, Sendable {
        public var id: UInt32
        public var encryptionKey: [UInt8]
        public var maskingKey: [UInt8]
        public var signature: [UInt8]
        public init(id: UInt32, encryptionKey: [UInt8], maskingKey: [UInt8], signature: [UInt8]) {
            self.id = id
            self.encryptionKey = encryptionKey
            self.maskingKey = maskingKey
            self.signature = signature
        }
    }

    public var taskID: UInt64
    public var participant: UInt32
    /// 32 bytes, fresh for each run of a round.
    public var session: [UInt8]
    public var cohort: [Member]
    public var neighbours: [Neighbour]

    public init(taskID: UInt64, participant: UInt32, session: [UInt8], cohort: [Member], neighbours: [Neighbour]) {
        self.taskID = taskID
        self.participant = participant
        self.session = session
        self.cohort = cohort
        self.neighbours = neighbours
    }

    /// The roster without the identities: what the participant shares with.
    public var roster: SecAggRoster {
        SecAggRoster(
            taskID: taskID, participant: participant,
            neighbours: neighbours.map {
                SecAggRoster.Neighbour(id: $0.id, encryptionKey: $0.encryptionKey, maskingKey: $0.maskingKey)
            })
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.u32(participant)
        w.append(session)
        w.u16(UInt16(cohort.count))
        for m in cohort {
            w.u32(m.id)
            w.string(m.name)
        }
        w.u16(UInt16(neighbours.count))
        for n in neighbours {
            w.u32(n.id)
            w.append(n.encryptionKey)
            w.append(n.maskingKey)
            w.append(n.signature)
        }
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggSignedRoster
    {
        let taskID = try SecureAggregationCoding.taskID(&r)
        let me = try SecureAggregationCoding.participant(&r, "participant")
        let session = Array(try r.take(SecureAggregationIdentityLimits.sessionBytes, "session"))
        let memberCount = try SecureAggregationCoding.count(&r, "cohort members")
        var cohort: [Member] = []
        cohort.reserveCapacity(memberCount)
        for _ in 0..<memberCount {
            let id = try SecureAggregationCoding.participant(&r, "member")
            if let last = cohort.last, last.id >= id {
                throw CodecError(.malformedPayload, "member ids not strictly ascending at \(id)")
            }
            let name = try r.string("member name", maxBytes: SecureAggregationIdentityLimits.maxNameBytes)
            if name.isEmpty { throw CodecError(.malformedPayload, "member \(id) has an empty name") }
            cohort.append(Member(id: id, name: name))
        }
        let count = try SecureAggregationCoding.count(&r, "neighbours")
        var neighbours: [Neighbour] = []
        neighbours.reserveCapacity(count)
        for _ in 0..<count {
            let id = try SecureAggregationCoding.participant(&r, "neighbour")
            if id == me { throw CodecError(.malformedPayload, "participant \(me) listed as its own neighbour") }
            if let last = neighbours.last, last.id >= id {
                throw CodecError(.malformedPayload, "neighbour ids not strictly ascending at \(id)")
            }
            let c = try SecureAggregationCoding.key(&r, "encryption key")
            let s = try SecureAggregationCoding.key(&r, "masking key")
            neighbours.append(
                Neighbour(id: id, encryptionKey: c, maskingKey: s, signature: try ConsistencyCoding.signature(&r)))
        }
        return SecAggSignedRoster(
            taskID: taskID, participant: me, session: session, cohort: cohort, neighbours: neighbours)
    }
}

/// `SECAGG_CONTRIBUTORS` (to client): U3, every participant whose masked
/// input is in the sum, ascending: what each survivor signs.
public struct SecAggContributors: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggContributors, name: "SECAGG_CONTRIBUTORS", label: "secAggContributors", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toClient)

    public var taskID: UInt64
    public var contributors: [UInt32]

    public init(taskID: UInt64, contributors: [UInt32]) {
        self.taskID = taskID
        self.contributors = contributors
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.u16(UInt16(contributors.count))
        for id in contributors { w.u32(id) }
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggContributors
    {
        let taskID = try SecureAggregationCoding.taskID(&r)
        let count = try SecureAggregationCoding.count(&r, "contributors")
        var ids: [UInt32] = []
        ids.reserveCapacity(count)
        for _ in 0..<count {
            let id = try SecureAggregationCoding.participant(&r, "contributor")
            if let last = ids.last, last >= id {
                throw CodecError(.malformedPayload, "contributor ids not strictly ascending at \(id)")
            }
            ids.append(id)
        }
        return SecAggContributors(taskID: taskID, contributors: ids)
    }
}

/// `SECAGG_CONSISTENCY` (to server): the participant's signature of U3.
public struct SecAggConsistency: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggConsistency, name: "SECAGG_CONSISTENCY", label: "secAggConsistency", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toServer)

    public var taskID: UInt64
    public var signature: [UInt8]

    public init(taskID: UInt64, signature: [UInt8]) {
        self.taskID = taskID
        self.signature = signature
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.append(signature)
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggConsistency
    {
        SecAggConsistency(
            taskID: try SecureAggregationCoding.taskID(&r), signature: try ConsistencyCoding.signature(&r))
    }
}

/// `SECAGG_SIGNATURES` (to client): the signatures of U3 the server
/// collected, signers ascending. A participant reveals shares only after it
/// verified at least t of them.
public struct SecAggSignatures: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggSignatures, name: "SECAGG_SIGNATURES", label: "secAggSignatures", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toClient)

    public struct Signed: Hashable, Sendable {
        public var signer: UInt32
        public var signature: [UInt8]
        public init(signer: UInt32, signature: [UInt8]) {
            self.signer = signer
            self.signature = signature
        }
    }

    public var taskID: UInt64
    public var signatures: [Signed]

    public init(taskID: UInt64, signatures: [Signed]) {
        self.taskID = taskID
        self.signatures = signatures
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.u16(UInt16(signatures.count))
        for s in signatures {
            w.u32(s.signer)
            w.append(s.signature)
        }
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggSignatures
    {
        let taskID = try SecureAggregationCoding.taskID(&r)
        let count = try SecureAggregationCoding.count(&r, "signatures")
        var out: [Signed] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let id = try SecureAggregationCoding.participant(&r, "signer")
            if let last = out.last, last.signer >= id {
                throw CodecError(.malformedPayload, "signer ids not strictly ascending at \(id)")
            }
            out.append(Signed(signer: id, signature: try ConsistencyCoding.signature(&r)))
        }
        return SecAggSignatures(taskID: taskID, signatures: out)
    }
}

/// The fields the messages above add to ``SecureAggregationCoding``'s.
enum ConsistencyCoding {
    static func signature(_ r: inout ByteReader) throws(CodecError) -> [UInt8] {
        Array(try r.take(SecureAggregationIdentityLimits.signatureBytes, "signature"))
    }
}
