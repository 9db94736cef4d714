import FedCodec
import FedStorage

extension Checkpoint {
    /// `snapshot` with the state that must survive with it: the recent
    /// pushes and the strategy's buffer, tensors and scalars.
    init(_ snapshot: ModelSnapshot, durable: ModelStore.Durable) {
        let strategy =
            durable.buffer.isEmpty && durable.tensors.isEmpty && durable.scalars.isEmpty
            ? nil
            : StrategyRecord(
                buffer: durable.buffer.map {
                    StrategyRecord.Buffered(
                        clientID: $0.clientID, samples: $0.samples, staleness: $0.staleness, weight: $0.weight,
                        norm: $0.norm, delta: $0.delta)
                },
                tensors: durable.tensors, scalars: durable.scalars)
        self.init(
            version: snapshot.version, datasets: snapshot.datasets, tensors: snapshot.tensors,
            recentPushes: Array(durable.recentPushes.all), strategyState: strategy)
    }

    /// The snapshot and the durable state this checkpoint holds.
    var state: (snapshot: ModelSnapshot, durable: ModelStore.Durable) {
        let s = strategyState ?? StrategyRecord()
        return (
            ModelSnapshot(version: version, datasets: datasets, tensors: tensors),
            ModelStore.Durable(
                // Keys of a checkpoint that kept no times are kept as if accepted now.
                recentPushes: PushLedger(
                    recentPushes.map { p in
                        var p = p
                        if p.acceptedAt == 0 { p.acceptedAt = PushLedger.wallClock() }
                        return p
                    }),
                buffer: s.buffer.map {
                    BufferedUpdate(
                        clientID: $0.clientID, delta: $0.delta, weight: $0.weight, samples: $0.samples,
                        staleness: $0.staleness, norm: $0.norm)
                },
                tensors: s.tensors, scalars: s.scalars)
        )
    }
}

/// Any store saving and loading the server's snapshot with its state sections.
extension CheckpointStore {
    /// Saves `snapshot` and the state that must survive with it in one
    /// atomic save (`save(_:)`'s contract and errors).
    public func save(_ snapshot: ModelSnapshot, durable: ModelStore.Durable = .init()) throws {
        try save(Checkpoint(snapshot, durable: durable))
    }

    /// The snapshot and the durable state last saved, nil when nothing has
    /// been saved; errors as `loadCheckpoint`.
    public func loadState() throws -> (snapshot: ModelSnapshot, durable: ModelStore.Durable)? {
        try loadCheckpoint()?.state
    }
}

/// Checkpoint files read and written as the server's snapshots and state.
extension CheckpointFile {
    /// Writes `snapshot` and the state that must survive with it, as `CheckpointFile.write` does.
    public static func save(_ snapshot: ModelSnapshot, durable: ModelStore.Durable = .init(), to path: String) throws {
        try FileCheckpointStore(path: path).save(snapshot, durable: durable)
    }

    /// The snapshot stored at `path`, nil if no file exists there; errors as `CheckpointFile.read`.
    public static func load(from path: String) throws -> ModelSnapshot? {
        try loadState(from: path)?.snapshot
    }

    /// The snapshot and the durable state stored at `path`, nil if no file exists there.
    public static func loadState(from path: String) throws -> (snapshot: ModelSnapshot, durable: ModelStore.Durable)? {
        try FileCheckpointStore(path: path).loadState()
    }
}
