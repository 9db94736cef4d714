import ArgumentParser
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A slow link to measure over: a rate and a round-trip time.
struct LinkProfile: CustomStringConvertible {
    var bitsPerSecond: Double
    var roundTrip: Double

    /// `10mbit:30ms` (kbit, mbit or gbit; ms or s).
    init?(_ text: String) {
        let parts = text.lowercased().split(separator: ":")
        guard parts.count == 2 else { return nil }
        let rate = parts[0]
        let scale: Double
        let digits: Substring
        if rate.hasSuffix("gbit") {
            (scale, digits) = (1e9, rate.dropLast(4))
        } else if rate.hasSuffix("mbit") {
            (scale, digits) = (1e6, rate.dropLast(4))
        } else if rate.hasSuffix("kbit") {
            (scale, digits) = (1e3, rate.dropLast(4))
        } else {
            return nil
        }
        guard let r = Double(digits), r > 0 else { return nil }
        let delay = parts[1]
        let seconds: Double?
        if delay.hasSuffix("ms") {
            seconds = Double(delay.dropLast(2)).map { $0 / 1000 }
        } else if delay.hasSuffix("s") {
            seconds = Double(delay.dropLast(1))
        } else {
            seconds = nil
        }
        guard let s = seconds, s >= 0 else { return nil }
        (bitsPerSecond, roundTrip) = (r * scale, s)
    }

    var description: String {
        let rate =
            bitsPerSecond >= 1e9
            ? "\(Int(bitsPerSecond / 1e9)) Gbit/s"
            : bitsPerSecond >= 1e6 ? "\(Int(bitsPerSecond / 1e6)) Mbit/s" : "\(Int(bitsPerSecond / 1e3)) kbit/s"
        return "\(rate), \(Int((roundTrip * 1000).rounded())) ms"
    }

    /// The tc rate argument (`10mbit`).
    var tcRate: String { "\(Int(bitsPerSecond / 1000))kbit" }
}

/// Two network namespaces' worth of link: this process's namespace (the
/// client's) and a new one for the server, joined by a veth pair whose both
/// ends are rate-limited by the kernel (`tc` with `tbf`). Needs root and
/// iproute2; `make()` returns nil (and why) where they are missing.
final class NamespaceLink {
    let namespace: String
    let device = "fedb\(getpid() % 100_000)c"
    let peer = "fedb\(getpid() % 100_000)s"
    let clientAddress = "10.77.0.2"
    let serverAddress = "10.77.0.1"

    private init(namespace: String) { self.namespace = namespace }

    static func make() -> (NamespaceLink?, String) {
        guard getuid() == 0 else { return (nil, "not root") }
        let link = NamespaceLink(namespace: "fedbench\(getpid())")
        let (ns, dev, peer) = (link.namespace, link.device, link.peer)
        let steps = [
            ["netns", "add", ns],
            ["link", "add", dev, "type", "veth", "peer", "name", peer],
            ["link", "set", peer, "netns", ns],
            ["addr", "add", "\(link.clientAddress)/30", "dev", dev],
            ["link", "set", dev, "up"],
            ["netns", "exec", ns, "ip", "addr", "add", "\(link.serverAddress)/30", "dev", peer],
            ["netns", "exec", ns, "ip", "link", "set", peer, "up"],
            ["netns", "exec", ns, "ip", "link", "set", "lo", "up"],
        ]
        for step in steps {
            let (status, output) = run("ip", step)
            if status != 0 {
                link.remove()
                return (nil, "ip \(step.joined(separator: " ")) failed: \(output)")
            }
        }
        return (link, "network namespace \(ns), veth \(dev) <-> \(peer), tc tbf on both ends")
    }

    /// Rate-limits both directions to `profile`'s rate.
    func shape(_ profile: LinkProfile) throws {
        // A bucket of at least 10 ms of traffic (and 16 KB), queue up to 2 s.
        let burst = max(16_000, Int(profile.bitsPerSecond / 8 / 100))
        for (prefix, dev) in [([String](), device), (["ip", "netns", "exec", namespace], peer)] {
            let args = [
                "qdisc", "replace", "dev", dev, "root", "tbf", "rate", profile.tcRate, "burst", "\(burst)",
                "latency", "2s",
            ]
            let (status, output) =
                prefix.isEmpty ? Self.run("tc", args) : Self.run("ip", Array(prefix.dropFirst()) + ["tc"] + args)
            guard status == 0 else { throw ValidationError("tc \(args.joined(separator: " ")): \(output)") }
        }
    }

