import Dispatch
import FedCodec
import FedPrivacy
import FedSecureAggregation
import Logging
import Synchronization

/// Runs the rounds of protocol version 4: holds check-ins (long polls),
/// selects cohorts, collects reports, and closes or abandons each round.
///
/// Every event runs on one serial queue, so the round's state needs no lock;
/// answers (`ASSIGNMENT`s, a report's ACK or ERROR) are handed to the
/// callers' closures on that queue. Closing a round aggregates and writes the
/// checkpoint on that queue (through `GroupCommitter.transact`), never on an
/// event loop.
///
/// Time is `configuration.clock`: real time by default; a
/// `VirtualRoundClock` runs the same events (a check-in's wait, the
/// selection window, a deadline) when a simulation advances it.
///
/// With `.cohorts` admission (FedBuff under secure aggregation) several
/// rounds, each a cohort formed at check-in, are open at once; a closed
/// cohort's aggregate is one buffer for the server's ``CohortStrategy``.
///
/// Invariants: a round is applied whole in one checkpoint write or not at
/// all; at most `configuration.roundsInFlight` rounds are open; a task id is never reused (64 random bits, and task ids are held in
/// memory only, so after a restart every earlier task is `unknown_task`); an
/// update counts once however often its task is reported.
final class RoundCoordinator: TaskCoordinator, @unchecked Sendable {
    /// The scalar of the checkpointed state that holds the rounds closed.
    static let roundsClosedKey = "rounds.closed"

    let configuration: RoundConfiguration
    let store: ModelStore
    private let committer: GroupCommitter
    let logger: Logger
    let queue = DispatchQueue(label: "fed.rounds")
    let clock: any RoundClock
    private let metrics: RoundMetrics?

    // State: touched on `queue` only.
    var random: any RandomNumberGenerator
    private var waiting: [Waiter] = []
    private let nextTicket = Atomic<UInt64>(1)
    /// The open rounds by their attempt (a number no two rounds share).
    var openRounds: [Int: OpenRound] = [:]
    /// The open round of each task handed out.
    var taskAttempt: [UInt64: Int] = [:]
    /// Rounds closed (applied) in all, kept in the checkpoint.
    private var roundsClosed: UInt64
    /// The highest round number handed out (cohorts that overlap take new numbers).
    private var lastNumber: UInt64 = 0
    private var attempt = 0
    /// When the first client of the next selection checked in.
    private var windowOpened: DispatchTime?
    private var windowTimerArmed = false
    /// Tasks of recently closed rounds: the round, and the ACK when the task's
    /// report was applied (a repeated report gets it again), else nil
    /// (`round_closed`); anything else is `unknown_task`.
    var closedTasks: [UInt64: (round: UInt64, ack: Acknowledgement?)] = [:]
    private var closedTaskOrder: [UInt64] = []
    private var stopping = false
    private var stats = Statistics()
    /// The privacy spent, with differential privacy.
    private(set) var ledger: PrivacyLedger?
    private var budgetLogged = false
    /// `budgetSpent`'s answer for the ledger's count of rounds (it only changes when a round is published).
    private var spentAfter: UInt64?
    private var notSpentAfter: UInt64?

    typealias Statistics = RoundStatistics

    struct Waiter {
        var ticket: UInt64
        var clientID: String
        var checkIn: CheckIn
        var answer: @Sendable (Assignment) -> Void
    }

    struct Received {
        var clientID: String
        var weights: [Tensor]
        var samples: UInt64
        var answers: [@Sendable (Result<Acknowledgement, ErrorMessage>) -> Void]
    }

    struct OpenRound {
        var number: UInt64
        var attempt: Int
        var baseVersion: UInt64
        var baseWeights: [Tensor]
        var features: Features
        /// Task id -> client id, for the selected clients.
        var tasks: [UInt64: String]
        var reports: [UInt64: Received] = [:]
        var deadline: DispatchTime
        /// With differential privacy: what publishing this round composes.
        var privacyEvent: DPEvent?
        /// With secure aggregation: the round's stages.
        var secure: SecureRound?
    }

