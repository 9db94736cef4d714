import FedCodec

/// Reads and writes checkpoint files (Protocol/SPEC.md, section 8): the
/// model at rest, used by the server and by tools that only read a model
/// (`fed evaluate`), without any networking. The same as a
/// `FileCheckpointStore` at the path.
public enum CheckpointFile {
    /// Writes `checkpoint` atomically and durably (temporary file, fsync,
    /// rename, fsync of the folder); throws `FileError` and leaves the old
    /// file in place on any failure.
    public static func write(_ checkpoint: Checkpoint, to path: String) throws {
        try FileCheckpointStore(path: path).save(checkpoint)
    }

    /// The checkpoint stored at `path`, nil if no file exists there. A file that
    /// exists but is not a valid checkpoint is an error that names the file
    /// and the reason: the server must stop rather than silently start fresh.
    public static func read(from path: String) throws -> Checkpoint? {
        try FileCheckpointStore(path: path).loadCheckpoint()
    }
}
