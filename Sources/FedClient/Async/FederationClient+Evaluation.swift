import FedCodec

extension FederationClient {
    /// `EVALUATION_REPORT` (version 4, feature `evaluation`): how model
    /// version `modelVersion` did on `outcome.examples` held-out examples,
    /// for the evaluate task `taskID`. Returns the server's current model
    /// version and count once the report is taken. Retried by the policy; a
    /// retry counts once on the server (a client's report of a version
    /// replaces its earlier one).
    ///
    /// Throws `invalidArgument` for metrics beyond `EvaluationReport.check`
    /// or a server that does not speak version 4; the server's
    /// `unknown_task`, `invalid_datasets`, `non_finite_value` or
    /// `malformed_payload` (a version it never published) otherwise.
    public func evaluationReport(
        _ outcome: EvaluationOutcome, modelVersion: UInt64, taskID: UInt64
    ) async throws(ClientError) -> Acknowledgement {
        if let bad = EvaluationReport.check(outcome.metrics) {
            throw ClientError(code: .invalidArgument, message: bad)
        }
        let report = EvaluationReport(
            taskID: taskID, modelVersion: modelVersion, examples: outcome.examples, loss: outcome.loss,
            metrics: outcome.metrics)
        return try await call { () async throws(ClientError) -> Acknowledgement in
            let c = try await self.connected()
            guard c.version >= 4 else {
                throw ClientError(
                    code: .invalidArgument,
                    message: "\(c.peer) speaks protocol version \(c.version); evaluation reports need version 4")
            }
            switch try await self.request(.other(AnyProtocolMessage(report)), on: c) {
            case .ack(let version, let datasets): return Acknowledgement(version: version, datasets: datasets)
            case .error(let e): throw ClientError(e)
            case let other: throw ClientError.violation("EVALUATION_REPORT answered with \(other.type)")
            }
        }
    }
}