    /// Throws if the checkpoint's privacy ledger cannot be read or does not
    /// compose with `configuration.privacy`.
    init(
        configuration: RoundConfiguration, store: ModelStore, committer: GroupCommitter, logger: Logger,
        metrics: ServerMetrics? = nil, random: (any RandomNumberGenerator)? = nil
    ) throws {
        self.configuration = configuration
        self.store = store
        self.committer = committer
        self.logger = logger
        self.random =
            random ?? configuration.seed.map { SplitMix(seed: $0) } ?? SystemRandomNumberGenerator()
        self.clock = configuration.clock
        self.metrics = metrics.map(RoundMetrics.init)
        self.roundsClosed = UInt64(store.durable().scalars[Self.roundsClosedKey] ?? 0)
        if let privacy = configuration.privacy {
            let ledger = try PrivacyLedger(privacy, scalars: store.durable().scalars)
            self.ledger = ledger
            self.metrics?.privacy(ledger)
        }
    }

    /// The privacy spent so far, with differential privacy.
    var privacy: PrivacyLedger? { queue.sync { ledger } }

    // MARK: Events

    /// A client checks in; `answer` runs once, with a task or when to come
    /// back. Returns a ticket for `cancel` (the client's connection closed).
    func checkIn(_ checkIn: CheckIn, clientID: String, answer: @escaping @Sendable (Assignment) -> Void) -> UInt64 {
        let ticket = nextTicket.add(1, ordering: .relaxed).oldValue
        queue.async { self.arrive(Waiter(ticket: ticket, clientID: clientID, checkIn: checkIn, answer: answer)) }
        return ticket
    }

    /// Forgets a check-in whose client is gone (nothing is answered).
    func cancel(ticket: UInt64) {
        queue.async {
            self.waiting.removeAll { $0.ticket == ticket }
            self.metrics?.waiting.record(self.waiting.count)
            if self.waiting.isEmpty { self.windowOpened = nil }
        }
    }

    /// A report of a train task (full weights, already validated by shape);
    /// `answer` runs once the round closes (ACK) or when it is refused.
    func report(
        _ report: Report, clientID: String, answer: @escaping @Sendable (Result<Acknowledgement, ErrorMessage>) -> Void
    ) {
        queue.async { self.receive(report, clientID: clientID, answer: answer) }
    }

    /// A request of secure aggregation (`SECAGG_*`) of task `taskID`;
    /// `answer` runs once, when the request's stage closes or at once when it
    /// is refused.
    func secure(
        _ message: AnyProtocolMessage, taskID: UInt64, clientID: String,
        answer: @escaping @Sendable (Result<Message, ErrorMessage>) -> Void
    ) {
        queue.async { self.receiveSecure(message, taskID: taskID, clientID: clientID, answer: answer) }
    }

    /// Stops handing out tasks: waiting check-ins are told to come back, the
    /// round in progress is abandoned (its reports answered `shutting_down`).
    /// Returns when that is done.
    func shutdown() {
        queue.sync {
            stopping = true
            for w in waiting { w.answer(.comeBack(after: 1_000, .shuttingDown)) }
            waiting = []
            metrics?.waiting.record(0)
            for (key, r) in openRounds.sorted(by: { $0.key < $1.key }) {
                if r.secure == nil, r.reports.count >= configuration.requiredReports {
                    close(key)
                } else {
                    abandon(
                        key,
                        ErrorMessage(
                            code: .shuttingDown, message: "the server is shutting down; the round was abandoned"))
                }
            }
        }
    }

    var statistics: Statistics { queue.sync { stats } }

    /// Returns once every event handed to the coordinator before this call
    /// (a check-in, a report, a timer that fell due) has run.
    func settle() { queue.sync {} }

    // MARK: On the queue

    func now() -> DispatchTime { clock.now() }

    private var selectionSize: Int { configuration.selectionSize }

