import FedCodec

/// How the server turns accepted updates into model versions: the
/// extension point for federation algorithms (Protocol/SPEC.md section 4.2).
///
/// The server calls `accept` once per validated update, in the order updates
/// are committed, with the model and the strategy's own state (a buffer,
/// optimizer moments) in `state`. The strategy changes `state` and returns
/// whether a new model version is published now. `state` is staged: it is
/// kept (and written to the checkpoint with the model, so a buffered update
/// survives a crash) only if the commit succeeds, so `accept` must do
/// everything through `state` and keep nothing of its own.
public protocol FederationStrategy: Sendable {
    /// A short name for logs and `fed simulate` tables.
    var name: String { get }
    /// Folds `update` into `state`; true when `state.weights` is a new version to publish.
    func accept(_ update: ClientUpdate, state: inout FederationState) -> Bool
    /// Whether an update's staleness matters to this strategy: when it does,
    /// the server refuses (`stale_base`, version 2) an update trained from a
    /// version more than `maxStaleness` behind. Default true.
    var usesStaleness: Bool { get }
}

extension FederationStrategy {
    public var usesStaleness: Bool { true }
}

/// One accepted update as a strategy sees it.
public struct ClientUpdate: Sendable {
    public var clientID: String
    /// The client's weights (validated: the model's shapes, finite values).
    public var weights: [Tensor]
    /// `datasets` as the client sent it (the original's clients send a running total).
    public var claimedSamples: UInt64
    /// The samples this update was trained on: the claim, or for a running
    /// total the claim minus the model's count at the base version, capped
    /// at the server's `maxUpdateSamples`.
    public var samples: UInt64
    /// The version the client trained from (after the fallbacks of section 4.2).
    public var baseVersion: UInt64
    /// `current version - baseVersion`.
    public var staleness: UInt64
    /// The weights of `baseVersion`, when the server still retains them.
    public var base: [Tensor]?

    public init(
        clientID: String, weights: [Tensor], claimedSamples: UInt64, samples: UInt64, baseVersion: UInt64,
        staleness: UInt64, base: [Tensor]?
    ) {
        self.clientID = clientID
        self.weights = weights
        self.claimedSamples = claimedSamples
        self.samples = samples
        self.baseVersion = baseVersion
        self.staleness = staleness
        self.base = base
    }

    /// `weights - base` (the client's progress), or nil without a base.
    public var delta: [Tensor]? {
        guard let base else { return nil }
        return zip(weights, base).map { w, b in
            var d = w
            for i in d.values.indices { d.values[i] = w.values[i] - b.values[i] }
            return d
        }
    }
}

/// The model and a strategy's state: what the server stages, publishes and checkpoints.
public struct FederationState: Sendable, Equatable {
    /// The model's weights (a new version when `accept` returns true).
    public var weights: [Tensor]
    /// Samples the model has been trained on (`datasets` in MODEL and ACK).
    public var samples: UInt64
    /// Updates waiting to be combined (buffered strategies).
    public var buffer: [BufferedUpdate]
    /// Named tensor lists a strategy keeps across versions (optimizer moments).
    public var tensors: [String: [Tensor]]
    /// Named numbers a strategy keeps (an adaptive clipping norm, a step count).
    public var scalars: [String: Double]

    public init(
        weights: [Tensor], samples: UInt64, buffer: [BufferedUpdate] = [], tensors: [String: [Tensor]] = [:],
        scalars: [String: Double] = [:]
    ) {
        self.weights = weights
        self.samples = samples
        self.buffer = buffer
        self.tensors = tensors
        self.scalars = scalars
    }
}

/// An update held in a strategy's buffer until it is combined.
public struct BufferedUpdate: Sendable, Equatable {
    public var clientID: String
    /// `weights - base`, already clipped if the strategy clips.
    public var delta: [Tensor]
    /// Its weight in a weighted mean (staleness and samples folded in).
    public var weight: Double
    /// Samples behind it (added to the model's count when combined).
    public var samples: UInt64
    public var staleness: UInt64
    /// The delta's L2 norm before clipping (for adaptive clipping).
    public var norm: Double

    public init(clientID: String, delta: [Tensor], weight: Double, samples: UInt64, staleness: UInt64, norm: Double) {
        self.clientID = clientID
        self.delta = delta
        self.weight = weight
        self.samples = samples
        self.staleness = staleness
        self.norm = norm
    }
}

/// A strategy that takes a whole cohort's aggregate as one buffer: under
/// secure aggregation the server learns only a cohort's sum, never an update
/// of its own (``RoundConfiguration/Admission/cohorts(inFlight:)``).
public protocol CohortStrategy: FederationStrategy {
    /// Applies the sample-weighted mean delta `meanDelta` (the cohort's mean
    /// minus the model it trained from, which is `staleness` versions behind
    /// the current one) to `state.weights`, with the strategy's state (an
    /// optimizer's moments) in `state`. The caller counts the cohort's samples.
    func applyCohort(meanDelta: [Tensor], staleness: UInt64, state: inout FederationState)
}
