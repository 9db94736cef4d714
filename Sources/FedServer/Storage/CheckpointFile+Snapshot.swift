import FedCodec
import FedStorage

extension CheckpointFile {
    /// Writes `snapshot` and the state that must survive with it, as `CheckpointFile.write` does.
    public static func save(_ snapshot: ModelSnapshot, durable: ModelStore.Durable = .init(), to path: String) throws {
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
        try write(
            Checkpoint(
                version: snapshot.version, datasets: snapshot.datasets, tensors: snapshot.tensors,
                recentPushes: Array(durable.recentPushes.all), strategyState: strategy),
            to: path)
    }

    /// The snapshot stored at `path`, nil if no file exists there; errors as `CheckpointFile.read`.
    public static func load(from path: String) throws -> ModelSnapshot? {
        try loadState(from: path)?.snapshot
    }

    /// The snapshot and the durable state stored at `path`, nil if no file exists there.
    public static func loadState(from path: String) throws -> (snapshot: ModelSnapshot, durable: ModelStore.Durable)? {
        guard let ck = try read(from: path) else { return nil }
        let s = ck.strategyState ?? StrategyRecord()
        return (
            ModelSnapshot(version: ck.version, datasets: ck.datasets, tensors: ck.tensors),
            ModelStore.Durable(
                // Keys of a checkpoint that kept no times are kept as if accepted now.
                recentPushes: PushLedger(
                    ck.recentPushes.map { p in
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
