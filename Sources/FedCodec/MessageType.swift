/// The message type byte of a frame header (`Protocol/SPEC.md`, "Messages").
public enum MessageType: UInt8, CaseIterable, Sendable {
    case hello = 0x01
    case welcome = 0x02
    case fetch = 0x03
    case model = 0x04
    case modelUnchanged = 0x05
    case push = 0x06
    case ack = 0x07
    case error = 0x08
    case ping = 0x09
    case pong = 0x0A
    /// Version 3: the steps from the client's version to the current one.
    case modelDelta = 0x0B
}
