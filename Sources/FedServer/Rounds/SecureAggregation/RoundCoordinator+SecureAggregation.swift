import Dispatch
import FedCodec
import FedSecureAggregation

/// Secure rounds (`Protocol/SPEC.md` section 12.11): the coordinator's side
/// of ``SecureRound``. Everything here runs on the coordinator's queue.
extension RoundCoordinator {
    /// The state of a secure round for the tasks `taskIDs` (in selection
    /// order): ids 1...n on a random Harary graph of degree k. With
    /// differential privacy (`privacyClip`, the ledger's clip) its clients add
    /// the noise (``DistributedNoise``). With the consistency check, `clients`
    /// (in selection order) are the cohort's names.
    func makeSecureRound(
        _ secure: SecureAggregation, number: UInt64, taskIDs: [UInt64], clients: [String], dimension: [Tensor],
        privacyClip: Double?
    ) throws -> SecureRound {
        let n = taskIDs.count
        let k = secure.neighbours(cohort: n)
        let t = secure.threshold(cohort: n)
        var noise: DistributedNoise?
        var minimumInputs = max(t, configuration.requiredReports)
        if let privacy = configuration.privacy, let clip = privacyClip {
            let cohort = configuration.cohortSize
            var countScale: Double?
            if case .adaptive = privacy.clipping {
                countScale =
                    privacy.valueNoiseMultiplier(cohort: cohort) * clip / privacy.countStandardDeviation(cohort: cohort)
            }
            noise = DistributedNoise(
                clip: clip, clientNoise: privacy.clientNoise(clip: clip, expectedCohort: cohort, drawn: n),
                expectedCohort: cohort, countScale: countScale)
            minimumInputs = max(t, privacy.minimumInputs(drawn: n))
        }
        let graph = NeighbourGraph.harary(participants: n, degree: k, using: &random)
        var neighbours: [UInt32: [UInt32]] = [:]
        for (index, adjacent) in graph.neighbours.enumerated() {
            neighbours[UInt32(index + 1)] = adjacent.map { UInt32($0 + 1) }
        }
        // With adaptive clipping the clients clip themselves and append the count: every
        // coordinate is then within the noise's bound.
        let clipping: FixedPointEncoding.Clipping =
            noise.map { $0.countScale != nil ? .perCoordinate($0.bound) : .l2Norm($0.clip) } ?? .l2Norm(secure.clip)
        let encoding = try FixedPointEncoding(
            bits: secure.bits, clipping: clipping, maximumSummands: n,
            maximumWeight: noise != nil
                ? 1 : secure.maximumWeight ?? Int(clamping: store.configuration.maxUpdateSamples),
            range: noise?.range)
        var ids: [UInt64: UInt32] = [:]
        for (index, task) in taskIDs.enumerated() { ids[task] = UInt32(index + 1) }
        var identities: SecureRoundIdentities?
        if secure.consistency, let trusted = secure.identities {
            var members: [UInt32: String] = [:]
            for (index, name) in clients.enumerated() { members[UInt32(index + 1)] = name }
            identities = SecureRoundIdentities(
                cohort: try CohortBinding(round: number, session: CohortBinding.randomSession(), members: members),
                trusted: trusted)
        }
        var round = SecureRound(
            round: number, threshold: t, minimumInputs: minimumInputs, encoding: encoding,
            elementBytes: secure.elementBytes,
            dimension: dimension.reduce(0) { $0 + $1.values.count } + (noise?.countScale != nil ? 1 : 0), ids: ids,
            graph: neighbours, decoded: configuration.secureSumDecoded, identities: identities)
        round.distributedNoise = noise
        return round
    }

    func receiveSecure(
        _ message: AnyProtocolMessage, taskID: UInt64, clientID: String,
        answer: @escaping @Sendable (Result<Message, ErrorMessage>) -> Void
    ) {
        guard let key = taskAttempt[taskID], let r = openRounds[key], var secure = r.secure, let owner = r.tasks[taskID]
        else {
            if let closed = closedTasks[taskID] {
                // An unmask retried after its round closed gets the round's answer.
                if let ack = closed.ack, message.type == .secAggUnmask {
                    return answer(.success(.ack(version: ack.version, datasets: ack.datasets)))
                }
                return answer(
                    .failure(
                        ErrorMessage(
                            code: .roundClosed,
                            message: "round \(closed.round) has closed; check in for a new task")))
            }
            return answer(
                .failure(
                    ErrorMessage(
                        code: .unknownTask,
                        message: "task \(taskID) is not a secure-train task of this server's open rounds")))
        }
        guard owner == clientID else {
            return answer(
                .failure(ErrorMessage(code: .unknownTask, message: "task \(taskID) was given to another client")))
        }
        let before = secure.stage
        let outcome = secure.receive(message, taskID: taskID, answer: answer)
        openRounds[key]?.secure = secure
        armStageTimer(from: before, to: secure.stage, attempt: key)
        logStage(r.number, from: before, secure, outcome)
        handle(outcome, attempt: key)
    }

