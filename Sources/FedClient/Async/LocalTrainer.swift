import FedCodec

/// What trains in `FederationClient.run`: any model whose weights travel as
/// a list of tensors (the server's order and shapes).
///
/// `train` gets a `TrainingTask` (a struct: later protocol features add
/// fields to it without breaking trainers written today) and returns the
/// weights to report with the samples it trained on.
public protocol LocalTrainer {
    mutating func train(_ task: TrainingTask) async throws -> TrainingOutcome
}

/// A train task as the trainer sees it.
public struct TrainingTask: Sendable {
    /// The round the task belongs to.
    public var round: UInt64
    public var taskID: UInt64
    /// The version `weights` are.
    public var modelVersion: UInt64
    /// The server's model at `modelVersion`: train from these.
    public var weights: [Tensor]
    /// The round's parameters, as the server was given them (`epochs = 1`).
    public var parameters: [String: String]
    /// When the report is due; a report after it is refused (`round_closed`).
    public var deadline: ContinuousClock.Instant
    /// The features agreed with the server.
    public var features: Features

    public init(
        round: UInt64, taskID: UInt64, modelVersion: UInt64, weights: [Tensor], parameters: [String: String],
        deadline: ContinuousClock.Instant, features: Features
    ) {
        self.round = round
        self.taskID = taskID
        self.modelVersion = modelVersion
        self.weights = weights
        self.parameters = parameters
        self.deadline = deadline
        self.features = features
    }
}

/// What a trainer returns: the weights to report and the samples behind them.
public struct TrainingOutcome: Sendable {
    public var weights: [Tensor]
    /// Samples trained on in this task (> 0).
    public var samples: UInt64

    public init(weights: [Tensor], samples: UInt64) {
        self.weights = weights
        self.samples = samples
    }
}