    private func arrive(_ w: Waiter) {
        if stopping { return w.answer(.comeBack(after: 1_000, .shuttingDown)) }
        if isFinished { return w.answer(.comeBack(after: 60_000, .finished)) }
        if budgetSpent { return w.answer(.comeBack(after: 60_000, .budgetSpent)) }
        let features = w.checkIn.features.intersection(configuration.speaks)
        guard w.checkIn.abilities.contains(.train) else {
            // No other task kind is defined yet: nothing to hand this client.
            return w.answer(.comeBack(after: 60_000, .noTask, features: features))
        }
        // A client checked in twice (a second connection) waits once: the newer check-in wins.
        if let old = waiting.firstIndex(where: { $0.clientID == w.clientID }) {
            let previous = waiting.remove(at: old)
            previous.answer(
                .comeBack(
                    after: UInt32.random(in: 1_000...2_000, using: &random), .noTask,
                    features: previous.checkIn.features.intersection(configuration.speaks)))
        }
        waiting.append(w)
        metrics?.waiting.record(waiting.count)
        let wait = min(
            Duration.milliseconds(Int64(w.checkIn.waitMilliseconds)), configuration.maxWait)
        let ticket = w.ticket
        clock.run(at: now() + wait.dispatch, on: queue) { self.waitEnded(ticket) }
        if windowOpened == nil && hasRoom { windowOpened = now() }
        considerOpening()
    }

    private func waitEnded(_ ticket: UInt64) {
        guard let i = waiting.firstIndex(where: { $0.ticket == ticket }) else { return }
        let w = waiting.remove(at: i)
        metrics?.waiting.record(waiting.count)
        if waiting.isEmpty { windowOpened = nil }
        let features = w.checkIn.features.intersection(configuration.speaks)
        if !hasRoom, let due = openRounds.values.map(\.deadline).min() {
            // Come back when a round in progress is due, spread over a second.
            let left = max(0, Int64(due.uptimeNanoseconds) - Int64(now().uptimeNanoseconds)) / 1_000_000
            w.answer(
                .comeBack(
                    after: UInt32(clamping: left + Int64.random(in: 0...1_000, using: &random)), .roundFull,
                    features: features))
        } else {
            w.answer(.comeBack(after: UInt32.random(in: 0...500, using: &random), .noTask, features: features))
        }
    }

    private var isFinished: Bool { configuration.totalRounds != 0 && roundsClosed >= configuration.totalRounds }

    /// Whether another round may open: fewer than `roundsInFlight` are, and
    /// with total rounds, those open would not already complete them.
    private var hasRoom: Bool {
        openRounds.count < configuration.roundsInFlight
            && (configuration.totalRounds == 0 || roundsClosed + UInt64(openRounds.count) < configuration.totalRounds)
    }

    /// With a target epsilon: whether a round drawn from the whole population
    /// would exceed it (then no round opens again; the budget only grows).
    private var budgetSpent: Bool {
        guard let ledger, let privacy = configuration.privacy else { return false }
        if let known = spentAfter, known == ledger.rounds { return true }
        if notSpentAfter == ledger.rounds { return false }
        let spent = !ledger.allows(privacy.event(cohort: configuration.cohortSize, waiting: privacy.population))
        if spent { spentAfter = ledger.rounds } else { notSpentAfter = ledger.rounds }
        return spent
    }

    /// Clients that open a round at once: the selection size, or with
    /// differential privacy the population (a sample is drawn from them).
    private var openingCount: Int { configuration.privacy?.population ?? selectionSize }

    /// Tells every waiting client that no more rounds will run, once.
    private func spendBudget(_ epsilonAfter: Double) {
        if !budgetLogged, let ledger, let target = configuration.privacy?.targetEpsilon {
            budgetLogged = true
            logger.warning(
                "privacy budget spent: epsilon \(ledger.epsilon) after \(ledger.rounds) private rounds; the next would reach \(epsilonAfter) > target \(target); no more rounds will run"
            )
        }
        for w in waiting { w.answer(.comeBack(after: 60_000, .budgetSpent)) }
        waiting = []
        metrics?.waiting.record(0)
    }

    /// Opens a round when enough clients wait: the selection size at once,
    /// or the minimum once the selection window has passed.
    private func considerOpening() {
        guard hasRoom, !stopping, !isFinished, !waiting.isEmpty else { return }
        let distinct = waiting.count
        let windowPassed = windowOpened.map { now() >= $0 + configuration.selectionWindow.dispatch } ?? false
        if distinct >= openingCount || (windowPassed && distinct >= configuration.requiredReports) {
            return open()
        }
        // Until the window passes, a timer looks again then; after it, every arrival does.
        if !windowTimerArmed, !windowPassed, let opened = windowOpened {
            windowTimerArmed = true
            clock.run(at: opened + configuration.selectionWindow.dispatch, on: queue) {
                self.windowTimerArmed = false
                self.considerOpening()
            }
        }
    }

