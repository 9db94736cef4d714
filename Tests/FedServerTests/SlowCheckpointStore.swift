import FedCodec
import FedStorage
import Foundation
import Synchronization

/// A deliberately slow `CheckpointStore` (a slow or busy disk): each save
/// sleeps a random time in `delay` milliseconds, then saves to an in-memory
/// store. `delay` may be changed while a server uses the store.
final class SlowCheckpointStore: CheckpointStore {
    let base = InMemoryCheckpointStore()
    private let range = Mutex<ClosedRange<Int>>(0...0)
    /// Saves that took at least 1 ms longer on purpose.
    let slowSaves = Atomic<Int>(0)

    var description: String { "a slow in-memory checkpoint store" }

    /// Milliseconds each save sleeps (0...0: none).
    var delay: ClosedRange<Int> {
        get { range.withLock { $0 } }
        set { range.withLock { $0 = newValue } }
    }

    func load() throws -> CheckpointContents? { base.load() }

    func save(_ contents: CheckpointContents) throws {
        let ms = Int.random(in: delay)
        if ms > 0 {
            Thread.sleep(forTimeInterval: Double(ms) / 1000)
            slowSaves.add(1, ordering: .relaxed)
        }
        base.save(contents)
    }
}