    func remove() {
        _ = Self.run("ip", ["link", "del", device])
        _ = Self.run("ip", ["netns", "del", namespace])
    }

    deinit { remove() }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [tool] + arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (127, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (
            p.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        )
    }
}

/// A TCP relay on 127.0.0.1 that forwards to `target` and holds every chunk
/// back by half the round-trip time in each direction; with `rate` set it
/// also paces each direction to that many bits per second (the user-space
/// shaping used when namespaces are not available).
final class DelayRelay: @unchecked Sendable {
    private let listener: RelayListener
    private let oneWay: Double
    private let rate: Double?
    var port: Int { listener.port }

    init(target: (host: String, port: Int), roundTrip: Double, rate: Double?) throws {
        self.oneWay = roundTrip / 2
        self.rate = rate
        listener = try RelayListener(target: target)
        listener.start { [self] client, upstream in
            pump(from: client, to: upstream)
            pump(from: upstream, to: client)
        }
    }

    func stop() { listener.stop() }

    /// Reads `from` as fast as it comes; a second thread writes each chunk to
    /// `to` once its delay has passed (and the pacing allows).
    private func pump(from: Int32, to: Int32) {
        let queue = Mutex<[(due: Double, bytes: [UInt8])]>([])
        let ready = DispatchSemaphore(value: 0)
        let (oneWay, rate) = (self.oneWay, self.rate)
        Thread {
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress!, $0.count, 0) }
                if n <= 0 {
                    queue.withLock { $0.append((0, [])) }
                    ready.signal()
                    return
                }
                let due = Self.now() + oneWay
                queue.withLock { $0.append((due, Array(buffer[0..<n]))) }
                ready.signal()
            }
        }.start()
        Thread {
            var free = 0.0  // when the paced link is free again
            while true {
                ready.wait()
                guard let (due, bytes) = queue.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { continue }
                if bytes.isEmpty {
                    shutdown(to, Int32(SHUT_WR))
                    return
                }
                var start = max(due, Self.now())
                if let rate {
                    start = max(start, free)
                    free = start + Double(bytes.count * 8) / rate
                    start = free  // the last bit leaves when the chunk has been serialized
                }
                let wait = start - Self.now()
                if wait > 0 { usleep(UInt32(wait * 1e6)) }
                var off = 0
                while off < bytes.count {
                    let n = bytes.withUnsafeBytes {
                        send(to, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL))
                    }
                    if n <= 0 {
                        shutdown(from, Int32(SHUT_RD))
                        return
                    }
                    off += n
                }
            }
        }.start()
    }

    static func now() -> Double { monotonicSeconds() }
}

/// The listening side of a relay on 127.0.0.1: accepts connections, opens
/// one to `target` for each (TCP_NODELAY on both) and hands the pair to the
/// relay's handler, on a thread of its own, until `stop`.
final class RelayListener: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let target: (host: String, port: Int)
    private let stopped = Atomic<Bool>(false)

    init(target: (host: String, port: Int)) throws {
        self.target = target
        (fd, port) = try Self.listen()
    }

    /// Starts accepting; `handle(client, upstream)` owns both sockets.
    func start(_ handle: @escaping @Sendable (Int32, Int32) -> Void) {
        Thread { [self] in
            while !stopped.load(ordering: .relaxed) {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                guard let upstream = Self.connect(target.host, target.port) else {
                    close(client)
                    continue
                }
                var one: Int32 = 1
                for s in [client, upstream] {
                    setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                }
                handle(client, upstream)
            }
        }.start()
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    /// A listening socket on 127.0.0.1 at a free port.
    static func listen() throws -> (fd: Int32, port: Int) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, Glibc.listen(listener, 16) == 0 else {
            close(listener)
            throw ValidationError("relay: bind failed (\(errno))")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(listener, $0, &len) }
        }
        return (listener, Int(UInt16(bigEndian: addr.sin_port)))
    }

    static func connect(_ host: String, _ port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr(host)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if r != 0 {
            close(fd)
            return nil
        }
        return fd
    }
}

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// CPU seconds of the calling thread.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