    private func open() {
        let model = store.snapshot()
        let candidates = waiting.map {
            Candidate(clientID: $0.clientID, properties: $0.checkIn.properties, abilities: $0.checkIn.abilities)
        }
        var chosen: [Int]
        var privacyEvent: DPEvent?
        if let privacy = configuration.privacy, let ledger {
            // Under secure aggregation only clients that speak it (and, with the consistency
            // check, hold a trusted identity) can be drawn.
            let eligible =
                configuration.secureAggregation.map { secure in
                    waiting.indices.filter {
                        waiting[$0].checkIn.features.contains(.secureAggregation) && secure.admits(waiting[$0].clientID)
                    }
                } ?? Array(waiting.indices)
            // A fixed-size sample from fewer clients than the cohort would be all of them (rate 1): wait.
            if privacy.sampling == .fixed && eligible.count < configuration.cohortSize { return }
            let event = privacy.event(cohort: configuration.cohortSize, waiting: eligible.count)
            guard ledger.allows(event) else {
                // Fixed sampling from fewer than the population may cost more than is left
                // while a draw from all of it would not: wait for more clients.
                if !budgetSpent { return }
                return spendBudget(ledger.epsilon(adding: event))
            }
            privacyEvent = event
            // Whatever the draw gives, even no one, is a round: redrawing would bias the sample.
            // (With secure aggregation sampling is fixed: exactly the cohort, at least 3, is drawn.)
            chosen = privacySample(privacy, count: eligible.count).map { eligible[$0] }
        } else if let secure = configuration.secureAggregation {
            // Only clients that speak secure aggregation can be in a secure round.
            let able = waiting.indices.filter {
                waiting[$0].checkIn.features.contains(.secureAggregation) && secure.admits(waiting[$0].clientID)
            }
            chosen = configuration.selector.select(
                from: able.map { candidates[$0] }, count: min(selectionSize, able.count), using: &random
            ).filter { able.indices.contains($0) }.map { able[$0] }
            chosen = Array(Set(chosen)).sorted()
            guard chosen.count >= max(configuration.requiredReports, secure.threshold(cohort: chosen.count) + 1, 3)
            else { return }
        } else {
            chosen = configuration.selector.select(
                from: candidates, count: min(selectionSize, waiting.count), using: &random)
            chosen = Array(Set(chosen.filter { waiting.indices.contains($0) })).sorted()
            // A round of fewer than the minimum could never close: wait for more (the
            // selector may leave clients out, by their properties).
            guard chosen.count >= configuration.requiredReports else { return }
        }
        attempt += 1
        // A synchronous round abandoned runs again under its number; overlapping cohorts each take a new one.
        let number = configuration.roundsInFlight == 1 ? roundsClosed + 1 : max(lastNumber, roundsClosed) + 1
        lastNumber = max(lastNumber, number)
        let deadline = now() + configuration.deadline.dispatch
        var r = OpenRound(
            number: number, attempt: attempt, baseVersion: model.version, baseWeights: model.tensors,
            features: configuration.speaks, tasks: [:], deadline: deadline, privacyEvent: privacyEvent)
        let deadlineMilliseconds = UInt32(clamping: configuration.deadline.wholeMilliseconds)
        var taskParameters = configuration.parameters
        if let privacy = configuration.privacy, let ledger {
            taskParameters["dp.clip"] = String(ledger.clip)
            taskParameters["dp.noise"] = String(privacy.noiseMultiplier)
            taskParameters["dp.epsilon"] = String(ledger.epsilon)
        }
        var selected: [Waiter] = []
        for i in chosen.reversed() { selected.append(waiting.remove(at: i)) }
        selected.reverse()
        var taskIDs: [UInt64] = []
        for w in selected {
            var id: UInt64
            repeat {
                id = UInt64.random(in: 1...UInt64.max, using: &random)
            } while r.tasks[id] != nil || taskAttempt[id] != nil || closedTasks[id] != nil
            r.tasks[id] = w.clientID
            taskIDs.append(id)
        }
        var kind = Assignment.Kind.train
        if let secure = configuration.secureAggregation {
            let cohort = selected.count
            do {
                r.secure = try makeSecureRound(
                    secure, number: number, taskIDs: taskIDs, clients: selected.map(\.clientID),
                    dimension: model.tensors, privacyClip: ledger?.clip)
            } catch {
                // Unreachable once the configuration was checked: put the clients back.
                logger.error("secure round \(number) could not be set up: \(error)")
                waiting.append(contentsOf: selected)
                return
            }
            kind = .secureTrain
            taskParameters["secagg.n"] = String(cohort)
            taskParameters["secagg.k"] = String(secure.neighbours(cohort: cohort))
            taskParameters["secagg.t"] = String(secure.threshold(cohort: cohort))
            taskParameters["secagg.bits"] = String(secure.bits)
            taskParameters["secagg.clip"] = String(secure.clip)
            taskParameters["secagg.w"] = String(
                secure.maximumWeight ?? Int(clamping: store.configuration.maxUpdateSamples))
            taskParameters["secagg.stage-ms"] = String(secure.stageTimeout.wholeMilliseconds)
            if let round = r.secure, let noise = round.distributedNoise {
                // Distributed noise (SPEC 12.13): each client clips to the privacy's norm, weighs 1,
                // and adds its share of the noise; a sum of fewer than m inputs is not unmasked.
                taskParameters["secagg.clip"] = String(noise.clip)
                taskParameters["secagg.w"] = "1"
                taskParameters["secagg.range"] = String(noise.range)
                taskParameters["secagg.min-inputs"] = String(round.minimumInputs)
                taskParameters["dp.client-noise"] = String(noise.clientNoise)
                if let scale = noise.countScale { taskParameters["dp.count-scale"] = String(scale) }
            }
            if let identities = r.secure?.identities {
                taskParameters["secagg.consistency"] = "on"
                taskParameters["secagg.cohort"] = identities.cohort.digestHex
            }
        }
        for (w, id) in zip(selected, taskIDs) {
            w.answer(
                Assignment(
                    kind: kind, features: w.checkIn.features.intersection(configuration.speaks), taskID: id,
                    round: number, modelVersion: model.version, deadlineMilliseconds: deadlineMilliseconds,
                    parameters: taskParameters))
        }
        stats.tasksGiven += selected.count
        metrics?.tasks.increment(by: selected.count)
        metrics?.waiting.record(waiting.count)
        openRounds[attempt] = r
        for id in taskIDs { taskAttempt[id] = attempt }
        windowOpened = nil
        logger.info(
            "round \(number) opened: \(selected.count) clients selected of \(selected.count + waiting.count) checked in, from version \(model.version), deadline \(configuration.deadline)\(openRounds.count > 1 ? ", \(openRounds.count) rounds open" : "")"
        )
        let attemptNow = attempt
        clock.run(at: deadline, on: queue) { self.deadlinePassed(attempt: attemptNow) }
        if let secure = configuration.secureAggregation {
            clock.run(at: now() + secure.stageTimeout.dispatch, on: queue) {
                self.secureStageTimedOut(.keys, attempt: attemptNow)
            }
        }
        // An empty private round publishes its noise at once.
        if privacyEvent != nil && selected.isEmpty { return close(attemptNow) }
        // Overlapping cohorts: the clients still waiting may form the next one.
        if hasRoom && !waiting.isEmpty {
            windowOpened = now()
            considerOpening()
        }
    }

