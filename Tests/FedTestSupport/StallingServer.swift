import FedCodec
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A server that accepts connections on 127.0.0.1 and never answers: it
/// reads and drops what it is sent and, with `dribble`, writes one byte of a
/// valid frame every `dribble` seconds (a sender slow enough that no single
/// receive ever waits long). Everything stops at `stop` (or deinit), and
/// after 120 s in any case.
public final class StallingServer: @unchecked Sendable {
    public let port: Int
    private let listener: Int32
    private let stopped = Atomic<Bool>(false)
    private let acceptedCount = Atomic<Int>(0)

    /// Connections accepted so far.
    public var accepted: Int { acceptedCount.load(ordering: .acquiring) }

    public init(dribble: Double?) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw TestError("cannot listen on 127.0.0.1")
        }
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread { [self] in acceptLoop(dribble: dribble, until: Date().addingTimeInterval(120)) }.start()
    }

    private func acceptLoop(dribble: Double?, until end: Date) {
        let frame = MessageCodec.encode(
            .error(ErrorMessage(code: .overloaded, message: "a frame sent one byte at a time")), requestID: 1)
        while !stopped.load(ordering: .acquiring) && Date() < end {
            var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { continue }
            acceptedCount.add(1, ordering: .releasing)
            Thread { [self] in
                defer { close(fd) }
                var sent = 0
                var next = Date()
                var sink = [UInt8](repeating: 0, count: 1 << 16)
                while !stopped.load(ordering: .acquiring) && Date() < end {
                    if let dribble, sent < frame.count, Date() >= next {
                        let n = frame.withUnsafeBytes { send(fd, $0.baseAddress! + sent, 1, Int32(MSG_NOSIGNAL)) }
                        guard n == 1 else { return }
                        sent += 1
                        next = Date().addingTimeInterval(dribble)
                    }
                    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    guard poll(&p, 1, 100) > 0 else { continue }
                    if sink.withUnsafeMutableBytes({ recv(fd, $0.baseAddress!, $0.count, 0) }) <= 0 { return }
                }
            }.start()
        }
    }

    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // Every thread wakes within 100 ms and ends; give them that before closing the listener.
        usleep(300_000)
        close(listener)
    }

    deinit { stop() }
}
