/// The messages of secure aggregation (version 4, feature bit 2,
/// `Protocol/SPEC.md` section 12.11): a secure-train task's four requests and
/// the server's three relays, in the order a client sends and receives them:
///
///     SECAGG_KEYS     -> SECAGG_ROSTER      (advertise keys)
///     SECAGG_SHARES   -> SECAGG_INBOX       (share keys)
///     SECAGG_INPUT    -> SECAGG_SURVIVORS   (masked input)
///     SECAGG_UNMASK   -> ACK | ERROR        (unmask)
///
/// Each request is answered when its stage closes for the whole cohort. Every
/// list is bounded before anything is allocated: at most
/// ``SecureAggregationLimits/maxParticipants`` entries, each entry's bytes at
/// most ``SecureAggregationLimits/maxSealedBytes`` or ``SecureAggregationLimits/maxShareBytes``.
public enum SecureAggregationLimits {
    /// The most participants a cohort can have (ids 1...maxParticipants).
    public static let maxParticipants = 4_096
    /// The longest sealed share bundle (nonce, ciphertext, tag).
    public static let maxSealedBytes = 1_024
    /// The longest revealed share (a `SecretShare`'s encoding).
    public static let maxShareBytes = 256
    /// An X25519 public key's length.
    public static let publicKeyBytes = 32
}

/// `SECAGG_KEYS` (to server): a participant's two X25519 public keys for its
/// task's round: `c` for share encryption, `s` for pairwise masks.
public struct SecAggKeys: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggKeys, name: "SECAGG_KEYS", label: "secAggKeys", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toServer)

    public var taskID: UInt64
    /// c's public key, 32 bytes.
    public var encryptionKey: [UInt8]
    /// s's public key, 32 bytes.
    public var maskingKey: [UInt8]

    public init(taskID: UInt64, encryptionKey: [UInt8], maskingKey: [UInt8]) {
        self.taskID = taskID
        self.encryptionKey = encryptionKey
        self.maskingKey = maskingKey
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.append(encryptionKey)
        w.append(maskingKey)
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError) -> SecAggKeys {
        let taskID = try SecureAggregationCoding.taskID(&r)
        let c = try SecureAggregationCoding.key(&r, "encryption key")
        let s = try SecureAggregationCoding.key(&r, "masking key")
        return SecAggKeys(taskID: taskID, encryptionKey: c, maskingKey: s)
    }
}

/// `SECAGG_ROSTER` (to client): the participant's id in the round (a Shamir
/// x-coordinate, 1...n) and its neighbours that advertised keys, with their
/// keys, ids ascending.
public struct SecAggRoster: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggRoster, name: "SECAGG_ROSTER", label: "secAggRoster", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toClient)

    public struct Neighbour: Hashable, Sendable {
        public var id: UInt32
        public var encryptionKey: [UInt8]
        public var maskingKey: [UInt8]
        public init(id: UInt32, encryptionKey: [UInt8], maskingKey: [UInt8]) {
            self.id = id
            self.encryptionKey = encryptionKey
            self.maskingKey = maskingKey
        }
    }

    public var taskID: UInt64
    /// This participant's id, not 0.
    public var participant: UInt32
    public var neighbours: [Neighbour]

    public init(taskID: UInt64, participant: UInt32, neighbours: [Neighbour]) {
        self.taskID = taskID
        self.participant = participant
        self.neighbours = neighbours
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.u32(participant)
        w.u16(UInt16(neighbours.count))
        for n in neighbours {
            w.u32(n.id)
            w.append(n.encryptionKey)
            w.append(n.maskingKey)
        }
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggRoster
    {
        let taskID = try SecureAggregationCoding.taskID(&r)
        let me = try SecureAggregationCoding.participant(&r, "participant")
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
            neighbours.append(Neighbour(id: id, encryptionKey: c, maskingKey: s))
        }
        return SecAggRoster(taskID: taskID, participant: me, neighbours: neighbours)
    }
}

/// One sealed share bundle: from `participant` (in `SECAGG_INBOX`) or to it
/// (in `SECAGG_SHARES`).
public struct SealedShares: Hashable, Sendable {
    public var participant: UInt32
    /// Nonce, ciphertext and tag: opaque to the server.
    public var sealed: [UInt8]
    public init(participant: UInt32, sealed: [UInt8]) {
        self.participant = participant
        self.sealed = sealed
    }
}

/// `SECAGG_SHARES` (to server): one sealed bundle for each neighbour of the
/// roster, recipients ascending.
public struct SecAggShares: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggShares, name: "SECAGG_SHARES", label: "secAggShares", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toServer)

    public var taskID: UInt64
    /// `participant` is each bundle's recipient.
    public var bundles: [SealedShares]

    public init(taskID: UInt64, bundles: [SealedShares]) {
        self.taskID = taskID
        self.bundles = bundles
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        SecureAggregationCoding.write(bundles, into: &w)
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggShares
    {
        SecAggShares(taskID: try SecureAggregationCoding.taskID(&r), bundles: try SecureAggregationCoding.bundles(&r))
    }
}