    private func receive(
        _ report: Report, clientID: String, answer: @escaping @Sendable (Result<Acknowledgement, ErrorMessage>) -> Void
    ) {
        guard let key = taskAttempt[report.taskID], var r = openRounds[key], let owner = r.tasks[report.taskID] else {
            if let closed = closedTasks[report.taskID] {
                if let ack = closed.ack { return answer(.success(ack)) }
                return answer(
                    .failure(
                        ErrorMessage(
                            code: .roundClosed,
                            message: "round \(closed.round) closed without this report; check in for a new task")))
            }
            return answer(
                .failure(
                    ErrorMessage(
                        code: .unknownTask,
                        message: "task \(report.taskID) was not given by this server, or not since it started")))
        }
        guard owner == clientID else {
            return answer(
                .failure(ErrorMessage(code: .unknownTask, message: "task \(report.taskID) was given to another client"))
            )
        }
        guard r.secure == nil else {
            return answer(
                .failure(
                    ErrorMessage(
                        code: .unexpectedMessage,
                        message:
                            "task \(report.taskID) is a secure-train task: its update travels masked, in SECAGG_INPUT"))
            )
        }
        if r.reports[report.taskID] != nil {
            // A retry: the update counts once; this answer comes with the first.
            r.reports[report.taskID]!.answers.append(answer)
            openRounds[key] = r
            return
        }
        var weights = report.tensors
        if report.isDelta {
            guard weights.map(\.shape) == r.baseWeights.map(\.shape) else {
                return answer(
                    .failure(ErrorMessage(code: .shapeMismatch, message: "the delta's shapes differ from the model's")))
            }
            for t in weights.indices {
                for i in weights[t].values.indices { weights[t].values[i] += r.baseWeights[t].values[i] }
            }
        }
        do throws(RejectedUpdate) {
            try store.validate(weights, datasets: report.samples, against: store.snapshot())
        } catch {
            return answer(.failure(ErrorMessage(code: error.code, message: error.message)))
        }
        r.reports[report.taskID] = Received(
            clientID: clientID, weights: weights, samples: report.samples, answers: [answer])
        openRounds[key] = r
        if (r.reports.count >= configuration.cohortSize && configuration.privacy == nil)
            || (r.reports.count == r.tasks.count && r.reports.count >= configuration.requiredReports)
        {
            close(key)
        }
    }

