import FedCodec
import Synchronization

/// A checkpoint store in memory: for tests, and for a server embedded in a
/// program that keeps its model elsewhere or needs none to survive.
///
/// Durable only as long as the process (and this object) lives; atomic (a
/// save replaces the contents whole under a lock); never blocks beyond that
/// lock and never throws. Hand the same instance to a new server to restart
/// it from the last save.
public final class InMemoryCheckpointStore: CheckpointStore {
    private struct State {
        var contents: CheckpointContents?
        var saves = 0
    }
    private let state: Mutex<State>

    /// A store holding `contents` (nil: nothing saved yet).
    public init(_ contents: CheckpointContents? = nil) {
        state = Mutex(State(contents: contents))
    }

    public var description: String { "an in-memory checkpoint store" }

    /// The contents last saved (or given to `init`), nil if none.
    public func load() -> CheckpointContents? {
        state.withLock { $0.contents }
    }

    public func save(_ contents: CheckpointContents) {
        state.withLock {
            $0.contents = contents
            $0.saves += 1
        }
    }

    /// Saves so far.
    public var saves: Int { state.withLock { $0.saves } }
}
