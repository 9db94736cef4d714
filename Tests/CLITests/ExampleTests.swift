import FedTestSupport
import Foundation
import Testing

/// Examples/LogisticRegression, as a user would use it: built as a package
/// that depends on this one, run against `fed server`.
@Suite("Examples", .serialized)
struct ExampleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test(
        "The logistic-regression example builds as a dependant and reaches 0.88 on held-out digits",
        .timeLimit(.minutes(20)))
    func logisticRegression() throws {
        let example = Self.root.appendingPathComponent("Examples/LogisticRegression")
        let build = try runProgram("/usr/bin/env", ["swift", "build", "--package-path", example.path])
        let buildText = String(decoding: build.output, as: UTF8.self)
        try #require(build.status == 0, "swift build of the example failed:\n\(buildText.suffix(3000))")
        #expect(!buildText.contains("unsafeFlags"))
        let logreg = example.appendingPathComponent(".build/debug/logreg").path

        let dir = try temporaryDirectory("example")
        defer { try? FileManager.default.removeItem(at: dir) }
        let initial = dir.appendingPathComponent("lr-init.fedk").path
        let made = try runProgram(logreg, ["init", initial])
        try #require(made.status == 0, "\(String(decoding: made.output, as: UTF8.self))")
        let server = try ServerProcess(
            checkpoint: dir.appendingPathComponent("lr.fedk").path,
            extra: ["--init", initial, "--strategy", "fedavg/k=4"])
        let run = try runProgram(
            logreg,
            [
                "run", "--server", "127.0.0.1:\(server.port)", "--data",
                Self.root.appendingPathComponent("Data/mnist").path,
                "--clients", "4", "--rounds", "8",
            ])
        let text = String(decoding: run.output, as: UTF8.self)
        print(text)
        #expect(run.status == 0, "\(text)")
        let line = try #require(text.split(separator: "\n").last { $0.hasPrefix("final held-out accuracy") })
        let accuracy = try #require(Double(line.split(separator: " ").last ?? ""))
        #expect(accuracy >= 0.88, "\(text)")
        #expect(server.terminate() == 0)
    }
}
