import ArgumentParser
import FedClient
import FedCodec
import FedModel
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

extension BenchCommand {
    struct Tiers: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A root and two edge servers against one server: the same model, nothing lost or repeated.",
            discussion: """
                Starts four `fed server` processes: a root (running average, --max-datasets raised for \
                the edges' sums), edges A and B (`--upstream` the root, --interval), and a single server \
                that receives every update directly. Sends --updates fixed updates (seeded random \
                weights of the MLP's shapes, 50-500 samples each): the same update to the single server \
                and to one edge (fetching first and claiming the running total, as the original's clients do: \
                SPEC 4.2 reads a claim above the count at the base as such a total). Edge A reaches the root through a relay that loses the acknowledgement \
                of every push (the root applies it, edge A never hears so); once the root holds A's first \
                batch, A acknowledges a few more updates and is killed with -9, then restarted from its \
                checkpoint with the root reached directly. Bars: the root's model equals the single \
                server's within 1e-5 (max |difference| / max |weight|); the root counts every \
                acknowledged sample exactly once. Exits 1 if a bar misses.
                """)

        @Option(help: "Fixed client updates in all (at least 8).") var updates = 24
        @Option(help: "Seconds between an edge's pushes upstream.") var interval = 0.5
        @Option(help: "Seed of the updates' weights and sample counts.") var seed: UInt64 = 1

        func validate() throws {
            guard updates >= 8 else { throw ValidationError("--updates must be at least 8") }
            guard interval > 0 else { throw ValidationError("--interval must be positive") }
        }

        func run() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fed-tiers-\(getpid())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            var children: [Process] = []
            defer {
                for c in children where c.isRunning {
                    kill(c.processIdentifier, SIGKILL)
                    c.waitUntilExit()
                }
                try? FileManager.default.removeItem(at: dir)
            }
            func start(_ name: String, _ arguments: [String]) throws -> Int {
                let (p, port) = try ChildServer.start(
                    checkpoint: dir.appendingPathComponent("\(name).fedk").path, arguments: arguments)
                children.append(p)
                return port
            }
            func edge(_ id: String, upstream: Int) -> [String] {
                ["--upstream", "127.0.0.1:\(upstream)", "--upstream-interval", "\(interval)", "--upstream-id", id]
            }
            let rootPort = try start("root", ["--max-datasets", "1000000000"])
            let singlePort = try start("single", [])
            let relay = try AckDropRelay(target: ("127.0.0.1", rootPort))
            defer { relay.stop() }
            var edgeA = try start("edge-a", edge("edge-a", upstream: relay.port))
            let edgeAProcess = children[children.count - 1]
            let edgeB = try start("edge-b", edge("edge-b", upstream: rootPort))
            print(
                "root :\(rootPort), single :\(singlePort), edge A :\(edgeA) (through a relay losing acks), edge B :\(edgeB)"
            )

            var rng = SeededGenerator(seed: seed)
            let all: [(tensors: [Tensor], samples: UInt64)] = (0..<updates).map { _ in
                let t = Tensor.mnistMLPShapes.map { s in
                    try! Tensor(shape: s, values: (0..<Tensor.elementCount(s)!).map { _ in rng.uniform(0.1) })
                }
                return (t, 50 + rng.next() % 451)
            }
            let single = BinaryTransport(host: "127.0.0.1", port: singlePort, clientID: "single-client")
            var pushID: UInt64 = 0
            func send(_ i: Int, to port: Int) throws {
                pushID += 1
                let edgeClient = BinaryTransport(host: "127.0.0.1", port: port, clientID: "client-\(i)")
                do {
                    // As the original's clients do: fetch, then claim the running total (the count
                    // at the fetched version plus the update's samples). A bare count above the
                    // edge's count at the base would be read as a total (SPEC 4.2) and shrunk.
                    guard case .model(let base, let count, _) = try edgeClient.fetch(heldVersion: 0) else {
                        throw ValidationError("the edge sent no model")
                    }
                    _ = try edgeClient.push(
                        all[i].tensors, datasets: count + all[i].samples, baseVersion: base, pushID: pushID)
                } catch { throw ValidationError("update \(i) to the edge at :\(port): \(error)") }
                do {
                    _ = try single.push(all[i].tensors, datasets: all[i].samples, baseVersion: 0, pushID: pushID)
                } catch { throw ValidationError("update \(i) to the single server: \(error)") }
            }
            let root = BinaryTransport(host: "127.0.0.1", port: rootPort, clientID: "observer")
            func rootModel() throws -> (version: UInt64, samples: UInt64, tensors: [Tensor]) {
                guard case .model(let v, let d, let t) = try root.fetch(heldVersion: 0) else {
                    throw ValidationError("the root sent no model")
                }
                return (v, d, t)
            }
            /// Polls until `done` holds (true) or `seconds` pass (false).
            func wait(_ seconds: Double, _ done: () throws -> Bool) rethrows -> Bool {
                let end = monotonicSeconds() + seconds
                while monotonicSeconds() < end {
                    if try done() { return true }
                    usleep(100_000)
                }
                return try done()
            }

            let first = updates / 3
            let second = first + 3
            for i in 0..<first { try send(i, to: edgeA) }
            guard try wait(30, { try relay.cut.load(ordering: .relaxed) >= 1 && rootModel().samples > 0 }) else {
                throw ValidationError("the root never received edge A's first batch")
            }
            let applied = try rootModel().samples
            print(
                "root applied edge A's first batch (\(applied) samples); edge A never heard (\(relay.cut.load(ordering: .relaxed)) acks lost)"
            )
            for i in first..<second { try send(i, to: edgeA) }
            kill(edgeAProcess.processIdentifier, SIGKILL)
            edgeAProcess.waitUntilExit()
            print("edge A killed with -9 after acknowledging \(second) updates")
            for i in second..<updates { try send(i, to: edgeB) }
            edgeA = try start("edge-a", edge("edge-a", upstream: rootPort))
            print("edge A restarted from its checkpoint (:\(edgeA)), the root reached directly")

            let total = all.reduce(0) { $0 + $1.samples }
            let arrived = try wait(30) { try rootModel().samples >= total }
            // Several more rounds: a batch applied twice would show now.
            usleep(UInt32(4 * interval * 1e6))
            let r = try rootModel()
            guard case .model(_, let singleSamples, let s) = try single.fetch(heldVersion: 0) else {
                throw ValidationError("the single server sent no model")
            }
            let rv = r.tensors.flatMap(\.values)
            let sv = s.flatMap(\.values)
            let scale = sv.map(abs).max() ?? 1
            let worst = zip(rv, sv).map { abs($0 - $1) }.max() ?? .infinity
            let relative = Double(worst / scale)
            let servesRoot = try [edgeA, edgeB].allSatisfy { port in
                let t = BinaryTransport(host: "127.0.0.1", port: port, clientID: "observer")
                return try wait(10) {
                    guard case .model(_, _, let w) = try t.fetch(heldVersion: 0) else { return false }
                    return w == (try rootModel().tensors)
                }
            }
            print(
                Table.render(
                    header: ["", "samples", "version"],
                    rows: [
                        ["sent (acknowledged)", "\(total)", ""],
                        ["single server", "\(singleSamples)", ""],
                        ["root", "\(r.samples)", "\(r.version)"],
                    ]))
            print(String(format: "root vs single server: max |difference| %.3g, relative %.3g", worst, relative))
            print("\nbars:")
            let bars = [
                Bar.expect(
                    "root's model equals the single server's within 1e-5 relative", relative <= 1e-5,
                    String(format: "%.2g", relative)),
                Bar.expect(
                    "every acknowledged update reached the root", arrived && r.samples >= total,
                    "\(r.samples) of \(total) samples"),
                Bar.expect(
                    "none applied twice (edge A killed -9 holding an applied, unacknowledged batch)",
                    r.samples <= total, "\(r.samples) samples, \(relay.cut.load(ordering: .relaxed)) acks lost"),
                Bar.expect("both edges serve the root's model", servesRoot, servesRoot ? "yes" : "no"),
            ]
            if bars.contains(false) { throw ExitCode(1) }
        }
    }
}
