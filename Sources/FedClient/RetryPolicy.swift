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
    public func run<T>(
        clock: ContinuousClock = ContinuousClock(), random: () -> Double = { Double.random(in: 0..<1) },
        isRetryable: (any Error) -> Bool = ClientError.isRetryable,
        onRetry: (Int, Duration, any Error) -> Void = { _, _, _ in },
        _ body: () throws -> T
    ) throws -> T {
        let start = clock.now
        var attempt = 1
        while true {
            do {
                return try body()
            } catch {
                guard isRetryable(error), attempt < maxAttempts else { throw error }
                let wait = delay(beforeRetry: attempt, jitter: random())
                if let deadline, clock.now + wait - start > deadline { throw Self.deadlineExceeded(error) }
                onRetry(attempt, wait, error)
                Thread.sleep(for: wait)
                attempt += 1
            }
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
        let start = clock.now
        var attempt = 1
        while true {
            if Task.isCancelled { throw ClientError(code: .cancelled, message: "cancelled") }
            do {
                return try await body()
            } catch {
                guard error.isRetryable, attempt < maxAttempts else { throw error }
                let wait = delay(beforeRetry: attempt, jitter: random())
                if let deadline, clock.now + wait - start > deadline { throw Self.deadlineExceeded(error) }
                await onRetry(attempt, wait, error)
                do {
                    try await Task.sleep(for: wait)
                } catch {
                    throw ClientError(code: .cancelled, message: "cancelled while waiting \(wait) to retry")
                }
                attempt += 1
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
