import Dispatch
import FedClient
import FedCodec
import FedTestSupport
import Foundation
import Synchronization
import Testing

/// `BinaryTransport` called from threads of Swift's concurrency pool, every
/// one of them blocked in a call at once: the calls end all the same (the
/// client runs on its event loop and needs no thread of the pool).
@Suite("Blocking transport with the concurrency pool saturated")
struct PoolSaturationTests {
    static let model = Message.model(Model(version: 7, datasets: 70, tensors: constantTensors(0.5, shapes: [[2, 2]])))

    /// Holds the answers to `FETCH` (each on its connection's thread of the
    /// fake server) until no new one has come for `quiet` seconds, then
    /// probes the pool (does a new task start within 200 ms?) and lets them
    /// all go. Each release is recorded: how many were held, and whether the
    /// pool was saturated (the probe did not start).
    final class Gate: @unchecked Sendable {
        private let condition = NSCondition()
        private var held = 0
        private var generation = 0
        private var lastArrival = Date.distantPast
        private var stopped = false
        private var released: [(held: Int, saturated: Bool)] = []
        private var releasedAt = Date.distantFuture

        /// When the answers held last went out.
        var lastRelease: Date {
            condition.lock()
            defer { condition.unlock() }
            return releasedAt
        }

        /// The releases so far.
        var releases: [(held: Int, saturated: Bool)] {
            condition.lock()
            defer { condition.unlock() }
            return released
        }

        init(quiet: Double) {
            Thread { [self] in
                while true {
                    usleep(20_000)
                    condition.lock()
                    let (n, last, stop) = (held, lastArrival, stopped)
                    condition.unlock()
                    if stop { return }
                    guard n > 0, Date().timeIntervalSince(last) > quiet else { continue }
                    let saturated = Self.poolIsSaturated()
                    condition.lock()
                    released.append((held, saturated))
                    releasedAt = Date()
                    held = 0
                    generation += 1
                    condition.broadcast()
                    condition.unlock()
                }
            }.start()
        }

        /// Waits (on the calling thread) until released; stop releases every waiter.
        func hold() {
            condition.lock()
            held += 1
            lastArrival = Date()
            let g = generation
            while generation == g && !stopped { condition.wait() }
            condition.unlock()
        }

        func stop() {
            condition.lock()
            stopped = true
            condition.broadcast()
            condition.unlock()
        }

        /// True when a task of the pool does not start within 200 ms.
        static func poolIsSaturated() -> Bool {
            let started = Flag()
            Task.detached { started.value.store(true, ordering: .releasing) }
            usleep(200_000)
            return !started.value.load(ordering: .acquiring)
        }
    }

    final class Flag: Sendable {
        let value = Atomic<Bool>(false)
    }

    /// What the calls came to.
    final class Outcomes: Sendable {
        let answered = Atomic<Int>(0)
        let failures = Mutex<[String]>([])
        /// Seconds from the answers' release to the end of each call.
        let lags = Mutex<[Double]>([])
    }

    @Test(
        "Blocking calls from every thread of the pool at once end, answered, within their timeout",
        .timeLimit(.minutes(2)))
    func saturated() throws {
        let callers = 4 * ProcessInfo.processInfo.activeProcessorCount
        let gate = Gate(quiet: 0.3)
        defer { gate.stop() }
        let server = try FakeServer { _, request in
            switch request {
            case .hello: return .answer(FakeServer.welcome())
            case .fetch:
                gate.hold()
                return .answer(Self.model)
            default: return .answer(.error(ErrorMessage(code: .unexpectedMessage, message: "not scripted")))
            }
        }
        defer { server.stop() }
        let outcomes = Outcomes()
        let done = DispatchGroup()
        let start = Date()
        // This test's thread blocks too (a synchronous test runs on the pool).
        for i in 0..<callers {
            done.enter()
            let port = server.port
            Task.detached {
                defer { done.leave() }
                let t = BinaryTransport(host: "127.0.0.1", port: port, clientID: "saturating-\(i)", timeout: 30)
                do {
                    if case .model(7, 70, _) = try t.fetch(heldVersion: 0) {
                        let lag = Date().timeIntervalSince(gate.lastRelease)
                        outcomes.lags.withLock { $0.append(lag) }
                        outcomes.answered.add(1, ordering: .relaxed)
                    }
                    t.reset()
                } catch {
                    outcomes.failures.withLock { $0.append("\(error)") }
                }
            }
        }
        // The calls' own timeout is 30 s; a client that needed the pool would never end.
        let ended = done.wait(timeout: .now() + 60) == .success
        let took = Date().timeIntervalSince(start)
        let releases = gate.releases
        let lag = outcomes.lags.withLock { $0.max() ?? 0 }
        print(
            "\(callers) blocking calls ended in \(String(format: "%.2f", took)) s, at most \(String(format: "%.4f", lag)) s after their answers went out; releases (held, pool saturated): \(releases)"
        )
        #expect(ended, "the blocking calls did not end within 60 s")
        guard ended else { return }
        #expect(outcomes.failures.withLock { $0 } == [])
        #expect(outcomes.answered.load(ordering: .relaxed) == callers)
        // At least once the answers went out while every thread of the pool was blocked.
        #expect(releases.contains { $0.saturated }, "the pool was never saturated: \(releases)")
        // Nothing but the event loop and the caller's own thread stands between an answer and the call's end.
        #expect(lag < 1, "a call ended \(lag) s after its answer went out")
    }
}
