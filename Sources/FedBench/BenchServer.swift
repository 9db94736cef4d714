import ArgumentParser
import FedClient
import FedCodec
import FedModel
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension BenchCommand {
    struct Server: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "server",
            abstract: "Fetches/s, latency, durable updates/s and memory of `fed server`, against loopback bandwidth.",
            discussion: """
                Starts `fed server` as a child process on a free port with a temporary checkpoint \
                (or uses --server), then measures, each for --seconds: a plain socket copy over \
                127.0.0.1 (the bandwidth ceiling); binary fetches of the MLP's weights with \
                --clients concurrent clients (fetches/s, p50/p99 latency, MB/s); durable pushes \
                (each acknowledged only once written and fsync'd); and the server's resident memory \
                with 64 clients connected. Prints the issue's bars next to the figures.
                """
        )

        @Option(help: "Use a running server (HOST:PORT) instead of starting one.") var server: String?
        @Option(help: "Concurrent clients for fetches and pushes.") var clients = 16
        @Option(help: "Seconds per measurement.") var seconds = 3.0
        @Option(help: "Compression of fetched weights: none, zlib, shuffle-zlib.") var compression = "none"

        func validate() throws {
            guard clients >= 1 && clients <= 512 else { throw ValidationError("--clients must be in 1...512") }
            guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
            guard Compression(name: compression) != nil else {
                throw ValidationError("unknown --compression \(compression)")
            }
        }

        func run() throws {
            let mode = Compression(name: compression)!
            let target = try BenchTarget(server: server)
            defer { withExtendedLifetime(target) {} }  // the child server lives until the end of run
            let (host, port, child) = (target.host, target.port, target.child)
            print("server \(host):\(port); \(clients) clients; \(seconds) s per figure; fetches in \(mode)")

            let loopback = try loopbackCopy(bytes: 1 << 30)
            print(String(format: "loopback socket copy: %.0f MB/s", loopback / 1e6))

            let fetch = try measure(host: host, port: port, clients: clients) { c in
                guard case .model = try c.request(.fetch(heldVersion: 0, compression: mode)) else {
                    throw ValidationError("fetch did not answer MODEL")
                }
            }
            print(
                String(
                    format: "fetch: %.0f/s, p50 %.2f ms, p99 %.2f ms, %.0f MB/s (%.2fx loopback)", fetch.rate,
                    fetch.p50 * 1e3, fetch.p99 * 1e3, fetch.bytesPerSecond / 1e6, fetch.bytesPerSecond / loopback))

            let weights = MLP(seed: 3).tensors()
            let push = try measure(host: host, port: port, clients: clients) { c in
                let answer = try c.request(
                    .push(Push(clientID: "bench", datasets: 1, baseVersion: 0, tensors: weights, compression: .none)))
                guard case .ack = answer else { throw ValidationError("push answered \(answer.type)") }
            }
            print(
                String(
                    format: "durable push: %.0f/s, p50 %.2f ms, p99 %.2f ms", push.rate, push.p50 * 1e3, push.p99 * 1e3)
            )

            var rss: Double?
            if let child {
                var held: [Connection] = []
                for i in 0..<64 {
                    let c = try Connection(host: host, port: port)
                    _ = try c.request(.hello(Hello(clientID: "idle-\(i)")))
                    _ = try c.request(.fetch(heldVersion: 0, compression: mode))
                    held.append(c)
                }
                rss = ChildServer.residentMegabytes(pid: child.processIdentifier)
                print(String(format: "server resident memory with 64 clients connected: %.1f MB", rss ?? -1))
                withExtendedLifetime(held) {}
            }

            print("\nbars (issue: the original served 6.3 fetches/s, 3.5 updates/s, 568 MB resident):")
            Bar.check("fetches/s at \(clients) clients >= 1500", fetch.rate / 1500, atLeast: 1)
            Bar.check("fetch p99 < 25 ms", 25 / max(fetch.p99 * 1e3, 1e-9), atLeast: 1)
            Bar.check("fetch bandwidth >= 0.5x loopback", fetch.bytesPerSecond / loopback, atLeast: 0.5)
            Bar.check("durable updates/s >= 200", push.rate / 200, atLeast: 1)
            if let rss { Bar.check("resident memory < 64 MB with 64 clients", 64 / rss, atLeast: 1) }
        }

        struct Figures {
            var rate: Double
            var p50: Double
            var p99: Double
            var bytesPerSecond: Double
        }

        /// Runs `body` in a loop on `clients` threads for `seconds`, each with its own connection.
        func measure(host: String, port: Int, clients: Int, _ body: @escaping @Sendable (Connection) throws -> Void)
            throws -> Figures
        {
            let run = try LoadGenerator.run(
                clients: clients, seconds: seconds,
                open: { i in
                    let c = try Connection(host: host, port: port, timeout: 30)
                    _ = try c.request(.hello(Hello(clientID: "bench-\(i)")))
                    return (c, c.bytesReceived)
                },
                step: { try body($0.0) })
            guard run.count > 0 else { throw ValidationError("no request completed") }
            let bytes = run.clients.reduce(0) { $0 + $1.0.bytesReceived - $1.1 }
            return Figures(
                rate: run.rate(over: seconds), p50: run.p50, p99: run.p99, bytesPerSecond: Double(bytes) / seconds)
        }

        /// Bytes per second of a plain TCP copy over 127.0.0.1 between two threads.
        func loopbackCopy(bytes total: Int) throws -> Double {
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(listener) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) }
            }
            listen(listener, 1)
            _ = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) }
            }
            let port = Int(UInt16(bigEndian: addr.sin_port))
            let reader = Thread {
                let fd = accept(listener, nil, nil)
                var buf = [UInt8](repeating: 0, count: 1 << 20)
                while buf.withUnsafeMutableBytes({ recv(fd, $0.baseAddress!, $0.count, 0) }) > 0 {}
                close(fd)
            }
            reader.start()
            let c = try Connection(host: "127.0.0.1", port: port)
            let chunk = [UInt8](repeating: 7, count: 1 << 20)
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<(total >> 20) { try c.write(chunk) }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            return Double(total) / elapsed
        }

    }
}
