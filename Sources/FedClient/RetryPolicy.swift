/// When and how often a client tries again after a retryable failure.
///
/// Delay before retry `n` (n = 1 after the first failed attempt), with full jitter:
/// ```
/// delay(n) = jitter * min(maxBackoff, initialBackoff * multiplier^(n-1)),   jitter uniform in [0, 1)
/// ```
/// so clients that failed together come back spread over the whole window
/// rather than in lockstep. At most `maxAttempts` attempts are made, and none
/// starts after `deadline` has passed since the first. Only retryable failures
/// (refused, reset, timed out, an `ERROR` marked retryable) are retried; a
/// rejected update never is. The delay sequence is a pure function of the
/// attempt and the jitter, so tests need no randomness or clock.
public struct RetryPolicy: Sendable, Equatable {
    public var maxAttempts: Int
    public var initialBackoff: Duration
    public var multiplier: Double
    public var maxBackoff: Duration
    /// Overall time budget from the first attempt; nil for none.
    public var deadline: Duration?

    public init(
        maxAttempts: Int = 8, initialBackoff: Duration = .milliseconds(250), multiplier: Double = 2,
        maxBackoff: Duration = .seconds(10), deadline: Duration? = .seconds(120)
    ) {
        precondition(maxAttempts >= 1 && multiplier >= 1)
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.multiplier = multiplier
        self.maxBackoff = maxBackoff
        self.deadline = deadline
    }

    /// The original demo's rule: 2 attempts, a random whole 0-2 s between them.
    public static let original = RetryPolicy(
        maxAttempts: 2, initialBackoff: .seconds(2), multiplier: 1, maxBackoff: .seconds(2), deadline: nil)

    /// The backoff ceiling before retry `retry` (1-based), before jitter.
    public func ceiling(beforeRetry retry: Int) -> Duration {
        let base = Double(initialBackoff.components.seconds) + Double(initialBackoff.components.attoseconds) * 1e-18
        let cap = Double(maxBackoff.components.seconds) + Double(maxBackoff.components.attoseconds) * 1e-18
        let grown = base * pow(multiplier, Double(max(0, retry - 1)))
        return .nanoseconds(Int64(min(cap, grown) * 1e9))
    }

    /// The delay before retry `retry` for a jitter in [0, 1).
    public func delay(beforeRetry retry: Int, jitter: Double) -> Duration {
        let c = ceiling(beforeRetry: retry)
        let ns = Double(c.components.seconds) * 1e9 + Double(c.components.attoseconds) * 1e-9
        return .nanoseconds(Int64(ns * min(max(jitter, 0), 1)))
    }

    /// Runs `body` until it succeeds, it fails with a non-retryable error, the
    /// attempts are used up or the deadline has passed; returns its result or
    /// throws its last error. `onRetry` hears each retry (attempt, delay, error).
    /// Blocks the calling thread while it waits.
    public func run<T>(
        clock: ContinuousClock = ContinuousClock(), random: () -> Double = { Double.random(in: 0..<1) },
        isRetryable: (any Error) -> Bool = ClientError.isRetryable,
        onRetry: (Int, Duration, any Error) -> Void = { _, _, _ in },
        _ body: () throws -> T
    ) throws -> T {
        var retries = Retries(policy: self, clock: clock)
        while true {
            do {
                return try body()
            } catch {
                let wait = try retries.delay(after: error, retryable: isRetryable(error), jitter: random())
                onRetry(retries.attempt - 1, wait, error)
                Thread.sleep(for: wait)
            }
        }
    }

    /// The policy applied to one call: the only place that counts attempts,
    /// draws delays and checks the deadline. Both `run`s (and so every client
    /// of this package, blocking or async) retry through it; they differ only
    /// in how they wait.
    struct Retries {
        let policy: RetryPolicy
        let clock: ContinuousClock
        let start: ContinuousClock.Instant
        /// The attempt under way (1 for the first).
        private(set) var attempt = 1

        init(policy: RetryPolicy, clock: ContinuousClock) {
            self.policy = policy
            self.clock = clock
            start = clock.now
        }

        /// The wait before the next attempt after `error` ended this one.
        /// Throws `error` when it is not `retryable` or the attempts are used
        /// up, and `deadlineExceeded` when the wait would end past the deadline.
        mutating func delay(after error: any Error, retryable: Bool, jitter: Double) throws -> Duration {
            guard retryable, attempt < policy.maxAttempts else { throw error }
            let wait = policy.delay(beforeRetry: attempt, jitter: jitter)
            if let deadline = policy.deadline, clock.now + wait - start > deadline {
                throw RetryPolicy.deadlineExceeded(error)
            }
            attempt += 1
            return wait
        }
    }
}

extension RetryPolicy {
    /// The same for async work, on the caller's actor: sleeps with
    /// `Task.sleep`, so a cancelled task stops waiting at once (`ClientError`
    /// `.cancelled`); no try starts after cancellation.
    public func run<T>(
        isolation: isolated (any Actor)? = #isolation,
        clock: ContinuousClock = ContinuousClock(), random: () -> Double = { Double.random(in: 0..<1) },
        onRetry: (Int, Duration, ClientError) async -> Void = { _, _, _ in },
        _ body: () async throws(ClientError) -> T
    ) async throws(ClientError) -> T {
        try await run(
            isolation: isolation, clock: clock, random: random, onRetry: onRetry,
            sleep: { (wait: Duration) async throws(ClientError) in
                do {
                    try await Task.sleep(for: wait)
                } catch {
                    throw ClientError(code: .cancelled, message: "cancelled while waiting \(wait) to retry")
                }
            }, body)
    }

    /// The same, waiting between attempts with `sleep` (which throws
    /// `cancelled` when the wait is cut short).
    func run<T>(
        isolation: isolated (any Actor)? = #isolation,
        clock: ContinuousClock = ContinuousClock(), random: () -> Double = { Double.random(in: 0..<1) },
        onRetry: (Int, Duration, ClientError) async -> Void = { _, _, _ in },
        sleep: (Duration) async throws(ClientError) -> Void,
        _ body: () async throws(ClientError) -> T
    ) async throws(ClientError) -> T {
        var retries = Retries(policy: self, clock: clock)
        while true {
            if Task.isCancelled { throw ClientError(code: .cancelled, message: "cancelled") }
            do {
                return try await body()
            } catch {
                let wait: Duration
                do {
                    wait = try retries.delay(after: error, retryable: error.isRetryable, jitter: random())
                } catch {
                    // Only `error` itself or `deadlineExceeded` come out of `delay`.
                    throw error as? ClientError ?? ClientError.from(error)
                }
                await onRetry(retries.attempt - 1, wait, error)
                try await sleep(wait)
            }
        }
    }

    /// The error thrown when the deadline leaves no time for another try.
    static func deadlineExceeded(_ last: any Error) -> ClientError {
        ClientError(
            code: .deadlineExceeded, message: "gave up at the retry deadline; last error: \(last)", isRetryable: false,
            cause: last as? ClientError)
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation

extension Thread {
    static func sleep(for d: Duration) {
        let (s, atto) = d.components
        var request = timespec(tv_sec: Int(s), tv_nsec: Int(atto / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