/// `SECAGG_INBOX` (to client): the bundles the participant's neighbours
/// sealed to it, senders ascending. Its senders are the neighbours it masks
/// against.
public struct SecAggInbox: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggInbox, name: "SECAGG_INBOX", label: "secAggInbox", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toClient)

    public var taskID: UInt64
    /// `participant` is each bundle's sender.
    public var bundles: [SealedShares]

    public init(taskID: UInt64, bundles: [SealedShares]) {
        self.taskID = taskID
        self.bundles = bundles
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        SecureAggregationCoding.write(bundles, into: &w)
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggInbox
    {
        SecAggInbox(taskID: try SecureAggregationCoding.taskID(&r), bundles: try SecureAggregationCoding.bundles(&r))
    }
}

/// `SECAGG_INPUT` (to server): the masked input, elements of Z_(2^b) as
/// little-endian integers of `elementBytes` (2 when b <= 16, else 4) bytes.
/// Not compressed: masked values are uniformly random.
public struct SecAggInput: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggInput, name: "SECAGG_INPUT", label: "secAggInput", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toServer)

    public var taskID: UInt64
    /// 2 or 4.
    public var elementBytes: Int
    public var values: [UInt32]

    public init(taskID: UInt64, elementBytes: Int, values: [UInt32]) {
        self.taskID = taskID
        self.elementBytes = elementBytes
        self.values = values
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.u8(UInt8(elementBytes))
        w.u32(UInt32(values.count))
        var raw = [UInt8](repeating: 0, count: values.count * elementBytes)
        if elementBytes == 2 {
            for (i, v) in values.enumerated() {
                raw[2 * i] = UInt8(truncatingIfNeeded: v)
                raw[2 * i + 1] = UInt8(truncatingIfNeeded: v >> 8)
            }
        } else {
            for (i, v) in values.enumerated() {
                for b in 0..<4 { raw[4 * i + b] = UInt8(truncatingIfNeeded: v >> (8 * b)) }
            }
        }
        w.append(raw)
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggInput
    {
        let taskID = try SecureAggregationCoding.taskID(&r)
        let width = Int(try r.u8("element bytes"))
        guard width == 2 || width == 4 else {
            throw CodecError(.malformedPayload, "element bytes \(width), not 2 or 4")
        }
        let count = Int(try r.u32("element count"))
        // The bytes must be in the payload before anything is allocated.
        let raw = try r.take(count * width, "masked input")
        var values = [UInt32](repeating: 0, count: count)
        if width == 2 {
            for i in 0..<count { values[i] = UInt32(raw[2 * i]) | UInt32(raw[2 * i + 1]) << 8 }
        } else {
            for i in 0..<count {
                values[i] =
                    UInt32(raw[4 * i]) | UInt32(raw[4 * i + 1]) << 8 | UInt32(raw[4 * i + 2]) << 16
                    | UInt32(raw[4 * i + 3]) << 24
            }
        }
        return SecAggInput(taskID: taskID, elementBytes: width, values: values)
    }
}

/// `SECAGG_SURVIVORS` (to client): how many masked inputs the round holds,
/// and which of the participant's inbox senders they came from, ascending.
/// The participant reveals its share of each listed sender's self-mask seed
/// and of each unlisted sender's masking key, never both for one sender.
public struct SecAggSurvivors: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggSurvivors, name: "SECAGG_SURVIVORS", label: "secAggSurvivors", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toClient)

    public var taskID: UInt64
    /// Masked inputs in the round's sum (the participant's own included).
    public var contributors: UInt32
    public var survivors: [UInt32]

    public init(taskID: UInt64, contributors: UInt32, survivors: [UInt32]) {
        self.taskID = taskID
        self.contributors = contributors
        self.survivors = survivors
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.u32(contributors)
        w.u16(UInt16(survivors.count))
        for id in survivors { w.u32(id) }
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggSurvivors
    {
        let taskID = try SecureAggregationCoding.taskID(&r)
        let contributors = try r.u32("contributors")
        let count = try SecureAggregationCoding.count(&r, "survivors")
        var ids: [UInt32] = []
        ids.reserveCapacity(count)
        for _ in 0..<count {
            let id = try SecureAggregationCoding.participant(&r, "survivor")
            if let last = ids.last, last >= id {
                throw CodecError(.malformedPayload, "survivor ids not strictly ascending at \(id)")
            }
            ids.append(id)
        }
        return SecAggSurvivors(taskID: taskID, contributors: contributors, survivors: ids)
    }
}

