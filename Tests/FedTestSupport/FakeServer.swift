import FedCodec
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A scripted server of the binary protocol on a loopback address (IPv4 or
/// IPv6), for client tests: each request is handed to `script` with the
/// number of the connection it came on (0 first), which says what to do.
public final class FakeServer: @unchecked Sendable {
    public enum Action: Sendable {
        /// Answer with this message.
        case answer(Message)
        /// Close the connection in order (FIN).
        case close
        /// Reset the connection (RST).
        case reset
        /// Say nothing; keep the connection open.
        case silence
    }

    public let port: Int
    private let listener: Int32
    private let script: @Sendable (_ connection: Int, _ request: Message) -> Action
    private let connections = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)
    /// Requests received so far, in order (every connection).
    public let requests = Mutex<[Message]>([])

    /// Connections accepted so far.
    public var accepted: Int { connections.load(ordering: .relaxed) }

    /// Listens on `address` (`127.0.0.1` or `::1`) at a free port.
    public init(address: String = "127.0.0.1", script: @escaping @Sendable (Int, Message) -> Action) throws {
        self.script = script
        let v6 = address.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = sockaddr_storage()
        var len: socklen_t
        if v6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            inet_pton(AF_INET6, address, &a.sin6_addr)
            len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeBytes(of: a) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr(address)
            len = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeBytes(of: a) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
        }
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw TestError("fake server: cannot listen on \(address) (errno \(errno))")
        }
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = withUnsafeBytes(of: storage) { raw in
            // sin_port and sin6_port sit at the same offset, in network order.
            Int(UInt16(raw[2]) << 8 | UInt16(raw[3]))
        }
        listener = fd
        Thread { [self] in acceptLoop() }.start()
    }

    deinit { stop() }

    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// A `WELCOME` of version `version` for any `HELLO`.
    public static func welcome(_ version: UInt8 = 2) -> Message {
        .welcome(
            Welcome(
                version: version, compressions: 0b111, serverID: "fake", modelVersion: 0, datasets: 0,
                maxPayloadBytes: 16 << 20))
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let fd = accept(listener, nil, nil)
            if fd < 0 { return }
            let n = connections.add(1, ordering: .relaxed).oldValue
            Thread { [self] in serve(fd, n) }.start()
        }
    }

    private func serve(_ fd: Int32, _ connection: Int) {
        var decoder = FrameDecoder()
        var version: UInt8 = 1
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        defer { close(fd) }
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { return }
            decoder.append(buffer[0..<n])
            while let frame = try? decoder.next() {
                var limits = Limits()
                limits.valueEncodings = 0b1_1111
                guard let request = try? MessageCodec.decode(frame, limits: limits) else { return }
                requests.withLock { $0.append(request) }
                switch script(connection, request) {
                case .answer(let m):
                    if case .welcome(let w) = m { version = w.version }
                    let bytes = MessageCodec.encode(
                        m, requestID: frame.header.requestID, version: m.type == .welcome ? 1 : version)
                    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
                case .close:
                    return
                case .reset:
                    var l = linger(l_onoff: 1, l_linger: 0)
                    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
                    return
                case .silence:
                    continue
                }
            }
        }
    }
}
