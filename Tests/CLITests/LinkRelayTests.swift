import Foundation
import Testing

@testable import FedBench

#if canImport(Glibc)
    import Glibc
#endif

/// The slow-link relay of `fed bench wire --links`, against a real echo server on 127.0.0.1.
@Suite("Link relay", .serialized)
struct LinkRelayTests {
    @Test(
        "Link profiles parse as RATE:RTT",
        arguments: [
            ("10mbit:30ms", 10e6, 0.03), ("1mbit:100ms", 1e6, 0.1), ("512kbit:1s", 512e3, 1.0), ("1gbit:0ms", 1e9, 0),
        ])
    func profiles(_ text: String, _ rate: Double, _ rtt: Double) throws {
        let p = try #require(LinkProfile(text))
        #expect(p.bitsPerSecond == rate && abs(p.roundTrip - rtt) < 1e-12)
        #expect(LinkProfile("10mbps:30ms") == nil && LinkProfile("10mbit") == nil && LinkProfile("x:1ms") == nil)
    }

    /// An echo server on a free port; returns its port.
    func echoServer() throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        listen(fd, 4)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        Thread {
            let c = accept(fd, nil, nil)
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress!, $0.count, 0) }
                if n <= 0 { break }
                _ = buf.withUnsafeBytes { send(c, $0.baseAddress!, n, Int32(MSG_NOSIGNAL)) }
            }
            close(c)
            close(fd)
        }.start()
        return Int32(UInt16(bigEndian: addr.sin_port))
    }

    func roundTrip(_ fd: Int32, bytes: Int) -> Double {
        let start = DelayRelay.now()
        let data = [UInt8](repeating: 7, count: bytes)
        var sent = 0
        var received = 0
        var buf = [UInt8](repeating: 0, count: 65536)
        while sent < bytes {
            let n = data.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return .nan }
            sent += n
        }
        while received < bytes {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { return .nan }
            received += n
        }
        return DelayRelay.now() - start
    }

    @Test("The relay adds the round-trip time, and paces the rate when asked")
    func delayAndRate() throws {
        let port = try echoServer()
        let relay = try DelayRelay(target: ("127.0.0.1", Int(port)), roundTrip: 0.2, rate: 1e6)
        defer { relay.stop() }
        let fd = try #require(RelayListener.connect("127.0.0.1", relay.port))
        defer { close(fd) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // One byte: the delay both ways (0.1 s each), and not much more.
        let small = roundTrip(fd, bytes: 1)
        #expect(small >= 0.2 && small < 1.0, "\(small) s")
        // 50,000 bytes at 1 Mbit/s: 0.4 s to cross each way (pipelined), plus the delay.
        let large = roundTrip(fd, bytes: 50_000)
        #expect(large >= 0.6 && large < 3.0, "\(large) s")
    }
}
