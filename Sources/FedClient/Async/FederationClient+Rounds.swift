import FedCodec

extension FederationClient {
    /// `CHECK_IN` (version 4): offers to work and waits, on this one request,
    /// until the server has a task or `checkIn.waitMilliseconds` (capped by
    /// the server) has passed.
    ///
    /// Throws `invalidArgument` when the server does not speak version 4, and
    /// the server's `unexpected_message` when it runs no rounds.
    public func checkIn(_ checkIn: CheckIn) async throws(ClientError) -> Assignment {
        try await call { () async throws(ClientError) -> Assignment in
            let c = try await self.connected()
            try Self.requireRounds(c)
            let wait = Duration.milliseconds(Int64(checkIn.waitMilliseconds))
            let answer = try await self.request(
                .other(AnyProtocolMessage(checkIn)), on: c, timeout: wait + self.configuration.requestTimeout)
            switch answer {
            case .error(let e): throw ClientError(e)
            default:
                guard let assignment = answer.as(Assignment.self) else {
                    throw ClientError.violation("CHECK_IN answered with \(answer.type)")
                }
                return assignment
            }
        }
    }

    /// `REPORT` (version 4): the result of the train task `taskID`, trained
    /// on `samples` samples (a count, not a running total). Returns when the
    /// task's round has closed and its result is durable, with the version it
    /// produced; waits at most `deadline` plus the request timeout. Retried
    /// by the policy; a retry counts once on the server.
    ///
    /// Throws the server's `round_closed` when the round closed or was
    /// abandoned without this report, `unknown_task` for a task the server
    /// does not hold.
    public func report(
        _ tensors: [Tensor], samples: UInt64, taskID: UInt64, deadline: Duration = .seconds(60)
    ) async throws(ClientError) -> Acknowledgement {
        try await call { () async throws(ClientError) -> Acknowledgement in
            let c = try await self.connected()
            try Self.requireRounds(c)
            let report = Report(
                taskID: taskID, samples: samples, tensors: tensors,
                compression: self.session.wireCompression)
            let answer = try await self.request(
                .other(AnyProtocolMessage(report)), on: c, timeout: deadline + self.configuration.requestTimeout)
            switch answer {
            case .ack(let version, let datasets): return Acknowledgement(version: version, datasets: datasets)
            case .error(let e): throw ClientError(e)
            default: throw ClientError.violation("REPORT answered with \(answer.type)")
            }
        }
    }

    private static func requireRounds(_ c: Connection) throws(ClientError) {
        guard c.version >= 4 else {
            throw ClientError(
                code: .invalidArgument,
                message: "\(c.peer) speaks protocol version \(c.version); rounds need version 4")
        }
    }
}
