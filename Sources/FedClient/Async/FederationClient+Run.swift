import FedCodec

extension FederationClient {
    /// How `run` takes part in a federation.
    public struct RunOptions: Sendable {
        /// What the client tells the server of itself (for selection).
        public var properties: [String: String]
        /// The longest one check-in waits for a task. Default 30 s.
        public var wait: Duration
        /// Stop after this many reported train tasks; nil (default): until the
        /// server says the federation has finished (its rounds have run, or its
        /// privacy budget is spent), or the task is cancelled.
        public var maxTasks: Int?
        /// The features the client speaks.
        public var features: Features
        /// Local differential privacy: each report's update clipped and
        /// noised on the client before it is sent; nil (default): none.
        public var localPrivacy: LocalPrivacy?
        /// Offer to evaluate (feature `evaluation`): the trainer's `evaluate`
        /// answers the evaluate tasks the server hands out. Default false.
        public var evaluate: Bool
        /// Take part in secure aggregation (feature `secure aggregation`): the
        /// participant of each secure-train task (`FedSecureClient`'s
        /// `SecAggParticipant.factory`); nil (default): the client does not
        /// offer it and is never selected for a secure round.
        public var secureAggregation: SecureParticipantFactory?

        public init(
            properties: [String: String] = [:], wait: Duration = .seconds(30), maxTasks: Int? = nil,
            features: Features = [], evaluate: Bool = false, localPrivacy: LocalPrivacy? = nil,
            secureAggregation: SecureParticipantFactory? = nil
        ) {
            self.secureAggregation = secureAggregation
            self.localPrivacy = localPrivacy
            self.evaluate = evaluate
            self.properties = properties
            self.wait = wait
            self.maxTasks = maxTasks
            self.features = features
        }
    }

    /// What `run` did, as it happens (for logs and progress).
    public enum RunEvent: Sendable {
        /// A train or evaluate task arrived.
        case assigned(Assignment)
        /// An evaluation was reported: the version evaluated, what the trainer found.
        case evaluated(modelVersion: UInt64, EvaluationOutcome, Acknowledgement)
        /// No task: checking in again after the delay the server asked for.
        case comeBack(Assignment)
        /// A task was skipped: the server's model had moved past its version.
        case skipped(round: UInt64, reason: String)
        /// A report went into its round's result.
        case reported(round: UInt64, samples: UInt64, Acknowledgement)
        /// A report was refused (late, or its round abandoned).
        case refused(round: UInt64, ClientError)
    }

    /// What `run` did in all.
    public struct RunSummary: Sendable, Equatable {
        public var tasks = 0
        public var reportsApplied = 0
        public var reportsRefused = 0
        /// Evaluate tasks reported (not counted in `tasks`).
        public var evaluations = 0
        /// The last model version the client held.
        public var modelVersion: UInt64 = 0
        /// The server said every round has run, or its privacy budget is spent.
        public var finished = false
    }