/// `SECAGG_UNMASK` (to server): the participant's shares of its neighbours'
/// secrets, as `SECAGG_SURVIVORS` asked: kind 1, a self-mask seed share of a
/// survivor; kind 2, a masking-key share of a neighbour that dropped.
public struct SecAggUnmask: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .secAggUnmask, name: "SECAGG_UNMASK", label: "secAggUnmask", sinceVersion: 4,
        feature: Features.secureAggregation.rawValue, direction: .toServer)

    public enum Kind: UInt8, Sendable, Hashable {
        /// A share of a survivor's self-mask seed b.
        case selfMaskSeed = 1
        /// A share of a dropped neighbour's masking private key s.
        case maskingKey = 2
    }

    public struct Revealed: Hashable, Sendable {
        /// Whose secret this is a share of.
        public var owner: UInt32
        public var kind: Kind
        /// A `SecretShare`'s encoding.
        public var share: [UInt8]
        public init(owner: UInt32, kind: Kind, share: [UInt8]) {
            self.owner = owner
            self.kind = kind
            self.share = share
        }
    }

    public var taskID: UInt64
    /// Owners strictly ascending: one share per owner.
    public var shares: [Revealed]

    public init(taskID: UInt64, shares: [Revealed]) {
        self.taskID = taskID
        self.shares = shares
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.u16(UInt16(shares.count))
        for s in shares {
            w.u32(s.owner)
            w.u8(s.kind.rawValue)
            w.u16(UInt16(s.share.count))
            w.append(s.share)
        }
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> SecAggUnmask
    {
        let taskID = try SecureAggregationCoding.taskID(&r)
        let count = try SecureAggregationCoding.count(&r, "shares")
        var shares: [Revealed] = []
        shares.reserveCapacity(count)
        for _ in 0..<count {
            let owner = try SecureAggregationCoding.participant(&r, "owner")
            if let last = shares.last, last.owner >= owner {
                throw CodecError(.malformedPayload, "share owners not strictly ascending at \(owner)")
            }
            let rawKind = try r.u8("share kind")
            guard let kind = Kind(rawValue: rawKind) else {
                throw CodecError(.malformedPayload, "share kind \(rawKind), not 1 or 2")
            }
            let length = Int(try r.u16("share length"))
            guard (1...SecureAggregationLimits.maxShareBytes).contains(length) else {
                throw CodecError(.malformedPayload, "a share of \(length) bytes")
            }
            shares.append(Revealed(owner: owner, kind: kind, share: Array(try r.take(length, "share"))))
        }
        return SecAggUnmask(taskID: taskID, shares: shares)
    }
}

/// The fields the messages above share.
enum SecureAggregationCoding {
    static func taskID(_ r: inout ByteReader) throws(CodecError) -> UInt64 {
        let id = try r.u64("task id")
        if id == 0 { throw CodecError(.malformedPayload, "task id 0") }
        return id
    }

    static func participant(_ r: inout ByteReader, _ what: String) throws(CodecError) -> UInt32 {
        let id = try r.u32(what)
        guard (1...UInt32(SecureAggregationLimits.maxParticipants)).contains(id) else {
            throw CodecError(
                .malformedPayload, "\(what) id \(id), not 1-\(SecureAggregationLimits.maxParticipants)")
        }
        return id
    }

    static func count(_ r: inout ByteReader, _ what: String) throws(CodecError) -> Int {
        let count = Int(try r.u16("\(what) count"))
        if count > SecureAggregationLimits.maxParticipants {
            throw CodecError(
                .malformedPayload, "\(count) \(what), more than \(SecureAggregationLimits.maxParticipants)")
        }
        return count
    }

    static func key(_ r: inout ByteReader, _ what: String) throws(CodecError) -> [UInt8] {
        Array(try r.take(SecureAggregationLimits.publicKeyBytes, what))
    }

    static func write(_ bundles: [SealedShares], into w: inout ByteWriter) {
        w.u16(UInt16(bundles.count))
        for b in bundles {
            w.u32(b.participant)
            w.u16(UInt16(b.sealed.count))
            w.append(b.sealed)
        }
    }

    static func bundles(_ r: inout ByteReader) throws(CodecError) -> [SealedShares] {
        let count = try self.count(&r, "bundles")
        var out: [SealedShares] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let id = try participant(&r, "bundle participant")
            if let last = out.last, last.participant >= id {
                throw CodecError(.malformedPayload, "bundle participants not strictly ascending at \(id)")
            }
            let length = Int(try r.u16("sealed length"))
            guard (1...SecureAggregationLimits.maxSealedBytes).contains(length) else {
                throw CodecError(.malformedPayload, "a sealed bundle of \(length) bytes")
            }
            out.append(SealedShares(participant: id, sealed: Array(try r.take(length, "sealed bundle"))))
        }
        return out
    }
}
