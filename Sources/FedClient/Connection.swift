import Dispatch
import FedCodec

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A blocking socket to a server: frames of the binary protocol with no
/// handshake of its own (for tests and benchmarks that drive the wire
/// themselves), or raw bytes (`HTTPTransport`). Clients of the binary
/// protocol use `FederationClient` or its blocking face `BinaryTransport`,
/// which open their connections with `HELLO`. Not thread-safe: one
/// connection per thread.
///
/// Every operation ends by a deadline, however slowly the server sends:
/// `deadline` when it is set (a caller's bound on a whole exchange), else
/// `timeout` seconds from the operation's start (connecting; a `request`, its
/// answer included; a `receive`; a `readToEnd`). A `cutoff` ends every
/// operation at its time too, even one already waiting when it is set.
///
/// Errors: `ClientError` (refused, reset, timed out, cut off, closed; bytes
/// that do not decode).
public final class Connection {
    public let host: String
    public let port: Int
    /// Seconds an operation may take when no `deadline` is set.
    public let timeout: Double
    /// When set, the time by which every operation ends (throwing `timedOut`),
    /// whatever `timeout` says.
    public var deadline: DispatchTime?
    /// Ends every operation at the time it holds (throwing `cancelled`),
    /// including one waiting when it is set from another thread.
    public let cutoff: RequestCutoff?
    private let fd: Int32
    private var decoder: FrameDecoder
    private var nextID: UInt32 = 1
    private var receiveBuffer = [UInt8](repeating: 0, count: 1 << 16)
    /// Bytes sent and received on this connection.
    public private(set) var bytesSent = 0
    public private(set) var bytesReceived = 0

