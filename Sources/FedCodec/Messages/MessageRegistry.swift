/// The one table of the protocol's messages (`Protocol/SPEC.md`, "Messages").
///
/// The messages of versions 1-3 are the cases of `Message`, their payloads
/// coded by `MessageCodec`; they never change. Every later message is a
/// `ProtocolMessage` type (its descriptor and its codec in one file), listed
/// in `extensions`, and travels as `Message.other`: adding one breaks no
/// `switch` over `Message` or `MessageType` in dependent code.
public enum MessageRegistry {
    /// The messages of protocol versions 1-3.
    public static let builtIn: [MessageDescriptor] = [
        .init(type: .hello, name: "HELLO", label: "hello", sinceVersion: 1, direction: .toServer),
        .init(type: .welcome, name: "WELCOME", label: "welcome", sinceVersion: 1, direction: .toClient),
        .init(type: .fetch, name: "FETCH", label: "fetch", sinceVersion: 1, direction: .toServer),
        .init(type: .model, name: "MODEL", label: "model", sinceVersion: 1, direction: .toClient),
        .init(
            type: .modelUnchanged, name: "MODEL_UNCHANGED", label: "modelUnchanged", sinceVersion: 1,
            direction: .toClient),
        .init(type: .push, name: "PUSH", label: "push", sinceVersion: 1, direction: .toServer),
        .init(type: .ack, name: "ACK", label: "ack", sinceVersion: 1, direction: .toClient),
        .init(type: .error, name: "ERROR", label: "error", sinceVersion: 1, direction: .either),
        .init(type: .ping, name: "PING", label: "ping", sinceVersion: 1, direction: .either),
        .init(type: .pong, name: "PONG", label: "pong", sinceVersion: 1, direction: .either),
        .init(type: .modelDelta, name: "MODEL_DELTA", label: "modelDelta", sinceVersion: 3, direction: .toClient),
    ]

    /// The messages defined as `ProtocolMessage` types, in landing order.
    public static let extensions: [any ProtocolMessage.Type] = [
        CheckIn.self, Assignment.self, Report.self, EvaluationReport.self, SecAggKeys.self, SecAggRoster.self,
        SecAggShares.self, SecAggInbox.self, SecAggInput.self, SecAggSurvivors.self, SecAggUnmask.self,
        SecAggSignedKeys.self, SecAggSignedRoster.self, SecAggContributors.self, SecAggConsistency.self,
        SecAggSignatures.self,
    ]

    /// Every message defined, in the order of their type bytes.
    public static let all: [MessageDescriptor] = (builtIn + extensions.map { $0.descriptor }).sorted {
        $0.type.rawValue < $1.type.rawValue
    }

    private static let table: [MessageDescriptor?] = {
        var table = [MessageDescriptor?](repeating: nil, count: 256)
        for d in all {
            precondition(table[Int(d.type.rawValue)] == nil, "message type \(d.type.rawValue) defined twice")
            table[Int(d.type.rawValue)] = d
        }
        return table
    }()

    /// The message whose type byte is `rawValue`, if one is defined.
    public static func descriptor(_ rawValue: UInt8) -> MessageDescriptor? { table[Int(rawValue)] }

    /// The `ProtocolMessage` type of `type` among `extensions`.
    static func extensionType(_ type: MessageType, in extensions: [any ProtocolMessage.Type])
        -> (any ProtocolMessage.Type)?
    {
        extensions.first { $0.descriptor.type == type }
    }
}
