import Dispatch
import Foundation
import Synchronization

/// The one load generator of the benchmarks: `clients` threads, each with a
/// client of its own opened by `open`, run `step` in a loop for `seconds`
/// (at least once each) and time every call.
///
/// Each client is used by its thread alone and handed back after every
/// thread has finished, so callers can read its counters (bytes sent and
/// received). The first error of any thread fails the run with its text.
enum LoadGenerator {
    struct Run<Client> {
        /// Every step's duration in seconds, sorted.
        var latencies: [Double]
        /// Wall time from the start to the last thread's end.
        var elapsed: Double
        /// The clients, in the order of their index.
        var clients: [Client]

        var count: Int { latencies.count }
        var p50: Double { latencies.isEmpty ? 0 : latencies[latencies.count / 2] }
        var p99: Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, latencies.count * 99 / 100)] }
        /// Steps per second over `seconds`.
        func rate(over seconds: Double) -> Double { Double(latencies.count) / seconds }
    }

    /// Holds a non-Sendable client while it crosses from its thread back to
    /// the caller; safe because only one thread touches it at a time (its
    /// own, then, after `DispatchGroup.wait`, the caller's).
    private final class Handoff<Client>: @unchecked Sendable {
        var client: Client?
    }

    static func run<Client>(
        clients: Int, seconds: Double, open: @escaping @Sendable (Int) throws -> Client,
        step: @escaping @Sendable (Client) throws -> Void
    ) throws -> Run<Client> {
        let shared = Mutex<(latencies: [Double], error: String?)>(([], nil))
        let handoffs = (0..<clients).map { _ in Handoff<Client>() }
        let group = DispatchGroup()
        let start = Date()
        for i in 0..<clients {
            group.enter()
            let handoff = handoffs[i]
            Thread {
                defer { group.leave() }
                do {
                    let client = try open(i)
                    var local: [Double] = []
                    repeat {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        try step(client)
                        local.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                    } while Date().timeIntervalSince(start) < seconds
                    handoff.client = client
                    let done = local
                    shared.withLock { $0.latencies += done }
                } catch {
                    shared.withLock { $0.error = $0.error ?? "\(error)" }
                }
            }.start()
        }
        group.wait()
        let elapsed = Date().timeIntervalSince(start)
        let (latencies, error) = shared.withLock { $0 }
        if let error { throw LoadError(description: error) }
        return Run(latencies: latencies.sorted(), elapsed: elapsed, clients: handoffs.compactMap(\.client))
    }
}

/// A client of a load run failed; `description` is its error.
struct LoadError: Error, CustomStringConvertible {
    var description: String
}