    /// A stage's timeout: `stage` closes if it is still open in round `attempt`.
    func secureStageTimedOut(_ stage: SecureRound.Stage, attempt: Int) {
        guard let r = openRounds[attempt], var secure = r.secure, secure.stage == stage else { return }
        let outcome: SecureRound.Outcome
        switch stage {
        case .keys: outcome = secure.closeKeys()
        case .shares: outcome = secure.closeShares()
        case .input: outcome = .wait  // the round's deadline closes it
        case .consistency: outcome = secure.closeConsistency()
        case .unmask: outcome = secure.unmaskTimedOut()
        }
        openRounds[attempt]?.secure = secure
        armStageTimer(from: stage, to: secure.stage, attempt: attempt)
        logStage(r.number, from: stage, secure, outcome)
        handle(outcome, attempt: attempt)
    }

    /// Starts the timeout of the stage just opened (keys -> shares, input -> unmask).
    private func armStageTimer(from: SecureRound.Stage, to: SecureRound.Stage, attempt: Int) {
        guard from != to, to == .shares || to == .consistency || to == .unmask,
            let secure = configuration.secureAggregation
        else { return }
        clock.run(at: now() + secure.stageTimeout.dispatch, on: queue) {
            self.secureStageTimedOut(to, attempt: attempt)
        }
    }

    /// Logs a stage that closed without ending the round.
    private func logStage(
        _ number: UInt64, from: SecureRound.Stage, _ secure: SecureRound, _ outcome: SecureRound.Outcome
    ) {
        guard from != secure.stage, case .wait = outcome else { return }
        switch secure.stage {
        case .shares:
            logger.info("round \(number): keys advertised by \(secure.advertised) of \(secure.ids.count) clients")
        case .input:
            logger.info(
                "round \(number): keys shared by \(secure.shared) clients; masked inputs are due by the deadline")
        case .consistency:
            logger.info("round \(number): \(secure.contributors.count) masked inputs summed; the survivors sign U3")
        case .unmask:
            logger.info(
                "round \(number): \(secure.contributors.count) masked inputs summed\(secure.identities == nil ? "" : ", U3 signed by \(secure.consistencySignatures.count)"); unmasking"
            )
        case .keys: break
        }
    }

    /// Carries out what a stage of round `attempt` gave.
    func handle(_ outcome: SecureRound.Outcome, attempt: Int) {
        switch outcome {
        case .wait:
            return
        case .abandon(let reason):
            guard let r = openRounds[attempt] else { return }
            abandon(attempt, ErrorMessage(code: .roundClosed, message: "round \(r.number) was abandoned: \(reason)"))
        case .unmasked(let mean, let weight, let contributors):
            closeSecure(attempt, mean: mean, weight: weight, contributors: contributors)
        }
    }

    /// Applies the unmasked mean step to the round's base, in one checkpoint
    /// write. With distributed noise the step is the noised sum over the
    /// expected cohort (every input weighs 1), and the round is accounted.
    private func closeSecure(_ attempt: Int, mean step: [Double], weight: Int, contributors: Int) {
        guard let r = openRounds[attempt], var secure = r.secure else { return }
        if secure.distributedNoise != nil && weight != contributors {
            // Each input weighs 1 and carries a share of the noise; another weight would leave a share out.
            return abandon(
                attempt,
                ErrorMessage(
                    code: .roundClosed,
                    message:
                        "round \(r.number) was abandoned: its \(contributors) inputs carry a weight of \(weight), not 1 each"
                ))
        }
        // Weights are 1 with distributed noise: the mean times the count is the noised sum.
        let factor = secure.distributedNoise.map { Double(weight) / Double($0.expectedCohort) } ?? 1
        var mean = r.baseWeights
        var offset = 0
        for t in mean.indices {
            for i in mean[t].values.indices {
                mean[t].values[i] = Float(Double(mean[t].values[i]) + step[offset + i] * factor)
            }
            offset += mean[t].values.count
        }
        var nextClip = secure.distributedNoise?.clip ?? 0
        if let noise = secure.distributedNoise, let scale = noise.countScale, let privacy = configuration.privacy {
            // The last coordinate: the noised, centred count of unclipped updates, times the scale.
            let centred = step[offset] * Double(weight) / scale
            nextClip = privacy.clip(
                after: noise.clip, unclippedFraction: centred / Double(noise.expectedCohort) + 0.5)
        }
        let total = UInt64(weight)
        guard
            let (ack, note) = publish(
                r, mean: mean, total: total, clippedCount: 0, nextClip: nextClip, reportCount: contributors)
        else { return }
        let noise = secure.distributedNoise.map {
            ", noise from the clients (\(contributors) x \($0.clientNoise) per coordinate)"
        }
        var stale = ""
        if case .cohorts = configuration.admission {
            stale = ", a buffer \(ack.version - 1 - min(ack.version - 1, r.baseVersion)) versions stale"
        }
        logger.info(
            "round \(r.number) closed by secure aggregation: the sum of \(contributors) masked inputs of \(r.tasks.count) tasks, \(noise == nil ? "\(total) samples" : "each weighing 1")\(noise ?? ""), version \(ack.version)\(stale)\(note)"
        )
        for a in secure.takeWaiting() { a(.success(.ack(version: ack.version, datasets: ack.datasets))) }
        openRounds[attempt]?.secure = secure
        finish(r, applied: ack)
    }
}
