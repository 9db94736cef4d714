import FedCodec

/// Updates an edge server has gathered, as one update for its upstream: the
/// sample-weighted mean of their weights and the sum of their sample counts.
///
/// With the running average upstream, pushing `(mean, samples)` moves the
/// upstream model exactly as pushing each update would have (in exact
/// arithmetic): `(a W + sum b_i Wc_i) / (a + sum b_i)` does not depend on
/// how the updates are grouped.
public struct EdgeBatch: Sendable, Equatable {
    /// `sum b_i Wc_i / sum b_i` over the gathered updates.
    public var weights: [Tensor]
    /// `sum b_i`: the `datasets` of the upstream push.
    public var samples: UInt64
    /// How many client updates it holds.
    public var updates: Int
    /// The upstream push's idempotency key; 0 while the batch is still gathering.
    public var pushID: UInt64
    /// The upstream version the edge served while the batch gathered (the
    /// upstream push's `base_version`).
    public var baseVersion: UInt64

    public init(weights: [Tensor], samples: UInt64, updates: Int, pushID: UInt64 = 0, baseVersion: UInt64 = 0) {
        self.weights = weights
        self.samples = samples
        self.updates = updates
        self.pushID = pushID
        self.baseVersion = baseVersion
    }

    /// Folds in one update of `samples` samples (a running weighted mean,
    /// the weights `B/(B+b)` and `b/(B+b)` computed in Double).
    mutating func add(_ tensors: [Tensor], samples b: UInt64) {
        let total = samples &+ b
        let wa = Float(Double(samples) / Double(total))
        let wb = Float(Double(b) / Double(total))
        for t in weights.indices {
            weights[t].values.withUnsafeMutableBufferPointer { o in
                tensors[t].values.withUnsafeBufferPointer { u in
                    for i in 0..<o.count { o[i] = wa * o[i] + wb * u[i] }
                }
            }
        }
        samples = total
        updates += 1
    }
}

/// The names under which an edge's state is kept in the strategy state (SPEC 9.1).
enum EdgeKey {
    static let pending = "edge.pending"
    static let outbox = "edge.outbox"
    static let upstreamVersion = "edge.upstream.version"
    static let nextPush = "edge.push.next"
}

extension ModelStore.Durable {
    /// Client updates an edge holds: gathering, and in the outbox not yet acknowledged upstream.
    var edgeUpdates: Int { edgePendingUpdates + edgeOutboxUpdates }
    /// Client updates in the gathering batch.
    var edgePendingUpdates: Int { Int(scalars[EdgeKey.pending + ".updates"] ?? 0) }
    /// Client updates in the outbox, not yet acknowledged upstream.
    var edgeOutboxUpdates: Int { Int(scalars[EdgeKey.outbox + ".updates"] ?? 0) }
    /// Whether an edge has a batch gathering or waiting in its outbox.
    var holdsEdgeBatch: Bool { tensors[EdgeKey.pending] != nil || tensors[EdgeKey.outbox] != nil }
    /// The upstream version the edge's model was taken from; nil before it took one.
    var edgeUpstreamVersion: UInt64? { scalars[EdgeKey.upstreamVersion].map { UInt64($0) } }
}

/// Where an edge server keeps its batches: in the strategy state, so they are
/// written to the checkpoint with every acknowledgement (an acknowledged
/// update survives `kill -9` in the gathering batch or in the outbox).
extension FederationState {
    /// The batch still gathering client updates.
    public var edgePending: EdgeBatch? {
        get { edgeBatch(EdgeKey.pending) }
        set { setEdgeBatch(newValue, EdgeKey.pending) }
    }

    /// The batch being pushed upstream (kept until the upstream acknowledges
    /// it, and pushed again with the same push id after a crash).
    public var edgeOutbox: EdgeBatch? {
        get { edgeBatch(EdgeKey.outbox) }
        set { setEdgeBatch(newValue, EdgeKey.outbox) }
    }

    /// The upstream version the edge's model was taken from (0 also before it took one).
    public var edgeUpstreamVersion: UInt64 {
        get { UInt64(scalars[EdgeKey.upstreamVersion] ?? 0) }
        set { scalars[EdgeKey.upstreamVersion] = Double(newValue) }
    }

    /// The next upstream push id. Starts at a random value below 2^52 (so a
    /// lost checkpoint does not restart at ids the upstream remembers) and is
    /// stored as a Double, exact below 2^53.
    mutating func takeEdgePushID() -> UInt64 {
        let next = scalars[EdgeKey.nextPush].map { UInt64($0) } ?? UInt64.random(in: (1 << 40)..<(1 << 52))
        scalars[EdgeKey.nextPush] = Double(next + 1)
        return next
    }

    private func edgeBatch(_ key: String) -> EdgeBatch? {
        guard let weights = tensors[key], let samples = scalars[key + ".samples"] else { return nil }
        return EdgeBatch(
            weights: weights, samples: UInt64(samples), updates: Int(scalars[key + ".updates"] ?? 0),
            pushID: UInt64(scalars[key + ".push"] ?? 0), baseVersion: UInt64(scalars[key + ".base"] ?? 0))
    }

    private mutating func setEdgeBatch(_ batch: EdgeBatch?, _ key: String) {
        tensors[key] = batch?.weights
        scalars[key + ".samples"] = batch.map { Double($0.samples) }
        scalars[key + ".updates"] = batch.map { Double($0.updates) }
        scalars[key + ".push"] = batch.map { Double($0.pushID) }
        scalars[key + ".base"] = batch.map { Double($0.baseVersion) }
    }
}

/// An edge server's strategy: every accepted update joins the gathering
/// `EdgeBatch`, weighted by its samples (per-update counts: running totals
/// turned into counts and capped at `--max-update-samples`, section 4.2);
/// no version is published (the edge's model is its upstream's, taken by
/// `EdgeUplink`). Acknowledgements carry the edge's current version, as for
/// any buffered update.
public struct EdgeAccumulator: FederationStrategy {
    public init() {}
    public var name: String { "edge" }
    /// The edge forwards weights, not deltas: staleness is its upstream's business.
    public var usesStaleness: Bool { false }

    public func accept(_ update: ClientUpdate, state: inout FederationState) -> Bool {
        if var batch = state.edgePending {
            batch.add(update.weights, samples: update.samples)
            state.edgePending = batch
        } else {
            state.edgePending = EdgeBatch(
                weights: update.weights, samples: update.samples, updates: 1, baseVersion: state.edgeUpstreamVersion)
        }
        return false
    }
}
