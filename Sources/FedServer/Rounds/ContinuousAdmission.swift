import Dispatch
import FedCodec
import Logging
import Synchronization

/// Continuous admission for asynchronous strategies (protocol version 4):
/// a checking-in client gets a train task at once while fewer than
/// `configuration.cohortSize` tasks are outstanding, else waits (a long
/// poll, first come first served) until a task is reported or expires.
/// Each report is one update for the server's strategy (FedBuff, FedAsync),
/// committed as a push is, with its task's model version as its base and its
/// samples read as a count.
///
/// A task's deadline (`configuration.deadline`) frees its place; a report
/// after it is still taken, as an update as stale as its base is (the
/// strategy weighs or refuses it: `stale_base` beyond `maxStaleness`).
///
/// Every event runs on one serial queue; commits run on the committer and
/// answer through that queue. Invariants: at most `cohortSize` tasks are
/// outstanding; a task id is never reused (64 random bits; held in memory
/// only, so after a restart every earlier task is `unknown_task`); a report
/// counts once however often it is sent (its task id is its idempotency key).
final class ContinuousAdmission: TaskCoordinator, @unchecked Sendable {
    let configuration: RoundConfiguration
    private let store: ModelStore
    private let committer: GroupCommitter
    private let logger: Logger
    private let queue = DispatchQueue(label: "fed.admission")
    private let metrics: RoundMetrics?

    // State: touched on `queue` only.
    private var random: any RandomNumberGenerator
    private var waiting: [Waiter] = []
    private let nextTicket = Atomic<UInt64>(1)
    /// Tasks handed out and not reported, expired or not.
    private var tasks: [UInt64: Task] = [:]
    /// Tasks not expired nor reported: at most `cohortSize`.
    private var outstanding = 0
    /// Expired tasks not reported, oldest first (their late reports are taken
    /// while they are remembered).
    private var expiredOrder: [UInt64] = []
    /// Reports being committed: their callers, answered together.
    private var committing: [UInt64: [@Sendable (Result<Acknowledgement, ErrorMessage>) -> Void]] = [:]
    /// The answers of recently applied tasks (a repeated report gets it again).
    private var applied: [UInt64: Acknowledgement] = [:]
    private var appliedOrder: [UInt64] = []
    private var sequence: UInt64 = 0
    private var stopping = false
    private var stats = Statistics()

    /// What happened so far (for logs and tests).
    struct Statistics: Sendable, Equatable {
        var tasksGiven = 0
        var expired = 0
        var reportsApplied = 0
        var lateReports = 0
        /// The most tasks outstanding at once.
        var mostOutstanding = 0
    }

    private struct Waiter {
        var ticket: UInt64
        var clientID: String
        var checkIn: CheckIn
        var answer: @Sendable (Assignment) -> Void
    }

    private struct Task {
        var clientID: String
        var baseVersion: UInt64
        var expired: Bool
    }

    init(
        configuration: RoundConfiguration, store: ModelStore, committer: GroupCommitter, logger: Logger,
        metrics: ServerMetrics? = nil
    ) {
        self.configuration = configuration
        self.store = store
        self.committer = committer
        self.logger = logger
        self.random = configuration.seed.map { SplitMix(seed: $0) } ?? SystemRandomNumberGenerator()
        self.metrics = metrics.map(RoundMetrics.init)
    }

    // MARK: Events

    func checkIn(_ checkIn: CheckIn, clientID: String, answer: @escaping @Sendable (Assignment) -> Void) -> UInt64 {
        let ticket = nextTicket.add(1, ordering: .relaxed).oldValue
        queue.async { self.arrive(Waiter(ticket: ticket, clientID: clientID, checkIn: checkIn, answer: answer)) }
        return ticket
    }

    func cancel(ticket: UInt64) {
        queue.async {
            self.waiting.removeAll { $0.ticket == ticket }
            self.metrics?.waiting.record(self.waiting.count)
        }
    }

    func report(
        _ report: Report, clientID: String, answer: @escaping @Sendable (Result<Acknowledgement, ErrorMessage>) -> Void
    ) {
        queue.async { self.receive(report, clientID: clientID, answer: answer) }
    }

    /// Waiting check-ins are told to come back; reports not yet received are
    /// refused (`shutting_down`); commits under way finish. Returns when that is done.
    func shutdown() {
        queue.sync {
            stopping = true
            for w in waiting { w.answer(.comeBack(after: 1_000, .shuttingDown)) }
            waiting = []
            metrics?.waiting.record(0)
        }
    }

    var statistics: Statistics { queue.sync { stats } }

    func settle() { queue.sync {} }

    /// How many expired tasks, and how many applied ones, are remembered.
    private var rememberedTasks: Int { max(1_024, configuration.cohortSize * 16) }

    // MARK: On the queue

    private func arrive(_ w: Waiter) {
        if stopping { return w.answer(.comeBack(after: 1_000, .shuttingDown)) }
        let features = w.checkIn.features.intersection(configuration.features)
        guard w.checkIn.abilities.contains(.train) else {
            return w.answer(.comeBack(after: 60_000, .noTask, features: features))
        }
        let candidate = Candidate(
            clientID: w.clientID, properties: w.checkIn.properties, abilities: w.checkIn.abilities)
        guard !configuration.selector.select(from: [candidate], count: 1, using: &random).isEmpty else {
            // Left out by the selector (its properties): nothing for this client.
            return w.answer(.comeBack(after: 60_000, .noTask, features: features))
        }
        // A client checked in twice (a second connection) waits once: the newer check-in wins.
        if let old = waiting.firstIndex(where: { $0.clientID == w.clientID }) {
            let previous = waiting.remove(at: old)
            previous.answer(
                .comeBack(
                    after: UInt32.random(in: 1_000...2_000, using: &random), .noTask,
                    features: previous.checkIn.features.intersection(configuration.features)))
        }
        if outstanding < configuration.cohortSize && waiting.isEmpty { return assign(w) }
        waiting.append(w)
        metrics?.waiting.record(waiting.count)
        let wait = min(Duration.milliseconds(Int64(w.checkIn.waitMilliseconds)), configuration.maxWait)
        let ticket = w.ticket
        configuration.clock.run(at: configuration.clock.now() + wait.dispatch, on: queue) { self.waitEnded(ticket) }
    }

