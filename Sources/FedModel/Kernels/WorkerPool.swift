import Foundation
import Synchronization

/// Helper threads that run the parts of one job at a time together with the
/// calling thread: the products of a batch-32 training step take 10-70 us,
/// too short for `DispatchQueue.concurrentPerform`, whose wake-up alone costs
/// about as much (two threads that way were slower than one).
///
/// How a job runs: `run(parts:_:)` publishes it, then the caller claims parts
/// from the job's atomic counter like any helper until none is left, and
/// finally waits only for parts a helper has already claimed. So a helper that
/// is asleep, slow to wake or descheduled never holds the caller up for work
/// it has not started: at worst the caller runs every part itself, as with one
/// thread. Which thread runs a part does not change what it computes, so when
/// parts write disjoint outputs the result is the same for any thread count.
///
/// Idle helpers watch for the next job for about `spinChecks` loads (tens of
/// microseconds: a training step posts its products microseconds apart), then
/// sleep on a condition variable until a job is posted. One job runs at a
/// time: a caller that finds the pool busy (another thread is training, or a
/// part itself calls `run`) runs all its parts on its own thread.
///
/// Invariants: a job's body is called once per part in `0..<parts`; `run`
/// returns only after every call has returned; a helper that picks up a job
/// after it finished finds no part to claim and never calls its body.
///
/// Sendable by argument: its mutable state is the atomics and the job slot,
/// which is read and written only under `mutex`.
public final class WorkerPool: @unchecked Sendable {
    /// The process-wide pool: one helper per processor beyond the first, up to 7.
    public static let shared = WorkerPool(helpers: min(7, max(0, ProcessInfo.processInfo.activeProcessorCount - 1)))

    /// Number of helper threads; `run` uses at most `helpers + 1` threads.
    public let helpers: Int

    /// Loads of the job counter an idle helper makes before it sleeps.
    static let spinChecks = 20_000

    /// Sendable by argument: `body` is a non-`@Sendable` closure run on helper
    /// threads. That is safe because `run` does not return (and so the
    /// caller's captured state does not change) until every part has
    /// finished, and callers give it bodies that write disjoint ranges.
    private final class Job: @unchecked Sendable {
        let body: (Int) -> Void
        let parts: Int
        let nextPart = Atomic<Int>(0)
        let finishedParts = Atomic<Int>(0)

        init(parts: Int, body: @escaping (Int) -> Void) {
            self.parts = parts
            self.body = body
        }

        /// Claims and runs parts until none is left.
        func work() {
            while true {
                let part = nextPart.wrappingAdd(1, ordering: .relaxed).oldValue
                guard part < parts else { return }
                body(part)
                finishedParts.wrappingAdd(1, ordering: .releasing)
            }
        }
    }

    /// Bumped (under `mutex`) each time a job is published; helpers spin on it.
    private let posted = Atomic<Int>(0)
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Guarded by `mutex`.
    private var current: Job?
    private var sleepers = 0

    /// Starts `helpers` threads that live as long as the process.
    public init(helpers: Int) {
        self.helpers = max(0, helpers)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        for index in 0..<self.helpers {
            let thread = Thread { [self] in helperLoop() }
            thread.name = "fed-kernels-\(index + 1)"
            thread.start()
        }
    }

    /// Calls `body(part)` for every part in `0..<parts`, on this thread and the
    /// helpers, and returns when all calls have returned. Parts must not depend
    /// on each other's results.
    public func run(parts: Int, _ body: @escaping (Int) -> Void) {
        guard parts > 1, helpers > 0 else {
            for part in 0..<max(parts, 0) { body(part) }
            return
        }
        let job = Job(parts: parts, body: body)
        pthread_mutex_lock(mutex)
        guard current == nil else {
            pthread_mutex_unlock(mutex)
            for part in 0..<parts { body(part) }
            return
        }
        current = job
        posted.wrappingAdd(1, ordering: .releasing)
        if sleepers > 0 { pthread_cond_broadcast(wake) }
        pthread_mutex_unlock(mutex)

        job.work()
        var checks = 0
        while job.finishedParts.load(ordering: .acquiring) < parts {
            checks += 1
            if checks > 64 { sched_yield() }  // let a descheduled helper finish its part
        }
        pthread_mutex_lock(mutex)
        current = nil
        pthread_mutex_unlock(mutex)
    }

    private func helperLoop() -> Never {
        var seen = 0
        while true {
            var checks = 0
            while posted.load(ordering: .acquiring) == seen && checks < Self.spinChecks { checks += 1 }
            pthread_mutex_lock(mutex)
            while posted.load(ordering: .relaxed) == seen {
                sleepers += 1
                pthread_cond_wait(wake, mutex)
                sleepers -= 1
            }
            seen = posted.load(ordering: .relaxed)
            let job = current
            pthread_mutex_unlock(mutex)
            job?.work()
        }
    }
}
