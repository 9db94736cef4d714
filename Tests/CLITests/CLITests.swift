import FedModel
import FedTestSupport
import Foundation
import Testing

/// Runs the real `fed` executable (built next to the test bundle) as a process.
enum FedProcess {
    static let binary: URL = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The test bundle may be a directory (.xctest) nested one level deeper.
        for _ in 0..<4 where !FileManager.default.fileExists(atPath: dir.appendingPathComponent("fed").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("fed")
    }()

    /// The MNIST test set shipped in the package (Data/mnist).
    static let mnist = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Data/mnist").path

    /// Runs `fed args`, returning exit status and combined output.
    static func run(_ args: [String]) throws -> (status: Int32, output: String) {
        try run(executable: binary, args)
    }

    /// Runs any program to its end, returning exit status and combined output.
    static func run(executable: URL, _ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = executable
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// `run(args)`, waited for off the cooperative pool (`offPool`): the test is suspended meanwhile.
    static func run(_ args: [String]) async throws -> (status: Int32, output: String) {
        try await run(executable: binary, args)
    }

    /// `run(executable:_:)`, waited for off the cooperative pool (`offPool`): the test is suspended meanwhile.
    static func run(executable: URL, _ args: [String]) async throws -> (status: Int32, output: String) {
        try await offPool { try run(executable: executable, args) }
    }
}

@Suite("fed CLI")
struct CLITests {
    @Test("fed bench train saves a checkpoint that fed evaluate reads")
    func trainThenEvaluate() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ck = dir.appendingPathComponent("model.fedk").path
        let train = try await FedProcess.run([
            // One thread: no second, single-thread run for comparison.
            "bench", "train", "--data", FedProcess.mnist, "--samples", "2000", "--epochs", "2", "--threads", "1",
            "--save-checkpoint", ck,
        ])
        #expect(train.status == 0, "\(train.output)")
        #expect(train.output.contains("samples/s"))
        let eval = try await FedProcess.run([
            "evaluate", "--checkpoint", ck, "--data", FedProcess.mnist, "--test-from", "5000",
        ])
        #expect(eval.status == 0, "\(eval.output)")
        #expect(eval.output.contains("5000 test images"))
        let line = try #require(eval.output.split(separator: "\n").first { $0.hasPrefix("accuracy ") })
        let accuracy = try #require(Double(line.split(separator: " ")[1]))
        #expect(accuracy > 0.85, "2 epochs on 2,000 digits: \(line)")
        #expect(eval.output.contains("confusion (rows: actual, columns: predicted)"))
    }

    @Test("A closed output pipe does not kill fed with SIGPIPE: the write fails and the command finishes")
    func brokenPipe() throws {
        let p = Process()
        p.executableURL = FedProcess.binary
        p.arguments = ["bench", "codec", "--help"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try pipe.fileHandleForReading.close()  // nobody will read: every write hits a closed pipe
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationReason == .exit, "killed by signal \(p.terminationStatus)")
    }

    @Test("fed evaluate refuses a corrupt checkpoint with a clear message")
    func corruptCheckpoint() async throws {
        let vectors = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Protocol/vectors")
        let result = try await FedProcess.run([
            "evaluate", "--checkpoint", vectors.appendingPathComponent("checkpoint_bad_crc.bin").path,
        ])
        #expect(result.status != 0)
        #expect(result.output.contains("not a usable checkpoint"))
        #expect(result.output.contains("checksum_mismatch"))
    }

    @Test("fed --help lists the commands")
    func help() async throws {
        let result = try await FedProcess.run(["--help"])
        #expect(result.status == 0)
        #expect(result.output.contains("bench") && result.output.contains("evaluate"))
    }
}

@Suite("fed bench wire")
struct BenchWireTests {
    @Test("--quick measures every encoding and writes CSV, JSON and an SVG chart")
    func quick() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wire-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Cells of 0.05 s: each still takes at least one round trip per client.
        let r = try await FedProcess.run(["bench", "wire", "--quick", "--seconds", "0.05", "--out", dir.path])
        #expect(r.status == 0, "\(r.output)")
        let csv = try String(contentsOf: dir.appendingPathComponent("wire.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 1 + 7 * 2)
        let rows = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("wire.json")))
                as? [[String: Any]])
        let json = try #require(rows.first { ($0["encoding"] as? String)?.hasPrefix("JSON") == true })
        let fetch = try #require(json["fetchBytes"] as? Int)
        #expect(abs(Double(fetch) / 4_350_666 - 1) < 0.02, "JSON fetch \(fetch) bytes")
        let svg = try String(contentsOf: dir.appendingPathComponent("wire.svg"), encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("shuffle-zlib-1") && svg.contains("<circle"))
    }
}

