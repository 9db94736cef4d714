/// `ASSIGNMENT` (version 4): the server's answer to `CHECK_IN`: a task, or
/// when to come back.
public struct Assignment: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .assignment, name: "ASSIGNMENT", label: "assignment", sinceVersion: 4, direction: .toClient)

    /// What the client is asked to do. A kind a client does not know (defined
    /// by a feature it did not agree on) is read as `comeBack`.
    public struct Kind: RawRepresentable, Hashable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// No task now: check in again after `retryAfterMilliseconds`.
        public static let comeBack = Kind(rawValue: 0)
        /// Train from `modelVersion` with `parameters`, then `REPORT` before the deadline.
        public static let train = Kind(rawValue: 1)
        /// Feature `evaluation`: evaluate `modelVersion` (or a later version)
        /// on the client's held-out data, then `EVALUATION_REPORT` before the deadline.
        public static let evaluate = Kind(rawValue: 2)
        /// Feature `secure aggregation`: train from `modelVersion`, then take part
        /// in the round's secure aggregation (`SECAGG_KEYS` first) with the
        /// parameters `secagg.*` (section 12.11).
        public static let secureTrain = Kind(rawValue: 3)
    }

    /// Why a client is told to come back.
    public struct Reason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let none = Reason(rawValue: 0)
        /// The client's wait ended before a round needed it.
        public static let noTask = Reason(rawValue: 1)
        /// A round is running with its cohort selected.
        public static let roundFull = Reason(rawValue: 2)
        /// The server is stopping.
        public static let shuttingDown = Reason(rawValue: 3)
        /// The federation has run all its rounds: nothing more will come.
        public static let finished = Reason(rawValue: 4)
        /// The server's privacy budget is spent: one more version would exceed
        /// its target epsilon, so no more rounds will run.
        public static let budgetSpent = Reason(rawValue: 5)

        public var description: String {
            switch self {
            case .none: "none"
            case .noTask: "no task"
            case .roundFull: "round full"
            case .shuttingDown: "shutting down"
            case .finished: "finished"
            case .budgetSpent: "privacy budget spent"
            default: "reason \(rawValue)"
            }
        }
    }

    public var kind: Kind
    /// The features agreed: the check-in's and the server's.
    public var features: Features
    /// The task's id, named by its `REPORT`; 0 for `comeBack`.
    public var taskID: UInt64
    /// The round the task belongs to (0 for `comeBack`).
    public var round: UInt64
    /// The model version to start from.
    public var modelVersion: UInt64
    /// Milliseconds left, from this message, to report.
    public var deadlineMilliseconds: UInt32
    /// `comeBack`: milliseconds after which to check in again.
    public var retryAfterMilliseconds: UInt32
    public var reason: Reason
    /// The round's parameters (`epochs = 1`, `learning_rate = 0.001`).
    public var parameters: [String: String]

    public init(
        kind: Kind, features: Features = [], taskID: UInt64 = 0, round: UInt64 = 0, modelVersion: UInt64 = 0,
        deadlineMilliseconds: UInt32 = 0, retryAfterMilliseconds: UInt32 = 0, reason: Reason = .none,
        parameters: [String: String] = [:]
    ) {
        self.kind = kind
        self.features = features
        self.taskID = taskID
        self.round = round
        self.modelVersion = modelVersion
        self.deadlineMilliseconds = deadlineMilliseconds
        self.retryAfterMilliseconds = retryAfterMilliseconds
        self.reason = reason
        self.parameters = parameters
    }

    /// Come back after `milliseconds`, for `reason`.
    public static func comeBack(after milliseconds: UInt32, _ reason: Reason, features: Features = [])
        -> Assignment
    {
        Assignment(kind: .comeBack, features: features, retryAfterMilliseconds: milliseconds, reason: reason)
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u8(kind.rawValue)
        w.u64(features.rawValue)
        w.u64(taskID)
        w.u64(round)
        w.u64(modelVersion)
        w.u32(deadlineMilliseconds)
        w.u32(retryAfterMilliseconds)
        w.u8(reason.rawValue)
        KeyValues.write(KeyValues.sorted(parameters), into: &w)
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> Assignment
    {
        let kind = Kind(rawValue: try r.u8("kind"))
        let features = Features(rawValue: try r.u64("features"))
        let taskID = try r.u64("task id")
        let round = try r.u64("round")
        let modelVersion = try r.u64("model version")
        let deadline = try r.u32("deadline")
        let retryAfter = try r.u32("retry after")
        let reason = Reason(rawValue: try r.u8("reason"))
        if (kind == .train || kind == .evaluate || kind == .secureTrain) && taskID == 0 {
            throw CodecError(.malformedPayload, "a task with task id 0")
        }
        return Assignment(
            kind: kind, features: features, taskID: taskID, round: round, modelVersion: modelVersion,
            deadlineMilliseconds: deadline, retryAfterMilliseconds: retryAfter, reason: reason,
            parameters: try KeyValues.read(&r, "parameters"))
    }
}
