import FedTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Runs Protocol/conformance/conformance.py (Python standard library only).
enum Conformance {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let script = root.appendingPathComponent("Protocol/conformance/conformance.py").path

    static func python(_ args: [String]) async throws -> (Int32, String) {
        try await FedProcess.run(executable: URL(fileURLWithPath: "/usr/bin/env"), ["python3"] + args)
    }

    /// "N passed, N failed" from the last line.
    static func counts(_ text: String) -> (Int, Int)? {
        guard let line = text.split(separator: "\n").last(where: { $0.contains(" passed, ") }) else { return nil }
        let nums = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        return nums.count == 2 ? (nums[0], nums[1]) : nil
    }
}

@Suite("Conformance client", .serialized)
struct ConformanceTests {
    @Test("The Python conformance client passes every vector and every scenario against fed server")
    func passesAgainstFedServer() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try ServerProcess(checkpoint: dir.appendingPathComponent("m.fedk").path)
        let (status, text) = try await Conformance.python([Conformance.script, "--server", "127.0.0.1:\(server.port)"])
        #expect(status == 0, "\(text)")
        let (passed, failed) = try #require(Conformance.counts(text), "\(text)")
        #expect(failed == 0, "\(text)")
        #expect(passed >= 62 + 40)
        #expect(text.contains("PASS  no rounds: CHECK_IN gets unexpected_message (33)"), "\(text)")
        #expect(server.process.isRunning, "the server survived every scenario")
        #expect(try await server.terminate() == 0)
    }

    @Test("It passes against a server with fetch deltas and fewer accepted dtypes, checking what they decide")
    func passesWithFetchDeltas() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try ServerProcess(
            checkpoint: dir.appendingPathComponent("m.fedk").path,
            extra: ["--fetch-deltas", "int8", "--encodings", "fp32,fp16,int2"])
        let (status, text) = try await Conformance.python([
            Conformance.script, "--vectors", "", "--server", "127.0.0.1:\(server.port)",
        ])
        #expect(status == 0, "\(text)")
        let (_, failed) = try #require(Conformance.counts(text), "\(text)")
        #expect(failed == 0, "\(text)")
        for check in [
            "MODEL_DELTA, its payload smaller than MODEL's", "with only mode none agreed",
            "not in WELCOME.encodings, gets unsupported_d_type", "an int8 push to a server that does not announce int8",
        ] {
            #expect(text.contains("PASS  ") && text.contains(check), "\(check) was not checked: \(text)")
        }
        #expect(try await server.terminate() == 0)
    }

    @Test("With --rounds it passes the rounds scenarios against a server running rounds (section 12)")
    func passesWithRounds() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try ServerProcess(
            checkpoint: dir.appendingPathComponent("m.fedk").path,
            extra: [
                "--rounds", "2", "--min-reports", "1", "--round-deadline", "2", "--selection-window", "0.2",
                "--evaluate-fraction", "0.000001",
            ])
        let (status, text) = try await Conformance.python([
            Conformance.script, "--vectors", "", "--server", "127.0.0.1:\(server.port)", "--rounds",
        ])
        #expect(status == 0, "\(text)")
        let (_, failed) = try #require(Conformance.counts(text), "\(text)")
        #expect(failed == 0, "\(text)")
        for check in [
            "each get a train ASSIGNMENT (kind 1)", "never gave gets unknown_task (44)",
            "reason round full (2)", "acknowledged when the round closes at its deadline",
            "reported twice counts once", "closed without it gets round_closed (45)",
            "sample-weighted mean of its reports", "nothing of the abandoned round was applied",
            "reason no task (1)", "CHECK_IN in a version-3 session gets unknown_message_type (3)",
            "gets an evaluate ASSIGNMENT (kind 2)", "a NaN loss gets non_finite_value (35)",
            "acknowledged at once with the current version again", "no second evaluate task of the same version",
        ] {
            let passedLine = text.split(separator: "\n").contains { $0.hasPrefix("PASS  ") && $0.contains(check) }
            #expect(passedLine, "\(check) was not checked: \(text)")
        }
        #expect(!text.contains("no rounds:"), "the no-rounds checks ran against a rounds server")
        #expect(server.process.isRunning)
        #expect(try await server.terminate() == 0)
    }

    @Test("With --secagg three Python clients take part in a secure round of fed server --secagg (section 12.11)")
    func passesWithSecureAggregation() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = try ServerProcess(
            checkpoint: dir.appendingPathComponent("m.fedk").path,
            extra: ["--rounds", "3", "--over-selection", "1", "--min-reports", "3", "--secagg", "t=2"])
        let (status, text) = try await Conformance.python([
            Conformance.script, "--vectors", "", "--server", "127.0.0.1:\(server.port)", "--secagg",
        ])
        #expect(status == 0, "\(text)")
        let (passed, failed) = try #require(Conformance.counts(text), "\(text)")
        #expect(failed == 0 && passed >= 16, "\(text)")
        for check in [
            "each get a secure-train ASSIGNMENT (kind 3)", "a REPORT of a secure-train task gets unexpected_message",
            "one element short gets shape_mismatch (34)", "SECAGG_KEYS of a task the server never gave",
            "weighted mean of the three updates", "round has closed gets round_closed (45)",
        ] {
            let passedLine = text.split(separator: "\n").contains { $0.hasPrefix("PASS  ") && $0.contains(check) }
            #expect(passedLine, "\(check) was not checked: \(text)")
        }
        #expect(server.process.isRunning)
        #expect(try await server.terminate() == 0)
    }

    @Test(
        "With --secagg-identities three Python clients with keys from fed secagg-identities run the consistency check against fed server --secagg consistency=on"
    )
    func passesWithConsistencyCheck() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ids = dir.appendingPathComponent("ids").path
        let made = try await FedProcess.run(["secagg-identities", "--out", ids, "cf-1", "cf-2", "cf-3"])
        #expect(made.status == 0 && made.output.contains("3 identities written"), "\(made.output)")
        // Without the identities file the option is refused, with its reason.
        let refused = try await FedProcess.run(["server", "--rounds", "3", "--secagg", "consistency=on"])
        #expect(refused.status != 0 && refused.output.contains("needs the clients' identities"), "\(refused.output)")
        let server = try ServerProcess(
            checkpoint: dir.appendingPathComponent("m.fedk").path,
            extra: [
                "--rounds", "3", "--over-selection", "1", "--min-reports", "3", "--secagg", "consistency=on",
                "--secagg-identities", ids + "/trusted.txt",
            ])
        let (status, text) = try await Conformance.python([
            Conformance.script, "--vectors", "", "--server", "127.0.0.1:\(server.port)", "--secagg-identities", ids,
        ])
        #expect(status == 0, "\(text)")
        let (passed, failed) = try #require(Conformance.counts(text), "\(text)")
        #expect(failed == 0 && passed >= 10, "\(text)")
        for check in [
            "unsigned SECAGG_KEYS get unexpected_message",
            "signed by a key not trusted for the client get unauthorized",
            "hashes to secagg.cohort", "a signature of another U3 gets unauthorized", "all three signatures verify",
            "within the quantization bound",
        ] {
            let passedLine = text.split(separator: "\n").contains { $0.hasPrefix("PASS  ") && $0.contains(check) }
            #expect(passedLine, "\(check) was not checked: \(text)")
        }
        #expect(try await server.terminate() == 0)
    }

    @Test("It fails loudly against a deliberately broken peer")
    func failsAgainstBrokenPeer() async throws {
        let broken = Process()
        broken.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        broken.arguments = [
            "python3",
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("broken_server.py").path,
            "30",
        ]
        let out = Pipe()
        broken.standardOutput = out
        try broken.run()
        // SIGKILL: a child may inherit a signal mask blocking SIGTERM from the thread that
        // started it (then terminate() left this one running until its 30 s accept timeout).
        defer {
            kill(broken.processIdentifier, SIGKILL)
            broken.waitUntilExit()
        }
        var portText = ""
        while !portText.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            portText += String(decoding: chunk, as: UTF8.self)
        }
        let port = try #require(Int(portText.trimmingCharacters(in: .whitespacesAndNewlines)))
        let (status, text) = try await Conformance.python([
            Conformance.script, "--vectors", "", "--server", "127.0.0.1:\(port)", "--timeout", "0.5",
        ])
        #expect(status == 1, "\(text)")
        let (_, failed) = try #require(Conformance.counts(text), "\(text)")
        #expect(failed >= 10, "\(text)")
        #expect(text.contains("FAIL  handshake"))
    }
}