@Suite("fed simulate")
struct SimulateTests {
    @Test("Two runs with the same seed give the same figures; the files are written")
    func deterministic() async throws {
        let dirs = try (0..<2).map { _ in try temporaryDirectory("sim") }
        defer { for d in dirs { try? FileManager.default.removeItem(at: d) } }
        var summaries: [[[String: Any]]] = []
        for dir in dirs {
            let r = try await FedProcess.run([
                "simulate", "--quick", "--data", FedProcess.mnist, "--clients", "8", "--budget", "3000",
                "--strategy", "fedbuff/k=4", "--strategy", "running-average", "--no-centralized",
                "--stragglers", "0.25", "--out", dir.path,
            ])
            #expect(r.status == 0, "\(r.output)")
            let json =
                try JSONSerialization.jsonObject(
                    with: Data(contentsOf: dir.appendingPathComponent("summary.json"))) as! [String: Any]
            summaries.append(json["runs"] as! [[String: Any]])
            let svg = try String(contentsOf: dir.appendingPathComponent("curves.svg"), encoding: .utf8)
            #expect(svg.hasPrefix("<svg") && svg.contains("polyline") && svg.contains("fedbuff/k=4"))
            let csv = try String(contentsOf: dir.appendingPathComponent("curve.csv"), encoding: .utf8)
            #expect(csv.split(separator: "\n").count > 2)
        }
        #expect(summaries[0].count == 2)
        for (a, b) in zip(summaries[0], summaries[1]) {
            for key in ["final_accuracy", "bytes", "versions", "virtual_seconds", "pushes"] {
                #expect("\(a[key]!)" == "\(b[key]!)", "\(key) differs between two runs of one seed")
            }
        }
    }

    @Test("Clients with a fresh Adam every round give another run, the same for the same seed")
    func freshOptimizerState() async throws {
        func finalAccuracy(_ extra: [String]) async throws -> (accuracy: String, scenario: String) {
            let dir = try temporaryDirectory("sim")
            defer { try? FileManager.default.removeItem(at: dir) }
            let r = try await FedProcess.run(
                [
                    // Two rounds of four clients of eight: some client trains in both, so its Adam state matters.
                    "simulate", "--quick", "--data", FedProcess.mnist, "--clients", "8", "--budget", "5000",
                    "--sync", "0.5", "--strategy", "fedavg/k=4", "--no-centralized", "--out", dir.path,
                ] + extra)
            #expect(r.status == 0, "\(r.output)")
            let json =
                try JSONSerialization.jsonObject(
                    with: Data(contentsOf: dir.appendingPathComponent("summary.json"))) as! [String: Any]
            let run = (json["runs"] as! [[String: Any]])[0]
            return ("\(run["final_accuracy"]!)", "\(run["scenario"]!)")
        }
        let fresh = try await finalAccuracy(["--optimizer-state", "fresh"])
        #expect(fresh.scenario.hasSuffix("fresh Adam"))
        #expect(try await finalAccuracy(["--optimizer-state", "fresh"]) == fresh)
        let kept = try await finalAccuracy([])
        #expect(!kept.scenario.contains("Adam") && kept.accuracy != fresh.accuracy)
    }

    @Test("Rounds through check-in: drop-outs and over-selection, the rounds table and rounds.csv")
    func checkIn() async throws {
        let dir = try temporaryDirectory("sim")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try await FedProcess.run([
            "simulate", "--quick", "--data", FedProcess.mnist, "--clients", "8", "--budget", "4000", "--sync", "0.5",
            "--dropouts", "0.25", "--over-selection", "1.5", "--no-centralized", "--out", dir.path,
        ])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("seed 1: fedavg-rounds"), "\(r.output)")
        #expect(r.output.contains("rounds through check-in"), "\(r.output)")
        #expect(r.output.contains("iid, sync 0.5, check-in, over-selection 1.5, 25% dropouts"), "\(r.output)")
        let csv = try String(contentsOf: dir.appendingPathComponent("rounds.csv"), encoding: .utf8)
        let rows = csv.split(separator: "\n")
        #expect(rows.count == 2 && rows[0].hasPrefix("strategy,scenario,seed,final_accuracy,rounds_completed"))
        // Four of eight clients a round, each of 625 images: 4,000 samples take at least two rounds.
        // The scenario holds commas, so it is quoted: the figures follow it.
        let fields =
            rows.count == 2
            ? (rows[1].components(separatedBy: "\",").last ?? "").split(separator: ",").map(String.init) : []
        #expect(fields.count == 13 && (Int(fields[2]) ?? 0) >= 2, "\(csv)")

