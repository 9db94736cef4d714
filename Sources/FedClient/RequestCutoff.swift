import Dispatch
import Synchronization

/// A time, settable from any thread, at which every operation given it ends
/// (`ClientError` `.cancelled`), including one already waiting when it is
/// set: the operations of a `Connection`, the calls of a `BinaryTransport`.
/// None until `cut`; it only moves earlier.
public final class RequestCutoff: Sendable {
    private let nanoseconds = Atomic<UInt64>(.max)
    /// Who hears each new time (calls waiting now), by registration number.
    private let watchers = Mutex<(next: Int, all: [Int: @Sendable (DispatchTime) -> Void])>((0, [:]))

    public init() {}

    /// The time operations end; `.distantFuture` until `cut`.
    public var time: DispatchTime {
        let n = nanoseconds.load(ordering: .acquiring)
        return n == .max ? .distantFuture : DispatchTime(uptimeNanoseconds: n)
    }

    /// Ends operations at `time` (at once if it has passed), unless an earlier time was set.
    public func cut(at time: DispatchTime) {
        // A compare-exchange loop, not `Atomic.min`: for UInt64 that compares as signed on Swift 6.3 for
        // Linux (UInt64.max counts as -1, so nothing is ever below it) and stores nothing here.
        var current = nanoseconds.load(ordering: .acquiring)
        while time.uptimeNanoseconds < current {
            let (exchanged, found) = nanoseconds.compareExchange(
                expected: current, desired: time.uptimeNanoseconds, ordering: .acquiringAndReleasing)
            if exchanged {
                for watcher in watchers.withLock({ Array($0.all.values) }) { watcher(time) }
                return
            }
            current = found
        }
    }

    /// Calls `watcher` with the cutoff's time now if one is set, and with
    /// every earlier time set later, until `unwatch` with the number returned.
    func watch(_ watcher: @escaping @Sendable (DispatchTime) -> Void) -> Int {
        let id = watchers.withLock { w in
            defer { w.next += 1 }
            w.all[w.next] = watcher
            return w.next
        }
        if nanoseconds.load(ordering: .acquiring) != .max { watcher(time) }
        return id
    }

    func unwatch(_ id: Int) {
        _ = watchers.withLock { $0.all.removeValue(forKey: id) }
    }
}
