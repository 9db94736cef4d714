import Dispatch
import FedClient
import FedCodec
import FedTestSupport
import Foundation
import Testing

/// A `Connection`'s deadlines against servers on 127.0.0.1 that accept and
/// then say nothing, or send one byte at a time.
@Suite("Connection deadlines", .serialized)
struct ConnectionDeadlineTests {
    /// Seconds `body` took and the error it threw (nil if it returned).
    func timed(_ body: () throws -> Void) -> (Double, ClientError?) {
        let start = Date()
        do {
            try body()
            return (Date().timeIntervalSince(start), nil)
        } catch {
            return (Date().timeIntervalSince(start), error as? ClientError)
        }
    }

    @Test("A server sending one byte every 0.2 s does not keep a request alive past its timeout")
    func dribbleTimesOut() throws {
        let server = try StallingServer(dribble: 0.2)
        defer { server.stop() }
        let c = try Connection(host: "127.0.0.1", port: server.port, timeout: 1)
        let (took, error) = timed { _ = try c.request(.hello(Hello(clientID: "deadline"))) }
        // Each receive waits at most 0.2 s, so only a deadline for the whole request ends it.
        #expect(error?.code == .timedOut, "\(String(describing: error))")
        #expect(took >= 0.9 && took < 8, "the request ended after \(took) s (timeout 1 s)")
        #expect(c.bytesReceived >= 2, "the server's bytes did not arrive")
    }

    @Test("A cutoff set from another thread ends a request waiting on a silent server")
    func cutoffEndsWait() throws {
        let server = try StallingServer(dribble: nil)
        defer { server.stop() }
        let cutoff = RequestCutoff()
        let c = try Connection(host: "127.0.0.1", port: server.port, timeout: 60, cutoff: cutoff)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(300)) {
            cutoff.cut(at: .now() + .milliseconds(200))
        }
        let (took, error) = timed { _ = try c.request(.hello(Hello(clientID: "cutoff"))) }
        #expect(error?.code == .cancelled && error?.isRetryable == false, "\(String(describing: error))")
        #expect(took < 10, "the request ended after \(took) s (cut off at 0.5 s, timeout 60 s)")
        // A later time does not move the cutoff; a passed one ends calls at once.
        cutoff.cut(at: .now() + .seconds(3600))
        let (again, second) = timed { _ = try c.request(.hello(Hello(clientID: "cutoff"))) }
        #expect(second?.code == .cancelled && again < 1)
    }

    @Test("BinaryTransport bounds a whole call (connect, HELLO, request) by its timeout")
    func transportCall() throws {
        let server = try StallingServer(dribble: 0.2)
        defer { server.stop() }
        let t = BinaryTransport(host: "127.0.0.1", port: server.port, clientID: "deadline", timeout: 1)
        let (took, error) = timed { _ = try t.fetch(heldVersion: 0) }
        #expect(error?.code == .timedOut, "\(String(describing: error))")
        #expect(took < 8, "the call ended after \(took) s (timeout 1 s)")
    }
}