    /// Connects to `host:port` (an IPv4 address or `localhost`), waiting at
    /// most `timeout` seconds (or until `deadline`, when given).
    public init(
        host: String, port: Int, timeout: Double = 10, limits: Limits = .default, deadline: DispatchTime? = nil,
        cutoff: RequestCutoff? = nil
    ) throws {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.deadline = deadline
        self.cutoff = cutoff
        decoder = FrameDecoder(limits: limits)
        #if canImport(Glibc)
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw ClientError.socket(errno) }
        var one: Int32 = 1
        #if canImport(Darwin)
            setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // Non-blocking: every wait is a poll bounded by the operation's deadline.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
        let ip = host == "localhost" ? "127.0.0.1" : host
        // On a throw below, deinit closes `fd` (every stored property is set by
        // then, so Swift runs it): closing here too would close a number another
        // thread may have been given meanwhile.
        guard inet_pton(AF_INET, ip, &addr.sin_addr) == 1 else {
            throw ClientError(code: .hostNotFound, message: "\(host) is not an IPv4 address")
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if r != 0 {
            guard errno == EINPROGRESS || errno == EINTR else { throw ClientError.socket(errno, " by \(host):\(port)") }
            try wait(for: Int16(POLLOUT), until: operationDeadline())
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            guard failure == 0 else { throw ClientError.socket(failure, " by \(host):\(port)") }
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The protocol version agreed in the handshake (1 until then).
    public var version: UInt8 = 1

    /// `deadline`, or `timeout` seconds from now.
    private func operationDeadline() -> DispatchTime {
        deadline ?? DispatchTime.now() + .nanoseconds(Int(min(timeout, 1e9) * 1e9))
    }

    /// Waits until `fd` is ready for `events`; throws `cancelled` once the
    /// cutoff's time has come and `timedOut` once `limit` has passed. With a
    /// cutoff, waits in slices of at most 100 ms, so a cutoff set meanwhile
    /// is noticed within one.
    private func wait(for events: Int16, until limit: DispatchTime) throws {
        while true {
            let now = DispatchTime.now()
            var end = limit
            if let cutoff {
                let cut = cutoff.time
                if now >= cut {
                    throw ClientError(code: .cancelled, message: "cut off before \(host):\(port) answered")
                }
                end = min(end, cut, now + .milliseconds(100))
            }
            guard now < limit else {
                throw ClientError(code: .timedOut, message: "timed out: \(host):\(port) did not answer in time")
            }
            let milliseconds = (end.uptimeNanoseconds - min(end.uptimeNanoseconds, now.uptimeNanoseconds)) / 1_000_000
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, Int32(min(milliseconds + 1, 60_000)))
            if r < 0 && errno != EINTR { throw ClientError.socket(errno) }
            if r > 0 { return }
        }
    }

    /// Sends `message` with a fresh request id, which it returns.
    @discardableResult
    public func send(_ message: Message, level: Int32 = 1) throws -> UInt32 {
        let id = nextID
        nextID &+= 1
        try write(MessageCodec.encode(message, requestID: id, level: level, version: version))
        return id
    }

    /// Writes raw bytes (for tests and benchmarks that build frames themselves).
    public func write(_ bytes: [UInt8]) throws {
        try write(bytes, until: operationDeadline())
    }

    private func write(_ bytes: [UInt8], until limit: DispatchTime) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { sendNoSignal(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    try wait(for: Int16(POLLOUT), until: limit)
                    continue
                }
            }
            guard n > 0 else { throw ClientError.socket(errno) }
            off += n
        }
        bytesSent += bytes.count
    }

    /// Up to one buffer of bytes, waiting until `limit` for them; 0 at end of stream.
    private func read(until limit: DispatchTime) throws -> Int {
        while true {
            let n = receiveBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n >= 0 {
                bytesReceived += n
                return n
            }
            if errno == EINTR { continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { throw ClientError.socket(errno) }
            try wait(for: Int16(POLLIN), until: limit)
        }
    }

    /// The next message and its request id. Throws `.closed` at end of stream.
    public func receive(limits: Limits = .default) throws -> (requestID: UInt32, message: Message) {
        try receive(limits: limits, until: operationDeadline())
    }

    private func receive(limits: Limits, until limit: DispatchTime) throws -> (requestID: UInt32, message: Message) {
        while true {
            do throws(CodecError) {
                if let frame = try decoder.next() {
                    return (frame.header.requestID, try MessageCodec.decode(frame, limits: limits))
                }
            } catch {
                throw ClientError.undecodable(error)
            }
            let n = try read(until: limit)
            if n == 0 {
                do throws(CodecError) { try decoder.finish() } catch { throw ClientError.undecodable(error) }
                throw ClientError.closed
            }
            decoder.append(receiveBuffer[0..<n])
        }
    }

    /// Reads raw bytes until the peer closes the connection, at most `limit` bytes.
    public func readToEnd(limit: Int) throws -> [UInt8] {
        let end = operationDeadline()
        var out: [UInt8] = []
        while true {
            let n = try read(until: end)
            if n == 0 { return out }
            out += receiveBuffer[0..<n]
            if out.count > limit { throw ClientError.violation("answer larger than \(limit) bytes") }
        }
    }

    /// Sends `message` and waits for the answer to it, all within one deadline.
    public func request(_ message: Message, level: Int32 = 1) throws -> Message {
        let end = operationDeadline()
        let id = nextID
        nextID &+= 1
        try write(MessageCodec.encode(message, requestID: id, level: level, version: version), until: end)
        let (answerID, answer) = try receive(limits: .default, until: end)
        guard answerID == id else {
            throw ClientError.violation("answer to request \(answerID), expected \(id)")
        }
        return answer
    }
}

/// `send` without SIGPIPE: `MSG_NOSIGNAL` on Linux; on Darwin the socket's
/// `SO_NOSIGPIPE` (set where it is opened) does the same.
private func sendNoSignal(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
        Glibc.send(fd, bytes, count, Int32(MSG_NOSIGNAL))
    #else
        Darwin.send(fd, bytes, count, 0)
    #endif
}

/// A server address written `HOST:PORT` (port 1-65535).
public struct HostPort: Hashable, Sendable {
    public var host: String
    public var port: Int

    /// Nil unless `text` is `HOST:PORT` with a port in 1...65535.
    public init?(_ text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port) else { return nil }
        host = String(parts[0])
        self.port = port
    }
}