    private func waitEnded(_ ticket: UInt64) {
        guard let i = waiting.firstIndex(where: { $0.ticket == ticket }) else { return }
        let w = waiting.remove(at: i)
        metrics?.waiting.record(waiting.count)
        // Every place is taken: come back within a task's deadline, spread over it.
        let spread = max(1_000, UInt32(clamping: configuration.deadline.wholeMilliseconds))
        w.answer(
            .comeBack(
                after: UInt32.random(in: spread / 2...spread, using: &random), .roundFull,
                features: w.checkIn.features.intersection(configuration.features)))
    }

    /// Gives `w` a train task from the current model version.
    private func assign(_ w: Waiter) {
        var id: UInt64
        repeat { id = UInt64.random(in: 1...UInt64.max, using: &random) } while tasks[id] != nil || applied[id] != nil
        let version = store.snapshot().version
        sequence += 1
        tasks[id] = Task(clientID: w.clientID, baseVersion: version, expired: false)
        outstanding += 1
        stats.tasksGiven += 1
        stats.mostOutstanding = max(stats.mostOutstanding, outstanding)
        metrics?.tasks.increment(by: 1)
        w.answer(
            Assignment(
                kind: .train, features: w.checkIn.features.intersection(configuration.features), taskID: id,
                round: sequence, modelVersion: version,
                deadlineMilliseconds: UInt32(clamping: configuration.deadline.wholeMilliseconds),
                parameters: configuration.parameters))
        let task = id
        configuration.clock.run(at: configuration.clock.now() + configuration.deadline.dispatch, on: queue) {
            self.expire(task)
        }
    }

    /// The task's deadline: its place goes to the next client waiting.
    private func expire(_ id: UInt64) {
        guard var t = tasks[id], !t.expired else { return }
        t.expired = true
        tasks[id] = t
        stats.expired += 1
        expiredOrder.append(id)
        // The oldest expired tasks beyond a bound are forgotten (their late reports are unknown).
        if expiredOrder.count > rememberedTasks {
            for old in expiredOrder.prefix(expiredOrder.count - rememberedTasks) where tasks[old]?.expired == true {
                tasks[old] = nil
            }
            expiredOrder.removeFirst(expiredOrder.count - rememberedTasks)
        }
        freePlace()
    }

    private func freePlace() {
        outstanding -= 1
        while outstanding < configuration.cohortSize, !stopping, !waiting.isEmpty {
            assign(waiting.removeFirst())
            metrics?.waiting.record(waiting.count)
        }
    }

    private func receive(
        _ report: Report, clientID: String, answer: @escaping @Sendable (Result<Acknowledgement, ErrorMessage>) -> Void
    ) {
        if let ack = applied[report.taskID] { return answer(.success(ack)) }
        if committing[report.taskID] != nil {
            // A retry while its first is committed: the update counts once.
            committing[report.taskID]!.append(answer)
            return
        }
        guard let task = tasks[report.taskID] else {
            return answer(
                .failure(
                    ErrorMessage(
                        code: .unknownTask,
                        message: "task \(report.taskID) was not given by this server, or not since it started")))
        }
        guard task.clientID == clientID else {
            return answer(
                .failure(ErrorMessage(code: .unknownTask, message: "task \(report.taskID) was given to another client"))
            )
        }
        if stopping {
            return answer(
                .failure(ErrorMessage(code: .shuttingDown, message: "the server is shutting down; report again later")))
        }
        let id = report.taskID
        tasks[id] = nil
        if task.expired { stats.lateReports += 1 }
        committing[id] = [answer]
        let update = ModelStore.Update(
            tensors: report.tensors, datasets: report.samples, key: PushKey(clientID: clientID, pushID: id),
            clientID: clientID, baseVersion: task.baseVersion, strictBase: true, isDelta: report.isDelta,
            countsSamples: true)
        committer.submit(update) { result in
            self.queue.async { self.committed(id, task: task, result) }
        }
    }

    /// A report's commit ended: its callers are answered, and its place (if
    /// its task had not expired) goes to the next client waiting, which then
    /// trains from the version the report helped make.
    private func committed(_ id: UInt64, task: Task, _ result: Result<Acknowledgement, RejectedUpdate>) {
        let answers = committing.removeValue(forKey: id) ?? []
        defer { if !task.expired { freePlace() } }
        switch result {
        case .success(let ack):
            stats.reportsApplied += 1
            metrics?.reportsApplied.increment(by: 1)
            applied[id] = ack
            appliedOrder.append(id)
            if appliedOrder.count > rememberedTasks {
                for old in appliedOrder.prefix(appliedOrder.count - rememberedTasks) { applied[old] = nil }
                appliedOrder.removeFirst(appliedOrder.count - rememberedTasks)
            }
            for a in answers { a(.success(ack)) }
        case .failure(let refusal):
            if refusal.code == .internalError || refusal.code == .overloaded {
                // Nothing was applied: the task may be reported again.
                tasks[id] = Task(clientID: task.clientID, baseVersion: task.baseVersion, expired: true)
            }
            for a in answers { a(.failure(ErrorMessage(code: refusal.code, message: refusal.message))) }
        }
    }
}
