import FedBench
import FedClient
import FedTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `fed server`'s bounds on TLS handshakes, over real sockets from several
/// loopback addresses (127.0.0.2 and 127.0.0.3 play other hosts).
@Suite("TLS handshake limits", .serialized)
struct TLSHandshakeLimitTests {
    /// The start of a TLS record declaring a 512-byte ClientHello, of which
    /// only the record and handshake headers are sent: the server's TLS
    /// handshake starts and waits for the rest.
    static let partialHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC]

    /// A connection from `source` to 127.0.0.1:`port` that has sent `bytes`; the caller closes it.
    static func open(from source: String, port: Int, sending bytes: [UInt8]) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) }
        }
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) }
        }
        guard bound == 0, connected == 0, send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            close(fd)
            throw TestError("cannot connect from \(source) to port \(port)")
        }
        return fd
    }

    /// Whether the server closed `fd` without sending a byte, within `milliseconds`.
    static func closedSilently(_ fd: Int32, within milliseconds: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, milliseconds) > 0 else { return false }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0
    }

    static func metric(_ port: Int, _ series: String) throws -> Double? {
        let c = try TestClient(port: port, timeoutSeconds: 5)
        try c.send(Array("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        return c.receiveAll().split(separator: "\n").first { $0.hasPrefix(series + " ") }
            .flatMap { Double($0.split(separator: " ").last!) }
    }

    /// Polls `series` (at most `seconds`) until it equals `value`; its last value.
    static func waitFor(_ port: Int, _ series: String, _ value: Double, seconds: Double = 20) throws -> Double? {
        let end = Date().addingTimeInterval(seconds)
        var last = try metric(port, series)
        while last != value && Date() < end {
            usleep(50_000)
            last = try metric(port, series)
        }
        return last
    }

    static let inProgress = "fed_tls_handshakes_in_progress"
    static let refusedRate = "fed_tls_handshakes_refused_total{reason=\"rate\"}"
    static let refusedCap = "fed_tls_handshakes_refused_total{reason=\"concurrency\"}"

    @Test("Past its burst, an address's handshakes are closed unanswered; another address is served meanwhile")
    func perAddressRate() async throws {
        let (server, files, dir) = try TLSTests.server([
            "--allow-plaintext", "--tls-handshake-rate", "0.05", "--tls-handshake-burst", "3",
            "--first-bytes-timeout", "30",
        ])
        defer { try? FileManager.default.removeItem(at: dir) }
        let fds = try (0..<8).map { _ in try Self.open(from: "127.0.0.2", port: server.port, sending: Self.partialHello)
        }
        defer { for fd in fds { close(fd) } }
        #expect(try Self.waitFor(server.port, Self.refusedRate, 5) == 5)
        usleep(200_000)
        // Three (the burst; the server's event loops may take the connections in any order) are in their
        // handshakes, waiting for the rest of the ClientHello; the other five were closed without a byte
        // (one token every 20 s: none came back meanwhile).
        let closed = fds.map { Self.closedSilently($0, within: 500) }
        #expect(closed.filter { $0 }.count == 5, "\(closed)")
        #expect(try Self.metric(server.port, Self.inProgress) == 3)
        #expect(try Self.metric(server.port, Self.refusedCap) == 0)

        // 127.0.0.1 has a bucket of its own (burst 3): a real client completes its handshake and is
        // served. It may try 3 times: once, on a loaded machine running the whole suite, its single
        // connection was closed (a clean-clone CI run); 127.0.0.1's own burst allows the retries.
        let local = FederationClient(
            host: "localhost", port: server.port,
            configuration: .init(
                clientID: "tls-test", retryPolicy: RetryPolicy(maxAttempts: 3), tls: files.client()))
        guard case .model = try await local.fetch() else {
            Issue.record("no model over TLS from 127.0.0.1 while 127.0.0.2 is limited")
            return
        }
        #expect(try Self.metric(server.port, Self.refusedRate) == 5)
        // Handshakes that end give their slot back: the completed one at once, the three waiting when closed.
        for (fd, closed) in zip(fds, closed) where !closed { shutdown(fd, Int32(SHUT_RDWR)) }
        #expect(try Self.waitFor(server.port, Self.inProgress, 0) == 0)
    }

    @Test("Past the cap on handshakes in progress, new handshakes from any address are closed until one ends")
    func concurrencyCap() async throws {
        let (server, files, dir) = try TLSTests.server([
            "--allow-plaintext", "--max-tls-handshakes", "2", "--first-bytes-timeout", "30",
        ])
        defer { try? FileManager.default.removeItem(at: dir) }
        let held = try (0..<2).map { _ in
            try Self.open(from: "127.0.0.2", port: server.port, sending: Self.partialHello)
        }
        defer { for fd in held { close(fd) } }
        #expect(try Self.waitFor(server.port, Self.inProgress, 2) == 2)
        let other = try Self.open(from: "127.0.0.3", port: server.port, sending: Self.partialHello)
        defer { close(other) }
        #expect(Self.closedSilently(other, within: 5_000), "a handshake past the cap was not closed")
        let refused = await TLSTests.failure(TLSTests.client(server.port, files.client()))
        #expect(refused != nil, "a handshake past the cap was served")
        #expect(try Self.metric(server.port, Self.refusedCap) == 2)
        #expect(try Self.metric(server.port, Self.refusedRate) == 0)

        for fd in held { shutdown(fd, Int32(SHUT_RDWR)) }
        #expect(try Self.waitFor(server.port, Self.inProgress, 0) == 0)
        guard case .model = try await TLSTests.client(server.port, files.client()).fetch() else {
            Issue.record("no model over TLS once the held handshakes ended")
            return
        }
    }
}
