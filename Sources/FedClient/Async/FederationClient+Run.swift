import FedCodec

extension FederationClient {
    /// How `run` takes part in a federation.
    public struct RunOptions: Sendable {
        /// What the client tells the server of itself (for selection).
        public var properties: [String: String]
        /// The longest one check-in waits for a task. Default 30 s.
        public var wait: Duration
        /// Stop after this many reported tasks; nil (default): until the
        /// server says the federation has finished (its rounds have run, or its
        /// privacy budget is spent), or the task is cancelled.
        public var maxTasks: Int?
        /// The features the client speaks.
        public var features: Features
        /// Local differential privacy: each report's update clipped and
        /// noised on the client before it is sent; nil (default): none.
        public var localPrivacy: LocalPrivacy?

        public init(
            properties: [String: String] = [:], wait: Duration = .seconds(30), maxTasks: Int? = nil,
            features: Features = [], localPrivacy: LocalPrivacy? = nil
        ) {
            self.localPrivacy = localPrivacy
            self.properties = properties
            self.wait = wait
            self.maxTasks = maxTasks
            self.features = features
        }
    }

    /// What `run` did, as it happens (for logs and progress).
    public enum RunEvent: Sendable {
        /// A train task arrived.
        case assigned(Assignment)
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
        /// The last model version the client held.
        public var modelVersion: UInt64 = 0
        /// The server said every round has run, or its privacy budget is spent.
        public var finished = false
    }

    /// Takes part in the federation for as long as it runs: checks in (one
    /// waiting request, never a polling loop), trains each task it is given
    /// with `trainer` from the task's model version, reports, and checks in
    /// again; when told to come back, waits the delay the server asked for.
    ///
    /// Returns when the server says every round has run, after
    /// `options.maxTasks` reported tasks, or throws `ClientError`
    /// `.cancelled` when the calling task is cancelled. Failures of the
    /// connection are retried by the configuration's `RetryPolicy`; a report
    /// refused (`round_closed`, `unknown_task`, or after retries
    /// `shutting_down`, `overloaded`) is not an error: the client checks in
    /// again. Errors thrown by `trainer` end the run; so does
    /// `invalidArgument` for properties beyond `KeyValues`' limits.
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
            let assignment = try await checkIn(
                CheckIn(
                    features: options.features, abilities: .train, waitMilliseconds: waitMilliseconds,
                    properties: options.properties))
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
            let answer: Result<Acknowledgement, ClientError>
            do throws(ClientError) {
                answer = .success(
                    try await report(
                        weights, samples: outcome.samples, taskID: assignment.taskID,
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