    /// Takes part in the federation for as long as it runs: checks in (one
    /// waiting request, never a polling loop), trains each task it is given
    /// with `trainer` from the task's model version, reports, and checks in
    /// again; when told to come back, waits the delay the server asked for.
    /// With `options.evaluate`, an evaluate task is answered by
    /// `trainer.evaluate` on the task's model version (or the later one the
    /// server serves) and an `EVALUATION_REPORT`.
    ///
    /// Returns when the server says every round has run, after
    /// `options.maxTasks` reported tasks, or throws `ClientError`
    /// `.cancelled` when the calling task is cancelled. Failures of the
    /// connection are retried by the configuration's `RetryPolicy`; a report
    /// refused (`round_closed`, `unknown_task`, or after retries
    /// `shutting_down`, `overloaded`) is not an error: the client checks in
    /// again. Errors thrown by `trainer` end the run; so does
    /// `invalidArgument` for properties beyond `KeyValues`' limits, and for
    /// an evaluate task when `trainer.evaluate` returns nil.
    public nonisolated func run<Trainer: LocalTrainer>(
        trainer: inout Trainer, options: RunOptions = RunOptions(),
        onEvent: @Sendable (RunEvent) -> Void = { _ in }
    ) async throws -> RunSummary {
        var summary = RunSummary()
        var held: (version: UInt64, weights: [Tensor])?
        if let bad = KeyValues.check(options.properties) {
            throw ClientError(code: .invalidArgument, message: "properties: \(bad)")
        }
        let (seconds, attoseconds) = options.wait.components
        let waitMilliseconds = UInt32(
            clamping: max(0, seconds).multipliedReportingOverflow(by: 1_000).overflow
                ? Int64.max : max(0, seconds) * 1_000 + attoseconds / 1_000_000_000_000_000)
        while true {
            if Task.isCancelled { throw ClientError(code: .cancelled, message: "the run was cancelled") }
            var features = options.features
            if options.evaluate { features.insert(.evaluation) }
            if options.secureAggregation != nil { features.insert(.secureAggregation) }
            let assignment = try await checkIn(
                CheckIn(
                    features: features,
                    abilities: options.evaluate ? [.train, .evaluate] : .train, waitMilliseconds: waitMilliseconds,
                    properties: options.properties))
            if assignment.kind == .evaluate && options.evaluate {
                onEvent(.assigned(assignment))
                held = try await evaluate(
                    assignment, held: held, trainer: &trainer, summary: &summary, onEvent: onEvent)
                continue
            }
            if assignment.kind == .secureTrain, let factory = options.secureAggregation {
                onEvent(.assigned(assignment))
                held = try await secureTask(
                    assignment, factory: factory, held: held, trainer: &trainer, summary: &summary, onEvent: onEvent)
                if let most = options.maxTasks, summary.tasks >= most { return summary }
                continue
            }
            guard assignment.kind == .train else {
                onEvent(.comeBack(assignment))
                if assignment.reason == .finished || assignment.reason == .budgetSpent {
                    summary.finished = true
                    return summary
                }
                do {
                    try await Task.sleep(for: .milliseconds(Int64(assignment.retryAfterMilliseconds)))
                } catch {
                    throw ClientError(code: .cancelled, message: "the run was cancelled")
                }
                continue
            }
            onEvent(.assigned(assignment))
            let deadline = ContinuousClock.now + .milliseconds(Int64(assignment.deadlineMilliseconds))
            if held?.version != assignment.modelVersion {
                switch try await fetch(held: held?.version ?? 0) {
                case .model(let version, _, let tensors): held = (version, tensors)
                case .unchanged: break
                }
            }
            guard let model = held, model.version == assignment.modelVersion else {
                onEvent(
                    .skipped(
                        round: assignment.round,
                        reason:
                            "the server serves version \(held?.version ?? 0), the task is of \(assignment.modelVersion)"
                    ))
                continue
            }
            summary.modelVersion = model.version
            summary.tasks += 1
            let outcome = try await trainer.train(
                TrainingTask(
                    round: assignment.round, taskID: assignment.taskID, modelVersion: model.version,
                    weights: model.weights, parameters: assignment.parameters, deadline: deadline,
                    features: assignment.features))
            var weights = outcome.weights
            if let privacy = options.localPrivacy {
                guard weights.map(\.shape) == model.weights.map(\.shape) else {
                    throw ClientError(
                        code: .invalidArgument, message: "the trainer returned weights of other shapes than the model's"
                    )
                }
                var random = SystemRandomNumberGenerator()
                weights = privacy.privatize(weights, base: model.weights, using: &random)
            }
            // Under local privacy the true sample count is not sent (it would be published unnoised).
            let samples = options.localPrivacy == nil ? outcome.samples : 1
            let answer: Result<Acknowledgement, ClientError>
            do throws(ClientError) {
                answer = .success(
                    try await report(
                        weights, samples: samples, taskID: assignment.taskID,
                        deadline: max(.zero, deadline - ContinuousClock.now)))
            } catch {
                answer = .failure(error)
            }
            switch answer {
            case .success(let ack):
                summary.reportsApplied += 1
                summary.modelVersion = ack.version
                onEvent(.reported(round: assignment.round, samples: outcome.samples, ack))
            case .failure(let error):
                let refusals: [ErrorCode] = [.roundClosed, .unknownTask, .shuttingDown, .overloaded]
                guard let code = error.code.serverCode, refusals.contains(code) else { throw error }
                summary.reportsRefused += 1
                onEvent(.refused(round: assignment.round, error))
                if code == .shuttingDown || code == .overloaded {
                    // The server is stopping or full: check in again after a pause.
                    do {
                        try await Task.sleep(for: .milliseconds(Int64.random(in: 1_000...2_000)))
                    } catch {
                        throw ClientError(code: .cancelled, message: "the run was cancelled")
                    }
                }
            }
            if let most = options.maxTasks, summary.tasks >= most { return summary }
        }
    }
}

