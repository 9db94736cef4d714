import Dispatch
import Synchronization

/// The time rounds run on: what "now" is, and how an action is run later on
/// the rounds' queue (the end of a check-in's wait, the selection window, a
/// round's deadline).
///
/// ``SystemRoundClock`` (the default of ``RoundConfiguration/clock``) is real
/// time; ``VirtualRoundClock`` is time a simulation or a test advances
/// explicitly.
public protocol RoundClock: Sendable {
    /// The current instant.
    func now() -> DispatchTime
    /// Runs `action` on `queue` at `deadline`, or as soon as possible after.
    func run(at deadline: DispatchTime, on queue: DispatchQueue, _ action: @escaping @Sendable () -> Void)
}

/// Real time: `DispatchTime.now()`, and `DispatchQueue.asyncAfter`.
public struct SystemRoundClock: RoundClock {
    public init() {}

    public func now() -> DispatchTime { DispatchTime.now() }

    public func run(at deadline: DispatchTime, on queue: DispatchQueue, _ action: @escaping @Sendable () -> Void) {
        queue.asyncAfter(deadline: deadline, execute: action)
    }
}

/// Time that moves only when told: ``advance(to:)`` runs the actions that
/// fall due, in order of their instants (ties in the order they were
/// scheduled), each on its queue, and returns once they ran.
///
/// Instants are measured from the clock's creation, `.zero`; ``now()`` is
/// `DispatchTime(uptimeNanoseconds:)` of an origin plus ``elapsed``, so
/// instants are comparable with each other but not with real time. Every
/// method may be called from any thread except ``advance(to:)``, which runs
/// the actions with `queue.sync` and so must not be called on a queue an
/// action runs on.
public final class VirtualRoundClock: RoundClock {
    private struct Timer {
        var at: UInt64
        var order: UInt64
        var queue: DispatchQueue
        var action: @Sendable () -> Void
    }

    private struct State {
        var elapsed: UInt64 = 0
        var timers: [Timer] = []
        var scheduled: UInt64 = 0
    }

    /// An origin well after 0 (`DispatchTime` reads 0 as "now").
    private static let origin: UInt64 = 1_000_000_000
    private let state = Mutex(State())

    /// A clock at `.zero` with nothing scheduled.
    public init() {}

    public func now() -> DispatchTime {
        DispatchTime(uptimeNanoseconds: Self.origin + state.withLock { $0.elapsed })
    }

    public func run(at deadline: DispatchTime, on queue: DispatchQueue, _ action: @escaping @Sendable () -> Void) {
        let at = deadline.uptimeNanoseconds >= Self.origin ? deadline.uptimeNanoseconds - Self.origin : 0
        state.withLock {
            $0.scheduled += 1
            $0.timers.append(Timer(at: at, order: $0.scheduled, queue: queue, action: action))
        }
    }

    /// Time since the clock was made.
    public var elapsed: Duration { .nanoseconds(state.withLock { $0.elapsed }) }

    /// When the earliest action scheduled falls due (possibly already), or
    /// nil when none is.
    public var nextDeadline: Duration? {
        state.withLock { s in s.timers.map(\.at).min().map { .nanoseconds($0) } }
    }

    /// Actions scheduled and not yet run.
    public var pending: Int { state.withLock { $0.timers.count } }

    /// Moves to `instant` (never back: an earlier instant only runs what is
    /// already due), running every action due by then in order; during an
    /// action, ``now()`` is its instant. An action scheduled by another for
    /// an instant already passed runs before `advance` returns.
    public func advance(to instant: Duration) {
        let (seconds, attoseconds) = instant.components
        let target = seconds < 0 ? 0 : UInt64(seconds) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
        while true {
            let next: Timer? = state.withLock { s in
                guard
                    let i = s.timers.indices.min(by: {
                        (s.timers[$0].at, s.timers[$0].order) < (s.timers[$1].at, s.timers[$1].order)
                    }),
                    s.timers[i].at <= max(target, s.elapsed)
                else { return nil }
                let t = s.timers.remove(at: i)
                s.elapsed = max(s.elapsed, t.at)
                return t
            }
            guard let next else { break }
            next.queue.sync(execute: next.action)
        }
        state.withLock { $0.elapsed = max($0.elapsed, target) }
    }

    /// Moves `duration` on (``advance(to:)``).
    public func advance(by duration: Duration) { advance(to: elapsed + duration) }
}
