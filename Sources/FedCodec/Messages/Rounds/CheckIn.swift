/// `CHECK_IN` (version 4): a client offers to work and waits for a task.
///
/// The server answers with one `ASSIGNMENT` when it has a task for the client
/// or when `waitMilliseconds` (capped by the server) has passed: the request
/// is a long poll, so a client never polls in a loop.
public struct CheckIn: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .checkIn, name: "CHECK_IN", label: "checkIn", sinceVersion: 4, direction: .toServer)

    /// What a client can do.
    public struct Abilities: OptionSet, Hashable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Train from a model version and report the result.
        public static let train = Abilities(rawValue: 1 << 0)
        /// Evaluate a model version on local data (evaluate tasks, feature `evaluation`).
        public static let evaluate = Abilities(rawValue: 1 << 1)
    }

    /// The features the client speaks.
    public var features: Features
    public var abilities: Abilities
    /// The longest the client waits for a task, in milliseconds (0: answer at once).
    public var waitMilliseconds: UInt32
    /// What the client says of itself, for selection (`os = linux`, `region = eu`).
    public var properties: [String: String]

    public init(
        features: Features = [], abilities: Abilities = .train, waitMilliseconds: UInt32 = 30_000,
        properties: [String: String] = [:]
    ) {
        self.features = features
        self.abilities = abilities
        self.waitMilliseconds = waitMilliseconds
        self.properties = properties
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(features.rawValue)
        w.u8(abilities.rawValue)
        w.u32(waitMilliseconds)
        KeyValues.write(KeyValues.sorted(properties), into: &w)
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError) -> CheckIn {
        let features = Features(rawValue: try r.u64("features"))
        // Reserved ability bits are ignored, as unknown feature bits are.
        let abilities = Abilities(rawValue: try r.u8("abilities") & 0b11)
        let wait = try r.u32("wait")
        return CheckIn(
            features: features, abilities: abilities, waitMilliseconds: wait,
            properties: try KeyValues.read(&r, "properties"))
    }
}
