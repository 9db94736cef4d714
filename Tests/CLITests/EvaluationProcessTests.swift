import FedCodec
import FedModel
import FedTestSupport
import Foundation
import Testing

/// `fed server` as a child process whose output is collected as it arrives.
private final class EvaluatingServer: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var text = ""

    init(_ arguments: [String]) throws {
        process.executableURL = FedProcess.binary
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let handle = pipe.fileHandleForReading
        Thread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.withLock { text += String(decoding: chunk, as: UTF8.self) }
            }
        }.start()
    }

    var output: String { lock.withLock { text } }

    /// The port of its "listening on HOST:PORT" line, waiting at most 20 s.
    func port() -> Int? {
        let start = Date()
        while Date().timeIntervalSince(start) < 20 {
            if let line = output.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") }),
                let port = Int(line.split(separator: ":").last ?? "")
            {
                return port
            }
            usleep(20_000)
        }
        return nil
    }

    /// SIGTERM, then the exit status (killed after 20 s).
    func stop() -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// `curl -sf URL` into `file`; its bytes.
private func curl(_ url: String, into file: String) throws -> [UInt8] {
    let (status, output) = try FedProcess.run(
        executable: URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-sf", "-o", file, url])
    guard status == 0 else { throw TestError("curl \(url): \(status) \(output)") }
    return try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
}

@Suite("Federated evaluation with client processes")
struct EvaluationProcessTests {
    @Test(
        "fed server --evaluate-fraction 1 and fed client --held-out 0.25 (the MLP): the server's weighted accuracy of the trained version is central evaluation of the union of the held-out shares, to the count of correct answers"
    )
    func consistentWithCentralEvaluation() async throws {
        let dir = try temporaryDirectory("evaluation")
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try EvaluatingServer([
            "server", "--port", "0", "--checkpoint", dir.appendingPathComponent("m.fedk").path, "--rounds", "3",
            "--over-selection", "1", "--round-deadline", "60", "--selection-window", "60", "--total-rounds", "1",
            "--evaluate-fraction", "1", "--log-level", "info",
        ])
        let port = try #require(try await offPool { server.port() })
        let ranges = [2, 5, 9]
        // Each client: evaluate version 0, train round 1, evaluate version 1, then the server has finished.
        let runs = try await withThrowingTaskGroup(of: (Int32, String).self) { group in
            for k in ranges {
                group.addTask {
                    try await offPool {
                        try FedProcess.run([
                            "client", "--server", "127.0.0.1:\(port)", "--id", "e\(k)", "--range", "\(k)", "\(k)",
                            "--rounds", "--held-out", "0.25", "--epochs", "1", "--threads", "1", "--data",
                            FedProcess.mnist,
                        ])
                    }
                }
            }
            var out: [(Int32, String)] = []
            for try await r in group { out.append(r) }
            return out
        }
        for (status, output) in runs {
            #expect(status == 0, "\(output)")
            #expect(output.contains("evaluated version 0 on 104 held-out samples"), "\(output)")
            #expect(output.contains("evaluated version 1 on 104 held-out samples"), "\(output)")
            #expect(output.contains("1 tasks, 1 reports applied, 0 refused, 2 evaluations"), "\(output)")
        }
        let history = try JSONSerialization.jsonObject(
            with: Data(try curl("http://127.0.0.1:\(port)/v1/evaluation", into: dir.appendingPathComponent("h").path)))
        let versions = try #require((history as? [String: Any])?["versions"] as? [[String: Any]])
        #expect(versions.map { $0["model_version"] as? Int } == [0, 1])
        let v1 = try #require(versions.last)
        let accuracy = try #require((v1["metrics"] as? [String: Any])?["accuracy"] as? [String: Any])
        let loss = try #require((v1["metrics"] as? [String: Any])?["loss"] as? [String: Any])
        let mean = try #require(accuracy["mean"] as? Double)
        let examples = try #require(v1["examples"] as? Int)

        // Central evaluation of version 1 (as the server serves it) on the union of the held-out shares:
        // each client holds out the last quarter of its slice.
        let model = try curl("http://127.0.0.1:\(port)/v1/model/1", into: dir.appendingPathComponent("m1").path)
        let weights = try model.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            #expect(try r.u64("version") == 1)
            _ = try r.u64("datasets")
            return try TensorBlob.decode(&r, limits: .default)
        }
        let (slices, _, _) = try DataFolder.federatedSplit(in: FedProcess.mnist, scale: true)
        var images: [Float] = []
        var labels: [UInt8] = []
        for k in ranges {
            let slice = slices[k - 1]
            let held = Int((Double(slice.count) * 0.25).rounded())
            let share = slice.slice((slice.count - held)..<slice.count)
            images += share.images
            labels += share.labels
        }
        let union = Dataset(images: images, labels: labels, features: slices[0].features)
        let trainer = Trainer(model: MLP(seed: 1), maxBatch: 1024, threads: 1)
        try trainer.adopt(weights)
        let central = trainer.evaluate(union)
        let centralLoss = trainer.loss(union)
        let counted = Int((mean * Double(examples)).rounded())
        print(
            "fed client processes, version 1: the server's weighted accuracy \(mean) over \(examples) held-out examples of \(v1["clients"] ?? "?") clients (\(counted) correct; worst client \(accuracy["min"] ?? "?"), p10 \(accuracy["p10"] ?? "?")); central evaluation of their union \(central.accuracy) (\(central.correct) correct of \(central.total))"
        )
        #expect(v1["clients"] as? Int == ranges.count)
        #expect(examples == central.total && examples == 3 * 104)
        #expect(counted == central.correct)
        #expect(abs(mean - central.accuracy) <= 1e-12)
        let lossMean = try #require(loss["mean"] as? Double)
        #expect(abs(lossMean - centralLoss) <= 1e-5 * max(1, centralLoss), "\(lossMean) vs \(centralLoss)")
        #expect(try await offPool { server.stop() } == 0)
    }
}