        let help = try await FedProcess.run(["simulate", "--help"])
        for flag in ["--check-in", "--over-selection", "--dropouts", "--round-deadline", "--min-reports"] {
            #expect(help.output.contains(flag), "\(flag) is not in the help")
        }
        let refused = try await FedProcess.run(["simulate", "--dropouts", "0.2"])
        #expect(refused.status != 0 && refused.output.contains("need --sync"), "\(refused.output)")
        let strategy = try await FedProcess.run(["simulate", "--sync", "0.1", "--check-in", "--strategy", "fedbuff"])
        #expect(strategy.status != 0 && strategy.output.contains("FedAvg"), "\(strategy.output)")
    }

    @Test("A bad strategy or partition is refused with the reason")
    func badOptions() async throws {
        let r = try await FedProcess.run(["simulate", "--strategy", "fedbuff/k=0"])
        #expect(r.status != 0 && r.output.contains("k=0"))
        let p = try await FedProcess.run(["simulate", "--partition", "dirichlet:x"])
        #expect(p.status != 0 && p.output.contains("dirichlet:ALPHA"))
    }
}

@Suite("fed data fetch")
struct DataFetchTests {
    /// A Python http.server on 127.0.0.1 serving `dir`, on a free port.
    final class Mirror {
        let process = Process()
        let port: Int
        init(dir: String) throws {
            port = reservePort()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [
                "python3", "-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", dir,
            ]
            // A fresh handle, not the shared nullDevice: a concurrent spawn may close that one.
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            for _ in 0..<100 {
                if (try? TestClient(port: port)) != nil { return }
                usleep(50_000)
            }
            throw TestError("mirror did not start")
        }
        func stop() {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
        deinit { stop() }
    }

    @Test("Downloads from a mirror, verifies SHA-256, refuses a corrupt file and says why")
    func fetch() async throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let served = root.appendingPathComponent("mirror"), target = root.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: served, withIntermediateDirectories: true)
        for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            try FileManager.default.copyItem(
                atPath: FedProcess.mnist + "/" + name, toPath: served.appendingPathComponent(name).path)
        }
        let mirror = try Mirror(dir: served.path)
        defer { mirror.stop() }  // no server may outlive the test
        let base = "http://127.0.0.1:\(mirror.port)/"

        let ok = try await FedProcess.run(["data", "fetch", "--dir", target.path, "--mirror", base, "--only", "t10k"])
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.output.contains("SHA-256 verified"))
        let again = try await FedProcess.run([
            "data", "fetch", "--dir", target.path, "--mirror", base, "--only", "t10k",
        ])
        #expect(again.output.contains("already present and verified"))
        // The downloaded files are usable data.
        let eval = try await FedProcess.run([
            "bench", "train", "--data", target.path, "--samples", "1000", "--epochs", "1", "--threads", "1",
        ])
        #expect(eval.status == 0, "\(eval.output)")

        // A tampered labels file (valid gzip, one label changed) is refused and not kept.
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: FedProcess.mnist + "/t10k-labels-idx1-ubyte.gz")))
        var tampered = try [UInt8](IDX.gunzip(good, path: "x"))
        tampered[100] ^= 1
        try Data(gzipped(tampered)).write(to: served.appendingPathComponent("t10k-labels-idx1-ubyte.gz"))
        let fresh = root.appendingPathComponent("fresh")
        let bad = try await FedProcess.run([
            "data", "fetch", "--dir", fresh.path, "--mirror", base, "--only", "t10k-labels",
        ])
        #expect(bad.status != 0)
        #expect(bad.output.contains("does not match the published"), "\(bad.output)")
        #expect(
            !FileManager.default.fileExists(atPath: fresh.appendingPathComponent("t10k-labels-idx1-ubyte.gz").path))
    }

    /// gzip via the system's gzip command.
    func gzipped(_ bytes: [UInt8]) throws -> [UInt8] {
        try runProgram("/usr/bin/env", ["gzip", "-c"], input: bytes, mergeErrors: false).output
    }
}
