import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A relay on 127.0.0.1 that loses acknowledgements: it forwards each
/// connection to `target`, but once a connection has carried more than
/// `threshold` bytes towards the target (a push), nothing more comes back on
/// it and it is cut `hold` seconds later. The server applies the push; the
/// client never hears that it did, as when a link fails at the worst moment.
final class AckDropRelay: @unchecked Sendable {
    private let listener: RelayListener
    private let threshold: Int
    private let hold: Double
    /// Connections cut after a push so far.
    let cut = Atomic<Int>(0)
    var port: Int { listener.port }

    init(target: (host: String, port: Int), threshold: Int = 64 << 10, hold: Double = 1) throws {
        self.threshold = threshold
        self.hold = hold
        listener = try RelayListener(target: target)
        listener.start { [self] client, upstream in relay(client, upstream) }
    }

    func stop() { listener.stop() }

    private func relay(_ client: Int32, _ upstream: Int32) {
        let connection = Connection(client: client, upstream: upstream)
        let (threshold, hold) = (self.threshold, self.hold)
        Thread { [self] in
            var sent = 0
            Self.copy(from: client, to: upstream) { n in
                sent += n
                if sent > threshold && !connection.dropping.exchange(true, ordering: .relaxed) {
                    cut.add(1, ordering: .relaxed)
                    connection.users.add(1, ordering: .relaxed)
                    Thread {
                        usleep(UInt32(hold * 1e6))
                        shutdown(client, Int32(SHUT_RDWR))
                        shutdown(upstream, Int32(SHUT_RDWR))
                        connection.release()
                    }.start()
                }
                return true
            }
            shutdown(upstream, Int32(SHUT_WR))
            connection.release()
        }.start()
        Thread {
            Self.copy(from: upstream, to: client) { _ in !connection.dropping.load(ordering: .relaxed) }
            shutdown(client, Int32(SHUT_RDWR))
            connection.release()
        }.start()
    }

    /// One relayed connection: whether it has stopped passing answers back,
    /// and its sockets, closed when the last thread using them is done (never
    /// earlier: a closed number may be reused by another socket of this process).
    private final class Connection: Sendable {
        let client: Int32
        let upstream: Int32
        let dropping = Atomic<Bool>(false)
        /// Threads still using the sockets (the two copiers, and the cutter once started).
        let users = Atomic<Int>(2)
        init(client: Int32, upstream: Int32) { (self.client, self.upstream) = (client, upstream) }
        func release() {
            if users.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                close(client)
                close(upstream)
            }
        }
    }

    /// Copies until `from` ends; `forward(n)` says whether each chunk of n bytes is passed on.
    private static func copy(from: Int32, to: Int32, forward: (Int) -> Bool) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { return }
            guard forward(n) else { continue }
            var off = 0
            while off < n {
                let w = buffer.withUnsafeBytes { send(to, $0.baseAddress! + off, n - off, Int32(MSG_NOSIGNAL)) }
                if w <= 0 { return }
                off += w
            }
        }
    }
}
