/// One message of the protocol, described once: its type byte, its names,
/// the first version that defines it, the feature bit that gates it (from
/// version 4), and which side sends it.
///
/// Frame decoding refuses a type not defined in the frame's version
/// (`unknown_message_type`); a receiver refuses a message its side does not
/// receive (`unexpected_message`).
public struct MessageDescriptor: Sendable {
    /// Which side of a connection sends a message.
    public enum Direction: Sendable {
        /// Sent by clients (HELLO, FETCH, PUSH).
        case toServer
        /// Sent by servers (WELCOME, MODEL, ACK, ...).
        case toClient
        /// Sent by either side (ERROR, PING, PONG).
        case either
    }

    public let type: MessageType
    /// The spec's name (`MODEL_UNCHANGED`).
    public let name: String
    /// The name in code (`modelUnchanged`).
    public let label: String
    /// The first protocol version that defines the message.
    public let sinceVersion: UInt8
    /// The feature bit both peers must have agreed on at check-in (version 4
    /// and later); nil: the message needs only `sinceVersion`.
    public let feature: UInt64?
    public let direction: Direction

    public init(
        type: MessageType, name: String, label: String, sinceVersion: UInt8, feature: UInt64? = nil,
        direction: Direction
    ) {
        self.type = type
        self.name = name
        self.label = label
        self.sinceVersion = sinceVersion
        self.feature = feature
        self.direction = direction
    }

    /// Whether a frame of protocol `version` may carry this message.
    public func isDefined(inVersion version: UInt8) -> Bool { version >= sinceVersion }
}
