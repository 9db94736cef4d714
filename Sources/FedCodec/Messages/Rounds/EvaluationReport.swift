/// `EVALUATION_REPORT` (version 4, feature `evaluation`): how a model version
/// did on a client's own held-out data, the answer to an evaluate task.
///
/// Answered with `ACK` (the server's current model version and count: nothing
/// is applied) once the report is taken into the version's evaluation, or
/// with `ERROR`: `unknown_task` (44) for a task the server did not give to
/// this client or no longer holds, `invalid_datasets` (36) for 0 examples or
/// more than `max_datasets`, `non_finite_value` (35) for a loss or metric that
/// is not finite, `malformed_payload` (8) for a model version the server never
/// published or older than the task's. A client's report of a version replaces
/// its earlier one of that version: a retry counts once.
public struct EvaluationReport: ProtocolMessage {
    public static let descriptor = MessageDescriptor(
        type: .evaluationReport, name: "EVALUATION_REPORT", label: "evaluationReport", sinceVersion: 4,
        feature: Features.evaluation.rawValue, direction: .toServer)

    /// At most this many named metrics.
    public static let maxMetrics = 64
    /// A metric's name is 1-64 bytes.
    public static let maxNameBytes = 64

    public var taskID: UInt64
    /// The model version evaluated (the task's, or a later one the client fetched).
    public var modelVersion: UInt64
    /// Held-out examples evaluated (> 0): the report's weight.
    public var examples: UInt64
    /// The mean loss over the examples.
    public var loss: Double
    /// Named means over the examples (`accuracy` = correct answers / examples);
    /// names as `isValidName` says, never `loss`.
    public var metrics: [String: Double]

    public init(taskID: UInt64, modelVersion: UInt64, examples: UInt64, loss: Double, metrics: [String: Double] = [:]) {
        self.taskID = taskID
        self.modelVersion = modelVersion
        self.examples = examples
        self.loss = loss
        self.metrics = metrics
    }

    /// Whether `name` can name a metric: 1-64 bytes of `a-z`, `0-9` and `_`,
    /// starting with a letter.
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= maxNameBytes,
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first)
        else { return false }
        return bytes.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                || $0 == UInt8(ascii: "_")
        }
    }

    /// Why `metrics` cannot be sent, or nil.
    public static func check(_ metrics: [String: Double]) -> String? {
        if metrics.count > maxMetrics { return "\(metrics.count) metrics, more than \(maxMetrics)" }
        for name in metrics.keys where !isValidName(name) {
            return "metric name \"\(name)\" is not 1-\(maxNameBytes) bytes of a-z, 0-9 and _ starting with a letter"
        }
        if metrics["loss"] != nil { return "a metric named loss: the loss has its own field" }
        return nil
    }

    public func write(into w: inout ByteWriter, version: UInt8) {
        w.u64(taskID)
        w.u64(modelVersion)
        w.u64(examples)
        w.u64(loss.bitPattern)
        let sorted = metrics.sorted { $0.key < $1.key }
        w.u16(UInt16(sorted.count))
        for (name, value) in sorted {
            w.string(name)
            w.u64(value.bitPattern)
        }
    }

    public static func read(from r: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError)
        -> EvaluationReport
    {
        let taskID = try r.u64("task id")
        if taskID == 0 { throw CodecError(.malformedPayload, "task id 0") }
        let modelVersion = try r.u64("model version")
        let examples = try r.u64("examples")
        let loss = Double(bitPattern: try r.u64("loss"))
        let count = Int(try r.u16("metric count"))
        if count > maxMetrics { throw CodecError(.malformedPayload, "\(count) metrics, more than \(maxMetrics)") }
        var metrics: [String: Double] = [:]
        for _ in 0..<count {
            let name = try r.string("metric name", maxBytes: maxNameBytes)
            if !isValidName(name) {
                throw CodecError(.invalidString, "metric name \"\(name)\": a-z, 0-9 and _, starting with a letter")
            }
            let value = Double(bitPattern: try r.u64("metric value"))
            if name == "loss" {
                throw CodecError(.malformedPayload, "a metric named loss (the loss has its own field)")
            }
            if metrics.updateValue(value, forKey: name) != nil {
                throw CodecError(.malformedPayload, "metric \"\(name)\" given twice")
            }
        }
        return EvaluationReport(
            taskID: taskID, modelVersion: modelVersion, examples: examples, loss: loss, metrics: metrics)
    }
}
