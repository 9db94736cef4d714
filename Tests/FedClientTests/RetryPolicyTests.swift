import FedCodec
import FedTestSupport
import Foundation
import Synchronization
import Testing

@testable import FedClient

@Suite("RetryPolicy")
struct RetryPolicyTests {
    let policy = RetryPolicy(
        maxAttempts: 8, initialBackoff: .milliseconds(250), multiplier: 2, maxBackoff: .seconds(8), deadline: nil)

    @Test("The ceiling grows by the multiplier up to the maximum")
    func ceilings() {
        let ms = (1...7).map { policy.ceiling(beforeRetry: $0) / .milliseconds(1) }
        #expect(ms == [250, 500, 1000, 2000, 4000, 8000, 8000])
    }

    @Test("Full jitter scales the ceiling: 0 gives no wait, 0.5 half")
    func jitter() {
        #expect(policy.delay(beforeRetry: 3, jitter: 0) == .zero)
        #expect(policy.delay(beforeRetry: 3, jitter: 0.5) == .milliseconds(500))
        #expect(policy.delay(beforeRetry: 9, jitter: 0.25) == .seconds(2))
    }

    struct Flaky: Error {}

    @Test("Retryable failures are retried up to maxAttempts; others are not retried")
    func attempts() throws {
        let fast = RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(1))
        var calls = 0
        #expect(throws: Flaky.self) {
            try fast.run(random: { 0 }, isRetryable: { _ in true }) { () throws -> Int in
                calls += 1
                throw Flaky()
            }
        }
        #expect(calls == 3)
        calls = 0
        #expect(throws: ClientError.self) {
            try fast.run(random: { 0 }) { () throws -> Int in
                calls += 1
                throw ClientError(code: .server(.shapeMismatch), message: "rejected")
            }
        }
        #expect(calls == 1)
        calls = 0
        let v = try fast.run(random: { 0 }) { () throws -> Int in
            calls += 1
            if calls < 3 { throw ClientError(code: .connectionRefused, message: "refused") }
            return 42
        }
        #expect(v == 42 && calls == 3)
    }

    @Test("The deadline stops retrying with a clear error")
    func deadline() {
        let p = RetryPolicy(
            maxAttempts: 100, initialBackoff: .milliseconds(40), multiplier: 1, maxBackoff: .milliseconds(40),
            deadline: .milliseconds(200))
        let start = Date()
        #expect(
            performing: {
                try p.run(random: { 1 }, isRetryable: { _ in true }) { () throws -> Int in
                    throw ClientError(code: .connectionRefused, message: "refused")
                }
            }, throws: { "\($0)".contains("gave up at the retry deadline") })
        #expect(Date().timeIntervalSince(start) < 1)
    }

    @Test("20 clients retrying against a server that returns after 5 s reconnect spread out, not in lockstep")
    func spreadReconnects() async throws {
        // Reserve a port, then free it: nothing listens there for 5 s.
        let port = try freePort()
        let successes = Mutex<[Double]>([])
        let start = Date()
        let group = DispatchGroup()
        let policy = RetryPolicy(
            maxAttempts: 50, initialBackoff: .milliseconds(250), multiplier: 2, maxBackoff: .seconds(4),
            deadline: .seconds(40))
        for _ in 0..<20 {
            group.enter()
            Thread {
                defer { group.leave() }
                if (try? policy.run(
                    { try Connection(host: "127.0.0.1", port: port, timeout: 2) })) != nil
                {
                    let t = Date().timeIntervalSince(start)
                    successes.withLock { $0.append(t) }
                }
            }.start()
        }
        // On a thread of its own, so that the server returns after 5 s whatever the pool is doing.
        try await offPool {
            Thread.sleep(forTimeInterval: 5)
            let listener = try Listener(port: port)
            group.wait()
            withExtendedLifetime(listener) {}
        }
        let times = successes.withLock { $0 }.sorted()
        #expect(times.count == 20)
        #expect(times.first! >= 5)
        // Full jitter spreads them over the backoff window: no 100 ms slot holds most of them.
        let spread = times.last! - times.first!
        let largestBurst = times.indices.map { i in times[i...].prefix { $0 - times[i] < 0.1 }.count }.max()!
        #expect(spread > 1, "reconnects spread over \(spread) s")
        #expect(largestBurst <= 10, "\(largestBurst) of 20 reconnected within 100 ms")
    }
}

#if canImport(Glibc)
    import Glibc
#endif

func freePort() throws -> Int {
    let l = try Listener(port: 0)
    return l.port
}

/// A bare listening socket on 127.0.0.1 that accepts and holds connections.
final class Listener {
    let fd: Int32
    let port: Int
    init(port: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard r == 0, listen(fd, 64) == 0 else {
            throw ClientError(code: .connectionRefused, message: "listen failed: \(errno)")
        }
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.port = Int(UInt16(bigEndian: addr.sin_port))
    }
    deinit { close(fd) }
}