    private func deadlinePassed(attempt: Int) {
        guard let r = openRounds[attempt] else { return }
        if var secure = r.secure {
            if secure.stage < .input {
                return abandon(
                    attempt,
                    ErrorMessage(
                        code: .roundClosed,
                        message: "round \(r.number) was abandoned: its deadline passed before the keys were shared"))
            }
            let outcome = secure.closeInputs()
            openRounds[attempt]?.secure = secure
            if case .wait = outcome, secure.stage == .unmask || secure.stage == .consistency {
                let next = secure.stage
                clock.run(at: now() + configuration.secureAggregation!.stageTimeout.dispatch, on: queue) {
                    self.secureStageTimedOut(next, attempt: attempt)
                }
            }
            return handle(outcome, attempt: attempt)
        }
        // A private round is never abandoned for want of reports: which clients reported must
        // not decide whether it is published (its noise covers any number).
        if r.reports.count >= configuration.requiredReports || r.privacyEvent != nil {
            close(attempt)
        } else {
            abandon(
                attempt,
                ErrorMessage(
                    code: .roundClosed,
                    message:
                        "round \(r.number) was abandoned at its deadline with \(r.reports.count) of \(configuration.requiredReports) reports needed; check in for a new task"
                ))
        }
    }

    /// Applies the sample-weighted mean of the reports of round `key`, in one checkpoint write.
    private func close(_ key: Int) {
        guard let r = openRounds[key], r.secure == nil else { return }
        let reports = Array(r.reports.values)
        // Weighted as pushes are: each report counts for at most maxUpdateSamples.
        let cap = store.configuration.maxUpdateSamples
        let counts = reports.map { min($0.samples, cap) }
        let total = counts.reduce(UInt64(0)) { $0.addingReportingOverflow($1).overflow ? .max : $0 + $1 }
        var mean = r.baseWeights
        var nextClip = 0.0
        var clippedCount = 0
        if let privacy = configuration.privacy, let ledger {
            let cohort = configuration.cohortSize
            let result = PrivateMean(
                clip: ledger.clip, valueNoise: privacy.valueNoiseMultiplier(cohort: cohort) * ledger.clip,
                countNoise: privacy.countStandardDeviation(cohort: cohort), expectedCohort: Double(cohort)
            ).aggregate(base: r.baseWeights, reports: reports.map(\.weights), using: &random)
            mean = result.weights
            clippedCount = result.clipped
            nextClip = privacy.clip(after: ledger.clip, unclippedFraction: result.unclippedFraction)
        } else {
            for t in mean.indices {
                var sum = [Double](repeating: 0, count: mean[t].values.count)
                for k in reports.indices {
                    let n = Double(counts[k])
                    let w = reports[k].weights[t].values
                    for i in sum.indices { sum[i] += n * Double(w[i]) }
                }
                let scale = 1 / Double(total)
                for i in sum.indices { mean[t].values[i] = Float(sum[i] * scale) }
            }
        }
        let privacyNote = publish(
            r, mean: mean, total: total, clippedCount: clippedCount, nextClip: nextClip, reportCount: reports.count)
        guard let (ack, note) = privacyNote else { return }
        let ids = reports.map { LogSafe.text($0.clientID) }.sorted()
        logger.info(
            "round \(r.number) closed: \(reports.count) reports of \(r.tasks.count) tasks, \(total) samples, version \(ack.version)\(note); reported by \(ids.prefix(32).joined(separator: ", "))\(ids.count > 32 ? ", ..." : "")"
        )
        for rep in reports { for a in rep.answers { a(.success(ack)) } }
        finish(r, applied: ack)
    }

