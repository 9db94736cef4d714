import FedCodec

/// Where a server keeps its checkpoint: the model with its state sections
/// (`Protocol/SPEC.md`, section 8), replaced whole by each save.
///
/// An `ACK` promises that the update survives a crash; the promise is only as
/// good as the store. A store must keep this contract (the article "A
/// checkpoint store of your own" explains each point):
/// - `save` returns only once `contents` is durable: whatever the store
///   promises to survive (the process, the machine, a zone) cannot lose them
///   once it has returned.
/// - `save` is atomic: `load` returns the old contents or the new, never a
///   mixture, whenever the save is interrupted.
/// - `load` returns exactly what the last successful `save` was given (the
///   same tensors bit for bit and the same sections in the same order), or
///   nil when nothing was ever saved. A stored checkpoint that cannot be read
///   back is an error, never nil: the server must not start fresh over it.
/// - When `save` throws, the server treats the updates of that save as not
///   stored: it keeps its previous version and state in memory, answers the
///   pushes `internal_error`, and its next save writes everything again. A
///   store should then still hold the old contents; if it cannot tell (a
///   timeout), holding the new ones is also safe, since a repeated push with
///   the same idempotency key is then recognised.
///
/// Threads: the server calls `load` once, while it starts, and `save` only
/// from its committer (a dispatch queue, never an event loop), one call at a
/// time. Both may block for as long as the storage takes: while a save runs,
/// fetches are answered from memory and new updates queue for the next save
/// (group commit).
///
/// `description` names the store in the server's log and in its errors (a
/// file store: its path).
public protocol CheckpointStore: Sendable, CustomStringConvertible {
    /// The contents last saved, nil when nothing has been saved yet. Throws
    /// (an error naming the store and the reason) when something is stored
    /// but cannot be read back.
    func load() throws -> CheckpointContents?

    /// Replaces the stored contents atomically and durably; returns only once
    /// they are durable. Throws, leaving the old contents if it can, on any failure.
    func save(_ contents: CheckpointContents) throws
}

extension CheckpointStore {
    /// The stored checkpoint with its sections read (`Checkpoint.init(contents:limits:)`),
    /// nil when nothing has been saved yet. Throws `FileError` naming the
    /// store when a section cannot be read, or rethrows `load`'s error.
    public func loadCheckpoint(limits: Limits = .default) throws -> Checkpoint? {
        guard let contents = try load() else { return nil }
        do throws(CodecError) {
            return try Checkpoint(contents: contents, limits: limits)
        } catch {
            throw FileError("\(self) is not a usable checkpoint (\(error)); move it away or fix it to continue")
        }
    }

    /// Saves `checkpoint` (its `contents`) as `save(_:)` does.
    public func save(_ checkpoint: Checkpoint) throws {
        try save(checkpoint.contents)
    }
}
