import FedCodec

/// Federated evaluation in process: what the clients reported of each model
/// version, and the call a connection handler makes for an
/// `EVALUATION_REPORT` (a simulation, a test).
extension FederatedServer {
    /// The evaluation of every model version kept (the last
    /// `EvaluationConfiguration.keptVersions` reported on), ascending by
    /// version; the document `GET /v1/evaluation` serves.
    public var evaluationHistory: [EvaluationSummary] { service.evaluation.history }

    /// The evaluation of `version`, if clients reported on it and it is kept.
    public func evaluation(of version: UInt64) -> EvaluationSummary? { service.evaluation.summary(of: version) }

    /// `EVALUATION_REPORT` of `clientID`: the ACK (the current model's version
    /// and count) once it is taken, or the ERROR a frame would get.
    public func evaluationReport(_ report: EvaluationReport, clientID: String) -> Result<Acknowledgement, ErrorMessage>
    {
        service.evaluationReport(
            report,
            session: FederationService.Session(
                clientID: clientID, version: 4, compressions: .uncompressed, transport: .binary))
    }
}