    /// Writes `mean` as the round's result (with `total` samples) in one
    /// checkpoint write and counts the round closed. Returns the ACK and the
    /// log's privacy note, or nil when the round was abandoned instead (also
    /// when publishing it would exceed the privacy target).
    func publish(
        _ r: OpenRound, mean: [Tensor], total: UInt64, clippedCount: Int, nextClip: Double, reportCount: Int
    ) -> (Acknowledgement, String)? {
        if let event = r.privacyEvent, let ledger, !ledger.allows(event) {
            // Unreachable unless the configuration changed under a round: refuse rather than overspend.
            abandon(
                r.attempt,
                ErrorMessage(
                    code: .privacyBudgetSpent,
                    message:
                        "round \(r.number) would bring epsilon to \(ledger.epsilon(adding: event)), above the target; it is not published"
                ))
            return nil
        }
        let ledger = self.ledger
        let privacyEvent = r.privacyEvent
        let clipForNext = nextClip
        let number = r.number
        let base = r.baseWeights
        let baseVersion = r.baseVersion
        let store = self.store
        let closed = roundsClosed + 1
        // Overlapping cohorts: each aggregate is one buffer of the server's strategy.
        var cohortStrategy: (any CohortStrategy)?
        if case .cohorts = configuration.admission {
            cohortStrategy = store.configuration.strategy as? any CohortStrategy
        }
        if cohortStrategy != nil {
            let behind = store.snapshot().version - min(store.snapshot().version, baseVersion)
            if behind > UInt64(store.configuration.maxStaleness) {
                abandon(
                    r.attempt,
                    ErrorMessage(
                        code: .roundClosed,
                        message:
                            "round \(number) was abandoned: its base version \(baseVersion) is \(behind) versions behind the model, more than \(store.configuration.maxStaleness)"
                    ))
                return nil
            }
        }
        let applied: Acknowledgement
        do {
            applied = try committer.transact { state -> (publish: Bool, result: Acknowledgement) in
                // The writer's lock is held: the current version is the one the step applies to.
                let current = store.snapshot().version
                if let cohortStrategy {
                    let staleness = current - min(current, baseVersion)
                    var delta = mean
                    for t in delta.indices {
                        for i in delta[t].values.indices { delta[t].values[i] -= base[t].values[i] }
                    }
                    cohortStrategy.applyCohort(meanDelta: delta, staleness: staleness, state: &state)
                } else if state.weights == base {
                    state.weights = mean
                } else {
                    // Pushes outside the round moved the model: apply the round's step to it.
                    for t in state.weights.indices {
                        for i in state.weights[t].values.indices {
                            state.weights[t].values[i] += mean[t].values[i] - base[t].values[i]
                        }
                    }
                }
                if let ledger, let privacyEvent {
                    // The exact count of the cohort's samples would be published: it is not added.
                    ledger.scalars(publishing: privacyEvent, nextClip: clipForNext, into: &state.scalars)
                } else {
                    let (sum, overflow) = state.samples.addingReportingOverflow(total)
                    state.samples = overflow ? .max : sum
                }
                state.scalars[Self.roundsClosedKey] = Double(closed)
                return (true, Acknowledgement(version: current + 1, datasets: state.samples))
            }
        } catch {
            logger.error("round \(number) could not be applied: \(error)")
            let code: ErrorCode = (error as? RejectedUpdate)?.code ?? .internalError
            abandon(
                r.attempt,
                ErrorMessage(
                    code: code,
                    message: code == .internalError
                        ? "the server could not store the round; check in again"
                        : privacyEvent != nil
                            ? "the round's noised mean was refused (beyond the values a server publishes)"
                            : "the round's mean was refused: \(error)"))
            return nil
        }
        roundsClosed = closed
        var privacyNote = ""
        if let event = privacyEvent, var ledger = self.ledger {
            ledger.published(event, nextClip: clipForNext)
            self.ledger = ledger
            metrics?.privacy(ledger)
            // Under secure aggregation the clients clip: the server cannot count the clipped.
            let clipped =
                r.secure == nil ? "\(clippedCount) of \(reportCount) updates clipped" : "clipped by the clients"
            privacyNote =
                "; epsilon \(ledger.epsilon) at delta \(ledger.configuration.delta) after \(ledger.rounds) private rounds, \(clipped), next clip \(ledger.clip)"
        }
        stats.closed += 1
        stats.reportsApplied += reportCount
        metrics?.closed.increment()
        metrics?.reportsApplied.increment(by: reportCount)
        metrics?.duration.recordNanoseconds(
            Int64(now().uptimeNanoseconds) - Int64(r.deadline.uptimeNanoseconds)
                + Int64(configuration.deadline.wholeMilliseconds) * 1_000_000)
        return (Acknowledgement(version: applied.version, datasets: applied.datasets), privacyNote)
    }

