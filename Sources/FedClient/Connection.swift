import FedCodec

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A blocking connection to a server of the binary protocol: one socket, a
/// frame decoder, and a deadline for every receive. Not thread-safe: one
/// connection per thread.
///
/// Errors: `ClientError` (refused, reset, timed out, closed; bytes that do
/// not decode).
public final class Connection {
    public let host: String
    public let port: Int
    private let fd: Int32
    private var decoder: FrameDecoder
    private var nextID: UInt32 = 1
    private var receiveBuffer = [UInt8](repeating: 0, count: 1 << 16)
    /// Bytes sent and received on this connection.
    public private(set) var bytesSent = 0
    public private(set) var bytesReceived = 0

    /// Connects to `host:port` (an IPv4 address or `localhost`), waiting at most `timeout` seconds.
    public init(host: String, port: Int, timeout: Double = 10, limits: Limits = .default) throws {
        self.host = host
        self.port = port
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
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
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
        guard r == 0 else {
            throw ClientError.socket(errno, " by \(host):\(port)")
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The protocol version agreed in the handshake (1 until then).
    public var version: UInt8 = 1

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
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { sendNoSignal(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ClientError.socket(errno) }
            off += n
        }
        bytesSent += bytes.count
    }

    /// The next message and its request id. Throws `.closed` at end of stream.
    public func receive(limits: Limits = .default) throws -> (requestID: UInt32, message: Message) {
        while true {
            do throws(CodecError) {
                if let frame = try decoder.next() {
                    return (frame.header.requestID, try MessageCodec.decode(frame, limits: limits))
                }
            } catch {
                throw ClientError.undecodable(error)
            }
            let n = receiveBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 {
                do throws(CodecError) { try decoder.finish() } catch { throw ClientError.undecodable(error) }
                throw ClientError.closed
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError.socket(errno)
            }
            bytesReceived += n
            decoder.append(receiveBuffer[0..<n])
        }
    }

    /// Reads raw bytes until the peer closes the connection, at most `limit` bytes.
    public func readToEnd(limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        while true {
            let n = receiveBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return out }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError.socket(errno)
            }
            bytesReceived += n
            out += receiveBuffer[0..<n]
            if out.count > limit { throw ClientError.violation("answer larger than \(limit) bytes") }
        }
    }

    /// Sends `message` and waits for the answer to it.
    public func request(_ message: Message, level: Int32 = 1) throws -> Message {
        let id = try send(message, level: level)
        let (answerID, answer) = try receive()
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