extension FederationClient {
    /// One secure-train task: `secureTrain` with the model of the task's
    /// version, or a later one held or served (the update is masked as a
    /// difference from the weights trained from), and `trainer`. A refusal (the round abandoned, the client left
    /// out of a stage, a relayed message the participant refuses) is an event,
    /// not an error. Returns the model now held.
    nonisolated func secureTask<Trainer: LocalTrainer>(
        _ assignment: Assignment, factory: SecureParticipantFactory, held: (version: UInt64, weights: [Tensor])?,
        trainer: inout Trainer, summary: inout RunSummary, onEvent: @Sendable (RunEvent) -> Void
    ) async throws -> (version: UInt64, weights: [Tensor])? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(assignment.deadlineMilliseconds))
        var held = held
        summary.tasks += 1
        let participant: any SecureAggregationParticipant
        do {
            participant = try factory(assignment)
        } catch {
            throw ClientError(code: .invalidArgument, message: "secure aggregation: \(error)")
        }
        var trainedSamples: UInt64 = 0
        do {
            let ack = try await secureTrain(assignment, participant: participant) {
                // The masked update is a difference from the weights trained from: a version the
                // server published after the task's (a cohort formed earlier) does as well.
                if (held?.version ?? 0) < assignment.modelVersion || held == nil {
                    switch try await fetch(held: held?.version ?? 0) {
                    case .model(let version, _, let tensors): held = (version, tensors)
                    case .unchanged: break
                    }
                }
                guard let model = held, model.version >= assignment.modelVersion else {
                    throw ClientError(
                        code: .server(.roundClosed),
                        message:
                            "the server serves version \(held?.version ?? 0), older than the task's \(assignment.modelVersion)"
                    )
                }
                let outcome = try await trainer.train(
                    TrainingTask(
                        round: assignment.round, taskID: assignment.taskID, modelVersion: model.version,
                        weights: model.weights, parameters: assignment.parameters, deadline: deadline,
                        features: assignment.features))
                trainedSamples = outcome.samples
                return (outcome.weights, model.weights, outcome.samples)
            }
            summary.reportsApplied += 1
            summary.modelVersion = ack.version
            onEvent(.reported(round: assignment.round, samples: trainedSamples, ack))
        } catch let error as ClientError {
            let refusals: [ErrorCode] = [.roundClosed, .unknownTask, .shuttingDown, .overloaded, .unexpectedMessage]
            guard error.code == .protocolViolation || error.code.serverCode.map(refusals.contains) == true else {
                throw error
            }
            summary.reportsRefused += 1
            onEvent(.refused(round: assignment.round, error))
        }
        return held
    }

    /// One evaluate task: the model of the task's version (or the later one
    /// the server serves), `trainer.evaluate`, then `EVALUATION_REPORT`.
    /// Returns the model now held. A refused report is an event, not an error.
    nonisolated func evaluate<Trainer: LocalTrainer>(
        _ assignment: Assignment, held: (version: UInt64, weights: [Tensor])?, trainer: inout Trainer,
        summary: inout RunSummary, onEvent: @Sendable (RunEvent) -> Void
    ) async throws -> (version: UInt64, weights: [Tensor])? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(assignment.deadlineMilliseconds))
        var held = held
        if held?.version != assignment.modelVersion {
            switch try await fetch(held: held?.version ?? 0) {
            case .model(let version, _, let tensors): held = (version, tensors)
            case .unchanged: break
            }
        }
        guard let model = held, model.version >= assignment.modelVersion else {
            onEvent(
                .skipped(
                    round: assignment.round,
                    reason: "the server serves version \(held?.version ?? 0), the task is of \(assignment.modelVersion)"
                ))
            return held
        }
        guard
            let outcome = try await trainer.evaluate(
                EvaluationTask(
                    taskID: assignment.taskID, modelVersion: model.version, weights: model.weights, deadline: deadline))
        else {
            throw ClientError(
                code: .invalidArgument, message: "an evaluate task came, and the trainer does not evaluate")
        }
        do throws(ClientError) {
            let ack = try await evaluationReport(outcome, modelVersion: model.version, taskID: assignment.taskID)
            summary.evaluations += 1
            onEvent(.evaluated(modelVersion: model.version, outcome, ack))
        } catch {
            let refusals: [ErrorCode] = [.unknownTask, .shuttingDown, .overloaded, .malformedPayload]
            guard let code = error.code.serverCode, refusals.contains(code) else { throw error }
            summary.reportsRefused += 1
            onEvent(.refused(round: assignment.round, error))
        }
        return held
    }
}
