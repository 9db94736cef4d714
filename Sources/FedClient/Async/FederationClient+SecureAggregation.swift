import FedCodec

extension FederationClient {
    /// A secure-train task (feature `secure aggregation`), from its
    /// assignment to the round's ACK: advertise keys, share them, call
    /// `train` (which returns the weights trained, the weights they started
    /// from, and the samples), send the masked update, then reveal the shares
    /// the survivors' list calls for (with `secagg.consistency = on`: sign the
    /// survivor set U3 and reveal only once at least t signatures of the same
    /// U3 verify, SPEC 12.11). Returns the ACK of the round that
    /// applied the cohort's sum, with this client's update in it.
    ///
    /// Each stage's request waits until the server closes the stage for the
    /// whole cohort (at most `secagg.stage-ms`, or the task's deadline for the
    /// masked input, plus the request timeout). Throws the server's
    /// `round_closed` when the round was abandoned or this client was left out
    /// of a stage, a `violation` when a relayed message breaks the protocol
    /// (the participant refuses it), and the errors of `train`.
    public nonisolated func secureTrain(
        _ assignment: Assignment, participant: any SecureAggregationParticipant,
        train: () async throws -> (trained: [Tensor], base: [Tensor], samples: UInt64)
    ) async throws -> Acknowledgement {
        var participant = participant
        let stage = Duration.milliseconds(Int64(assignment.parameters["secagg.stage-ms"] ?? "") ?? 10_000)
        let deadline = ContinuousClock.now + .milliseconds(Int64(assignment.deadlineMilliseconds))
        // With the consistency check, keys travel signed and U3 is signed before anything is revealed.
        let consistency = assignment.parameters["secagg.consistency"] == "on"
        let shares: SecAggShares
        if consistency {
            let roster: SecAggSignedRoster = try await exchange(try step { try participant.signedKeys() }, wait: stage)
            shares = try step { try participant.shares(forSigned: roster) }
        } else {
            let roster: SecAggRoster = try await exchange(try step { try participant.keys() }, wait: stage)
            shares = try step { try participant.shares(for: roster) }
        }
        let inbox: SecAggInbox = try await exchange(shares, wait: stage)
        try step { try participant.open(inbox) }
        let (trained, base, samples) = try await train()
        let input = try step { try participant.input(trained: trained, base: base, samples: samples) }
        let inputWait = max(.zero, deadline - ContinuousClock.now)
        let unmask: SecAggUnmask
        if consistency {
            let contributors: SecAggContributors = try await exchange(input, wait: inputWait)
            let signatures: SecAggSignatures = try await exchange(
                try step { try participant.sign(contributors) }, wait: stage)
            unmask = try step { try participant.unmask(signatures) }
        } else {
            let survivors: SecAggSurvivors = try await exchange(input, wait: inputWait)
            unmask = try step { try participant.unmask(survivors) }
        }
        let answer = try await send(unmask, wait: stage)
        guard case .ack(let version, let datasets) = answer else {
            throw ClientError.violation("SECAGG_UNMASK answered with \(answer.type)")
        }
        return Acknowledgement(version: version, datasets: datasets)
    }

    /// A participant's step; its error becomes a `violation` (the server relayed something it refuses).
    private nonisolated func step<T>(_ body: () throws -> T) throws(ClientError) -> T {
        do {
            return try body()
        } catch {
            throw ClientError.violation("secure aggregation: \(error)")
        }
    }

    /// Sends `message` and expects an `Answer` back.
    private nonisolated func exchange<Answer: ProtocolMessage>(_ message: some ProtocolMessage, wait: Duration)
        async throws(ClientError) -> Answer
    {
        let answer = try await send(message, wait: wait)
        guard let typed = answer.as(Answer.self) else {
            throw ClientError.violation("\(type(of: message).descriptor.name) answered with \(answer.type)")
        }
        return typed
    }

    /// Sends `message` and returns the answer; an `ERROR` is thrown.
    private func send(_ message: some ProtocolMessage, wait: Duration) async throws(ClientError) -> Message {
        try await call { () async throws(ClientError) -> Message in
            let c = try await self.connected()
            guard c.version >= 4 else {
                throw ClientError(
                    code: .invalidArgument,
                    message: "\(c.peer) speaks protocol version \(c.version); secure aggregation needs version 4")
            }
            let answer = try await self.request(
                .other(AnyProtocolMessage(message)), on: c, timeout: wait + self.configuration.requestTimeout)
            if case .error(let e) = answer { throw ClientError(e) }
            return answer
        }
    }
}
