import FedCodec
import FedStorage

extension CheckpointFile {
    /// Writes `snapshot` (its recent pushes included) as `CheckpointFile.write` does.
    public static func save(_ snapshot: ModelSnapshot, to path: String) throws {
        try write(
            Checkpoint(
                version: snapshot.version, datasets: snapshot.datasets, tensors: snapshot.tensors,
                recentPushes: snapshot.recentPushes),
            to: path)
    }

    /// The snapshot stored at `path`, nil if no file exists there; errors as `CheckpointFile.read`.
    public static func load(from path: String) throws -> ModelSnapshot? {
        try read(from: path).map {
            ModelSnapshot(
                version: $0.version, datasets: $0.datasets, tensors: $0.tensors, recentPushes: $0.recentPushes)
        }
    }
}
