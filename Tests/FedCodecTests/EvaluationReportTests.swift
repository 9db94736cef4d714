import Testing

@testable import FedCodec

@Suite("EVALUATION_REPORT and evaluate tasks (version 4, feature evaluation)")
struct EvaluationReportTests {
    private func roundTrip(_ message: Message) throws -> Message {
        var decoder = FrameDecoder()
        decoder.append(MessageCodec.encode(message, requestID: 9, version: 4))
        return try MessageCodec.decode(try #require(try decoder.next()))
    }

    @Test(
        "A report round-trips bit for bit, metrics in any order",
        arguments: [
            EvaluationReport(taskID: 1, modelVersion: 0, examples: 1, loss: 0),
            EvaluationReport(
                taskID: .max, modelVersion: 42, examples: 12_345, loss: 0.1 + 0.2,
                metrics: ["accuracy": 2.0 / 3.0, "f1_macro": -0.0, "z9": 1e300]),
        ])
    func roundTrips(_ report: EvaluationReport) throws {
        let decoded = try roundTrip(.other(AnyProtocolMessage(report)))
        let back = try #require(decoded.as(EvaluationReport.self))
        #expect(back == report)
        #expect(back.loss.bitPattern == report.loss.bitPattern)
        #expect(MessageType.evaluationReport.descriptor?.feature == Features.evaluation.rawValue)
        #expect(MessageType.evaluationReport.descriptor?.direction == .toServer)
    }

    @Test("An evaluate assignment round-trips; with task id 0 it is malformed")
    func evaluateAssignment() throws {
        let task = Assignment(
            kind: .evaluate, features: .evaluation, taskID: 7, modelVersion: 3, deadlineMilliseconds: 1_000)
        #expect(try roundTrip(.other(AnyProtocolMessage(task))).as(Assignment.self) == task)
        var zero = task
        zero.taskID = 0
        #expect(throws: CodecError.self) { try roundTrip(.other(AnyProtocolMessage(zero))) }
    }

    @Test(
        "Metric names: a-z, 0-9 and _, starting with a letter, 1-64 bytes, never loss",
        arguments: [
            ("accuracy", true), ("f1_macro", true), ("a", true), (String(repeating: "a", count: 64), true),
            ("", false), ("Accuracy", false), ("1st", false), ("_x", false), ("top-5", false), ("é", false),
            (String(repeating: "a", count: 65), false),
        ])
    func names(_ name: String, _ valid: Bool) {
        #expect(EvaluationReport.isValidName(name) == valid)
        #expect((EvaluationReport.check([name: 1]) == nil) == valid)
    }

    @Test("check refuses a metric named loss and more than 64 metrics")
    func checks() {
        #expect(EvaluationReport.check(["loss": 1]) != nil)
        let many = Dictionary(uniqueKeysWithValues: (0..<65).map { ("m\($0)", 1.0) })
        #expect(EvaluationReport.check(many) != nil)
        #expect(EvaluationReport.check(many.filter { $0.key != "m0" }) == nil)
    }
}
