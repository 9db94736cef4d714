import FedCodec

/// What trains in `FederationClient.run`: any model whose weights travel as
/// a list of tensors (the server's order and shapes).
///
/// `train` gets a `TrainingTask` (a struct: later protocol features add
/// fields to it without breaking trainers written today) and returns the
/// weights to report with the samples it trained on. `evaluate` (feature
/// `evaluation`) measures a served model on the client's held-out data; its
/// default returns nil: the trainer does not evaluate.
public protocol LocalTrainer {
    mutating func train(_ task: TrainingTask) async throws -> TrainingOutcome
    /// The loss and metrics of `task.weights` on held-out data, or nil when
    /// this trainer does not evaluate.
    mutating func evaluate(_ task: EvaluationTask) async throws -> EvaluationOutcome?
}

/// A train task as the trainer sees it.
public struct TrainingTask: Sendable {
    /// The round the task belongs to.
    public var round: UInt64
    public var taskID: UInt64
    /// The version `weights` are.
    public var modelVersion: UInt64
    /// The server's model at `modelVersion`: train from these. They are also
    /// the base `w_base` of FedProx's proximal term when the server announces
    /// one (``proximalMu``): keep them until training ends.
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

extension LocalTrainer {
    /// A trainer that does not evaluate: nil (the default; `run` then never
    /// states the ability to evaluate).
    public mutating func evaluate(_ task: EvaluationTask) async throws -> EvaluationOutcome? { nil }
}

/// An evaluate task as the trainer sees it (feature `evaluation`): evaluate
/// `weights` on the client's held-out data, never trained on.
public struct EvaluationTask: Sendable {
    public var taskID: UInt64
    /// The version `weights` are (the task's, or a later one the server served).
    public var modelVersion: UInt64
    public var weights: [Tensor]
    /// When the report is due.
    public var deadline: ContinuousClock.Instant

    public init(taskID: UInt64, modelVersion: UInt64, weights: [Tensor], deadline: ContinuousClock.Instant) {
        self.taskID = taskID
        self.modelVersion = modelVersion
        self.weights = weights
        self.deadline = deadline
    }
}

/// What an evaluation found: the examples evaluated (> 0), the mean loss over
/// them, and named means (`accuracy` = correct answers / examples; names of
/// `a-z`, `0-9` and `_`, starting with a letter, at most 64, never `loss`).
public struct EvaluationOutcome: Sendable, Equatable {
    public var examples: UInt64
    public var loss: Double
    public var metrics: [String: Double]

    public init(examples: UInt64, loss: Double, metrics: [String: Double] = [:]) {
        self.examples = examples
        self.loss = loss
        self.metrics = metrics
    }
}
