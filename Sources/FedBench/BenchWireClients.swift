import ArgumentParser
import Dispatch
import FedClient
import FedCodec
import FedModel
import Foundation
import Synchronization

/// `fed bench wire --clients`: the async client against the blocking one,
/// over persistent connections, in clear text and (with `openssl` at hand) TLS.
extension BenchCommand.Wire {
    struct ClientRow: Codable {
        var client: String
        var encoding: String
        var clients: Int
        var roundTripsPerSecond: Double
        var p50Ms: Double
        var p99Ms: Double
        var clientCPUms: Double
        var serverCPUms: Double
    }

    func runClients() throws {
        // The clients' process, as `fed client` runs it (the child server keeps glibc's defaults).
        MallocTuning.enable()
        let cell = quick ? 0.5 : seconds
        let tensors = MLP(seed: 2).tensors()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fed-tls-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var tls: TLSFiles? = nil
        if server == nil {
            do { tls = try TLSFiles.make(in: dir) } catch { print("TLS is not measured: \(error)") }
        }
        let target = try BenchTarget(server: server, arguments: tls?.serverArguments(plaintext: true) ?? [])
        defer { withExtendedLifetime(target) {} }
        let (host, port) = (target.host, target.port)
        let encodings: [(String, Compression)] = [("raw", .none), ("shuffle-zlib-1", .shuffleZlib)]
        var rows: [ClientRow] = []
        for (name, compression) in encodings {
            for clients in [1, 8] {
                Progress.line("\(name), \(clients) clients: blocking")
                var cpu = cpuNow(target)
                let blocking = try LoadGenerator.run(
                    clients: clients, seconds: cell,
                    open: { i in
                        BinaryTransport(
                            host: host, port: port, clientID: "blocking-\(i)", compression: compression)
                    },
                    step: { t in
                        _ = try t.fetch(heldVersion: 0)
                        _ = try t.push(tensors, datasets: 1, baseVersion: 0, pushID: .random(in: 1...UInt64.max))
                    })
                rows.append(row("blocking", name, clients, blocking.latencies, blocking.elapsed, since: cpu, target))
                var kinds: [(String, FederationClient.TLS?)] = [("async", nil)]
                if let tls { kinds.append(("async + TLS", tls.client())) }
                for (kind, clientTLS) in kinds {
                    Progress.line("\(name), \(clients) clients: \(kind)")
                    cpu = cpuNow(target)
                    let (latencies, elapsed) = try Self.asyncRoundTrips(
                        clients: clients, seconds: cell, tensors: tensors
                    ) { i in
                        FederationClient(
                            host: host, port: port,
                            configuration: .init(clientID: "async-\(i)", compression: compression, tls: clientTLS))
                    }
                    rows.append(row(kind, name, clients, latencies, elapsed, since: cpu, target))
                }
            }
        }
        Progress.done()
        print(
            Table.render(
                header: [
                    "client", "encoding", "clients", "rt/s", "p50 ms", "p99 ms", "client CPU ms", "server CPU ms",
                ],
                rows: rows.map {
                    [
                        $0.client, $0.encoding, "\($0.clients)", String(format: "%.1f", $0.roundTripsPerSecond),
                        String(format: "%.2f", $0.p50Ms), String(format: "%.2f", $0.p99Ms),
                        String(format: "%.2f", $0.clientCPUms), String(format: "%.2f", $0.serverCPUms),
                    ]
                }))
        try BenchOutput.json(rows, to: out + "/clients.json")
        print("\nwrote \(out)/clients.json")
        print("\nbars (round trips per second, same run):")
        for (name, _) in encodings {
            for clients in [1, 8] {
                func rate(_ kind: String) -> Double? {
                    rows.first { $0.client == kind && $0.encoding == name && $0.clients == clients }?
                        .roundTripsPerSecond
                }
                guard let b = rate("blocking"), let a = rate("async") else { continue }
                Bar.check("async / blocking, \(name), \(clients) clients", a / b, atLeast: 0.9)
                if let t = rate("async + TLS") {
                    Bar.check("TLS / clear text (async), \(name), \(clients) clients", t / a, atLeast: 0.5)
                }
            }
        }
    }

    /// CPU seconds used so far by this process and by the child server (0 for --server).
    private func cpuNow(_ target: BenchTarget) -> (client: Double, server: Double) {
        (processCPUSeconds(), target.child.map { ChildServer.cpuSeconds(pid: $0.processIdentifier) } ?? 0)
    }

    private func row(
        _ kind: String, _ encoding: String, _ clients: Int, _ latencies: [Double], _ elapsed: Double,
        since cpu: (client: Double, server: Double), _ target: BenchTarget
    ) -> ClientRow {
        let sorted = latencies.sorted()
        let now = cpuNow(target)
        let n = Double(max(sorted.count, 1))
        return ClientRow(
            client: kind, encoding: encoding, clients: clients, roundTripsPerSecond: Double(sorted.count) / elapsed,
            p50Ms: (sorted.isEmpty ? 0 : sorted[sorted.count / 2]) * 1e3,
            p99Ms: (sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 99 / 100)]) * 1e3,
            clientCPUms: (now.client - cpu.client) / n * 1e3,
            serverCPUms: target.child == nil ? .nan : (now.server - cpu.server) / n * 1e3)
    }

    /// `clients` tasks, each with its own `FederationClient`, doing fetch +
    /// push round trips for `seconds`; every round trip's seconds and the wall time.
    static func asyncRoundTrips(
        clients: Int, seconds: Double, tensors: [Tensor], make: @escaping @Sendable (Int) -> FederationClient
    ) throws -> ([Double], Double) {
        let result = Mutex<Result<([Double], Double), any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let clock = ContinuousClock()
            let start = clock.now
            do {
                let all = try await withThrowingTaskGroup(of: [Double].self) { group in
                    for i in 0..<clients {
                        group.addTask {
                            let c = make(i)
                            var local: [Double] = []
                            repeat {
                                let t0 = clock.now
                                _ = try await c.fetch(held: 0)
                                _ = try await c.push(tensors, datasets: 1, baseVersion: 0)
                                let d = clock.now - t0
                                local.append(Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
                            } while clock.now - start < .milliseconds(Int(seconds * 1000))
                            await c.close()
                            return local
                        }
                    }
                    var all: [Double] = []
                    for try await l in group { all += l }
                    return all
                }
                let e = clock.now - start
                let elapsed = Double(e.components.seconds) + Double(e.components.attoseconds) * 1e-18
                result.withLock { $0 = .success((all, elapsed)) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        done.wait()
        return try result.withLock { $0! }.get()
    }
}
