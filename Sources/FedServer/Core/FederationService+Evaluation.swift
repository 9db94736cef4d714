import FedCodec
import Foundation

/// Federated evaluation's requests, whatever the transport: a binary
/// `EVALUATION_REPORT` (of an evaluate task), an HTTP report (no task), and
/// the history. Each is answered at once: nothing is applied to the model.
extension FederationService {
    /// A binary `EVALUATION_REPORT`: the ACK (the current model's version and
    /// count) once it is taken, or the ERROR (`EvaluationDesk.take`; and
    /// `shutting_down` while the server stops).
    func evaluationReport(_ report: EvaluationReport, session: Session) -> Result<Acknowledgement, ErrorMessage> {
        if lifecycle.isDraining {
            return .failure(
                ErrorMessage(code: .shuttingDown, message: "the server is shutting down; report again later"))
        }
        if let refusal = evaluation.take(report, clientID: session.clientID) { return .failure(refusal) }
        let model = store.snapshot()
        return .success(Acknowledgement(version: model.version, datasets: model.datasets))
    }

    /// An evaluation report over HTTP (`POST /v1/evaluation`): its JSON body
    /// parsed, then taken as a binary report without a task.
    func httpEvaluationReport(_ body: [UInt8]) -> Result<Acknowledgement, ErrorMessage> {
        let parsed: HTTPEvaluationReport
        switch HTTPEvaluationReport.parse(body) {
        case .success(let report): parsed = report
        case .failure(let refusal): return .failure(refusal)
        }
        if lifecycle.isDraining {
            return .failure(
                ErrorMessage(code: .shuttingDown, message: "the server is shutting down; report again later"))
        }
        if let refusal = evaluation.take(
            clientID: parsed.clientID, version: parsed.modelVersion, examples: parsed.examples, loss: parsed.loss,
            metrics: parsed.metrics)
        {
            return .failure(refusal)
        }
        let model = store.snapshot()
        return .success(Acknowledgement(version: model.version, datasets: model.datasets))
    }

    /// `GET /v1/evaluation`: `{"versions": [summary, ...]}`, ascending by
    /// model version, keys sorted.
    func evaluationHistoryJSON() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(EvaluationHistoryDocument(versions: evaluation.history))) ?? Data("{}".utf8)
        return [UInt8](data)
    }
}

/// The JSON document of `GET /v1/evaluation`.
struct EvaluationHistoryDocument: Codable {
    var versions: [EvaluationSummary]
}

/// The JSON body of `POST /v1/evaluation`: `{"client_id": "...",
/// "model_version": N, "examples": N, "loss": x, "metrics": {"accuracy": x}}`
/// (`metrics` optional).
struct HTTPEvaluationReport: Equatable {
    var clientID: String
    var modelVersion: UInt64
    var examples: UInt64
    var loss: Double
    var metrics: [String: Double]

    /// The report in `body`, or `malformed_payload` (`invalid_string` for a
    /// client id that is empty or over 256 bytes).
    static func parse(_ body: [UInt8]) -> Result<HTTPEvaluationReport, ErrorMessage> {
        func bad(_ text: String) -> Result<HTTPEvaluationReport, ErrorMessage> {
            .failure(ErrorMessage(code: .malformedPayload, message: text))
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            return bad("the body must be a JSON object")
        }
        guard let clientID = object["client_id"] as? String else { return bad("client_id must be a string") }
        if clientID.isEmpty || clientID.utf8.count > 256 {
            return .failure(ErrorMessage(code: .invalidString, message: "client_id must be 1-256 bytes"))
        }
        /// A whole number from 0 to 2^53 (exact in binary64, as JSON parsers read numbers).
        func integer(_ key: String) -> UInt64? {
            guard let d = (object[key] as? NSNumber)?.doubleValue, d >= 0, d <= 0x1p53, d == d.rounded() else {
                return nil
            }
            return UInt64(d)
        }
        guard let version = integer("model_version") else {
            return bad("model_version must be a whole number from 0 to 2^53")
        }
        guard let examples = integer("examples") else { return bad("examples must be a whole number from 0 to 2^53") }
        guard let loss = (object["loss"] as? NSNumber)?.doubleValue else {
            return bad("loss must be a number")
        }
        var metrics: [String: Double] = [:]
        if let given = object["metrics"] {
            guard let table = given as? [String: Any] else { return bad("metrics must be an object of numbers") }
            for (name, value) in table {
                guard let number = value as? NSNumber else {
                    return bad("metric \(name) must be a number")
                }
                metrics[name] = number.doubleValue
            }
        }
        if let problem = EvaluationReport.check(metrics) { return bad(problem) }
        return .success(
            HTTPEvaluationReport(
                clientID: clientID, modelVersion: version, examples: examples, loss: loss, metrics: metrics))
    }
}