    /// Ends round `key` without applying anything; every report gets `error`.
    func abandon(_ key: Int, _ error: ErrorMessage) {
        guard let r = openRounds[key] else { return }
        stats.abandoned += 1
        metrics?.abandoned.increment()
        logger.warning("round \(r.number) abandoned: \(error.message)")
        for rep in r.reports.values { for a in rep.answers { a(.failure(error)) } }
        if var secure = r.secure {
            for a in secure.takeWaiting() { a(.failure(error)) }
        }
        finish(r, applied: nil)
    }

    func finish(_ r: OpenRound, applied ack: Acknowledgement?) {
        openRounds[r.attempt] = nil
        for id in r.tasks.keys { taskAttempt[id] = nil }
        let included = r.secure?.contributingTasks ?? Set(r.reports.keys)
        for id in r.tasks.keys {
            closedTasks[id] = (r.number, included.contains(id) ? ack : nil)
            closedTaskOrder.append(id)
        }
        // Remember the tasks of about the last 16 rounds.
        let keep = max(64, selectionSize * 16)
        if closedTaskOrder.count > keep {
            for id in closedTaskOrder.prefix(closedTaskOrder.count - keep) { closedTasks[id] = nil }
            closedTaskOrder.removeFirst(closedTaskOrder.count - keep)
        }
        if isFinished {
            for w in waiting { w.answer(.comeBack(after: 60_000, .finished)) }
            waiting = []
            metrics?.waiting.record(0)
            logger.info("all \(configuration.totalRounds) rounds have run")
            return
        }
        if budgetSpent, let privacy = configuration.privacy, let ledger {
            return spendBudget(
                ledger.epsilon(adding: privacy.event(cohort: configuration.cohortSize, waiting: privacy.population)))
        }
        if !waiting.isEmpty { windowOpened = now() }
        considerOpening()
    }

    /// The indices of a differentially private round's cohort among `count` waiting clients.
    private func privacySample(_ privacy: DifferentialPrivacy, count: Int) -> [Int] {
        switch privacy.sampling {
        case .poisson:
            let q = min(1, Double(configuration.cohortSize) / Double(privacy.population))
            return (0..<count).filter { _ in Double.random(in: 0..<1, using: &random) < q }
        case .fixed:
            var all = Array(0..<count)
            all.shuffle(using: &random)
            return all.prefix(configuration.cohortSize).sorted()
        }
    }
}

/// What a server's rounds did so far (for logs, metrics, simulations and tests).
public struct RoundStatistics: Sendable, Equatable {
    /// Rounds closed: their mean applied.
    public var closed = 0
    /// Rounds abandoned at their deadline with too few reports (or at shutdown).
    public var abandoned = 0
    /// Reports applied in closed rounds.
    public var reportsApplied = 0
    /// Train tasks handed out (every selected client of every round, abandoned ones included).
    public var tasksGiven = 0

    public init() {}
}

extension Duration {
    var dispatch: DispatchTimeInterval {
        let (s, a) = components
        return .nanoseconds(Int(clamping: s * 1_000_000_000 + a / 1_000_000_000))
    }

    var wholeMilliseconds: Int64 {
        let (s, a) = components
        return s * 1_000 + a / 1_000_000_000_000_000
    }
}
