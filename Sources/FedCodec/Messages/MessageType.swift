/// The message type byte of a frame header (`Protocol/SPEC.md`, "Messages").
///
/// A struct, not an enum, so that a message added in a later version does not
/// break an exhaustive `switch` in code that depends on this module; every
/// type is described once, in `MessageRegistry`. `init?(rawValue:)` accepts
/// only the types the registry defines.
public struct MessageType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The byte as it travels in a frame header.
    public let rawValue: UInt8

    /// The type whose byte is `rawValue`; nil when no message of that type is defined.
    public init?(rawValue: UInt8) {
        guard MessageRegistry.descriptor(rawValue) != nil else { return nil }
        self.rawValue = rawValue
    }

    /// A type as the registry defines it (no check).
    init(defining rawValue: UInt8) { self.rawValue = rawValue }

    public static let hello = MessageType(defining: 0x01)
    public static let welcome = MessageType(defining: 0x02)
    public static let fetch = MessageType(defining: 0x03)
    public static let model = MessageType(defining: 0x04)
    public static let modelUnchanged = MessageType(defining: 0x05)
    public static let push = MessageType(defining: 0x06)
    public static let ack = MessageType(defining: 0x07)
    public static let error = MessageType(defining: 0x08)
    public static let ping = MessageType(defining: 0x09)
    public static let pong = MessageType(defining: 0x0A)
    /// Version 3: the steps from the client's version to the current one.
    public static let modelDelta = MessageType(defining: 0x0B)
    /// Version 4: a client offers to work (`CheckIn`).
    public static let checkIn = MessageType(defining: 0x0C)
    /// Version 4: a task, or when to come back (`Assignment`).
    public static let assignment = MessageType(defining: 0x0D)
    /// Version 4: a train task's result (`Report`).
    public static let report = MessageType(defining: 0x0E)
    /// Version 4, feature `evaluation`: an evaluate task's result (`EvaluationReport`).
    public static let evaluationReport = MessageType(defining: 0x0F)
    /// Version 4, feature `secure aggregation`: a participant's public keys (`SecAggKeys`).
    public static let secAggKeys = MessageType(defining: 0x10)
    /// Version 4, feature `secure aggregation`: a participant's neighbours and their keys (`SecAggRoster`).
    public static let secAggRoster = MessageType(defining: 0x11)
    /// Version 4, feature `secure aggregation`: sealed shares for the neighbours (`SecAggShares`).
    public static let secAggShares = MessageType(defining: 0x12)
    /// Version 4, feature `secure aggregation`: the shares sealed to a participant (`SecAggInbox`).
    public static let secAggInbox = MessageType(defining: 0x13)
    /// Version 4, feature `secure aggregation`: a masked input (`SecAggInput`).
    public static let secAggInput = MessageType(defining: 0x14)
    /// Version 4, feature `secure aggregation`: whose inputs arrived (`SecAggSurvivors`).
    public static let secAggSurvivors = MessageType(defining: 0x15)
    /// Version 4, feature `secure aggregation`: revealed shares (`SecAggUnmask`).
    public static let secAggUnmask = MessageType(defining: 0x16)
    /// Version 4, secure aggregation's consistency check: signed keys (`SecAggSignedKeys`).
    public static let secAggSignedKeys = MessageType(defining: 0x17)
    /// Version 4, secure aggregation's consistency check: the cohort and signed keys (`SecAggSignedRoster`).
    public static let secAggSignedRoster = MessageType(defining: 0x18)
    /// Version 4, secure aggregation's consistency check: U3, whole (`SecAggContributors`).
    public static let secAggContributors = MessageType(defining: 0x19)
    /// Version 4, secure aggregation's consistency check: a signature of U3 (`SecAggConsistency`).
    public static let secAggConsistency = MessageType(defining: 0x1A)
    /// Version 4, secure aggregation's consistency check: the signatures of U3 (`SecAggSignatures`).
    public static let secAggSignatures = MessageType(defining: 0x1B)

    /// Every type defined, in the order of their bytes.
    public static var allCases: [MessageType] { MessageRegistry.all.map(\.type) }

    /// What the registry says of this type (nil for a type it does not list).
    public var descriptor: MessageDescriptor? { MessageRegistry.descriptor(rawValue) }

    /// The type's name in code (`modelUnchanged`), as logs and metrics labels
    /// show it; `type0xNN` for a type the registry does not list.
    public var description: String {
        descriptor?.label ?? "type0x" + String(rawValue, radix: 16, uppercase: true)
    }
}
