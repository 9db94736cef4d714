import FedCodec
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking TCP client for tests: plain sockets on 127.0.0.1, a receive
/// timeout so no test can hang, and FedCodec to read answers.
public final class TestClient {
    public let fd: Int32
    public var decoder = FrameDecoder(limits: Limits(maxPayloadBytes: 64 << 20))
    public var nextID: UInt32 = 1

    public init(port: Int, timeoutSeconds: Int = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket failed") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        // deinit closes `fd` after a throw here (the object is fully initialized).
        guard r == 0 else {
            throw TestError("connect to \(port) failed: \(errno)")
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    public func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestError("send failed: \(errno)") }
            off += n
        }
    }

    public func send(_ message: Message, version: UInt8 = 1) throws -> UInt32 {
        let id = nextID
        nextID += 1
        try send(MessageCodec.encode(message, requestID: id, level: 1, version: version))
        return id
    }

    /// Half-closes the connection (no more bytes from us).
    public func finishSending() { shutdown(fd, Int32(SHUT_WR)) }

    /// The next frame, or nil when the server closed the connection.
    public func receive() throws -> (UInt32, Message)? {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            if let frame = try decoder.next() {
                return (
                    frame.header.requestID, try MessageCodec.decode(frame, limits: .init(maxPayloadBytes: 64 << 20))
                )
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return nil }
            guard n > 0 else { throw TestError("recv failed or timed out: \(errno)") }
            decoder.append(chunk[0..<n])
        }
    }

    /// True once the server has closed the connection (reads until EOF).
    public func closedByServer() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    public func handshake(_ id: String = "test") throws -> Welcome {
        _ = try send(.hello(Hello(clientID: id)))
        guard case .welcome(let w)? = try receive()?.1 else { throw TestError("no WELCOME") }
        return w
    }

    public func fetch(held: UInt64 = 0, compression: Compression = .none) throws -> Message {
        _ = try send(.fetch(heldVersion: held, compression: compression))
        guard let (_, m) = try receive() else { throw TestError("closed") }
        return m
    }

    public func push(_ tensors: [Tensor], datasets: UInt64, compression: Compression = .none) throws -> Message {
        _ = try send(
            .push(
                Push(clientID: "test", datasets: datasets, baseVersion: 0, tensors: tensors, compression: compression)))
        guard let (_, m) = try receive() else { throw TestError("closed") }
        return m
    }
}

public struct TestError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Tensors of the MNIST MLP's shapes (or `shapes`), every value `value`.
public func constantTensors(_ value: Float, shapes: [[Int]] = Tensor.mnistMLPShapes) -> [Tensor] {
    shapes.map { try! Tensor(shape: $0, values: [Float](repeating: value, count: Tensor.elementCount($0)!)) }
}
