import FedCodec
import FedModel
import FedSecureClient
import FedServer
import Foundation
import Synchronization

/// Synchronous rounds through the server's check-in, in virtual time
/// (``SimulationConfiguration/checkIn``).
///
/// The server runs its rounds of protocol version 4 (`RoundCoordinator`:
/// check-in, selection, deadline, FedAvg of the reports) on a
/// `VirtualRoundClock` that this driver advances. Clients reach the rounds
/// without a transport, through `FederatedServer.checkIn` and `report`
/// (the `FederationService` calls a `CHECK_IN` or `REPORT` frame leads to),
/// so the driver knows when the server has handled a message
/// (`settleRounds`) and a run is the same for the same seed; a selected
/// client fetches its model over 127.0.0.1 with the binary protocol, as
/// pushing clients do. Bytes of check-ins and reports are their frames'
/// sizes as encoded (an `ACK` or `ERROR` answer counts its header and fixed
/// fields), added to the transports' counts.
///
/// A client behaves as `FederationClient.run`: it checks in waiting up to
/// 30 s; told to come back, it checks in again after the delay asked; given
/// a task, it fetches the model, trains (real training, done at once),
/// and reports at its virtual finish time (two messages and its samples at
/// its speed), then waits for the answer (its round closing) and checks in
/// again. A task drops out with chance ``SimulationConfiguration/dropouts``
/// (drawn from the seed, the client and its count of tasks): its client
/// never reports it and checks in again when it would have finished.
///
/// Events run one at a time in virtual-time order: the server's timers (a
/// wait's end, the selection window, a deadline) before client events of the
/// same instant (a report at its deadline is late), client events by
/// instant then client. The run ends once the closed rounds applied
/// ``SimulationConfiguration/budget`` samples; it fails with a
/// ``SimulationError``, rather than hang, when no round ends within 20
/// deadlines and waits of virtual time, or 20 rounds in a row are abandoned.
struct CheckInRounds {
    let server: FederatedServer
    let clock: VirtualRoundClock
    let configuration: SimulationConfiguration
    let seed: UInt64
    let deadlineSeconds: Double
    let isCancelled: () -> Bool

    /// What the server handed back, in the order it did.
    private enum Answer {
        case assignment(client: Int, Assignment)
        case reported(client: Int, samples: Int, Result<Acknowledgement, ErrorMessage>)
        case secure(client: Int, Result<Message, ErrorMessage>)
    }

    private enum Kind {
        case checkIn
        case report(FederationRun.Pending, taskID: UInt64)
        case secure(any ProtocolMessage, taskID: UInt64)
    }

    private struct Event {
        var time: Double
        var client: Int
        var order: Int
        var kind: Kind
    }

    /// Rounds abandoned in a row after which a run fails as stalled.
    static let abandonedLimit = 20

    /// A client's check-in wait, as `FederationClient.run`'s default.
    static let waitMilliseconds: UInt32 = 30_000

    /// The rounds' configuration of a run.
    /// Under secure aggregation a `fedbuff` strategy runs in cohorts, each a buffer (SPEC 12.11).
    static func rounds(
        _ s: SimulationConfiguration, strategy: StrategySpec, deadline: Double, clock: VirtualRoundClock,
        seed: UInt64
    ) -> RoundConfiguration {
        let cohorts = s.runsCohorts(strategy)
        return RoundConfiguration(
            cohortSize: s.cohortSize, overSelection: s.overSelection, minimumReports: s.minimumReports,
            deadline: .seconds(deadline), selectionWindow: .seconds(5),
            maxWait: .milliseconds(Int64(waitMilliseconds)),
            admission: cohorts ? .cohorts(inFlight: s.cohortsInFlight) : .rounds, clock: clock,
            seed: seed &* 0x2545_F491_4F6C_DD1D &+ 5, privacy: s.privacy, secureAggregation: s.secureAggregation)
    }

    /// The default deadline: twice the task time of the 90th-percentile client, rounded up.
    static func defaultDeadline(taskSeconds: [Double]) -> Double {
        let sorted = taskSeconds.sorted()
        let p90 = sorted[max(0, Int((0.9 * Double(sorted.count)).rounded(.up)) - 1)]
        return max(1, (2 * p90).rounded(.up))
    }

    /// What the run did: its figures, and reports sent and refused (other than late).
    struct Outcome {
        var figures: RoundFigures
        var reports = 0
        var refused = 0
    }

    /// Runs rounds until `budget` samples were applied. `train` fetches and
    /// trains a client's task at a virtual time; `applied` counts the samples
    /// of a report applied at a virtual time (the curve is measured there);
    /// `bytes` counts bytes of check-ins and reports sent and of their
    /// answers received; `refused` tells of a report refused other than late.
    func run(
        train: (Int, Double) throws -> FederationRun.Pending, applied: (Int, Double) throws -> Void,
        bytes: (_ sent: Int, _ received: Int) -> Void, refused: (Int, String) -> Void
    ) throws -> Outcome {
        let s = configuration
        let inbox = Mutex<[Answer]>([])
        var events: [Event] = []
        var order = 0
        func schedule(_ time: Double, _ client: Int, _ kind: Kind) {
            order += 1
            events.append(Event(time: time, client: client, order: order, kind: kind))
        }
        // Clients come online over the first message's time, in an order drawn from the seed.
        var arrivals = SeededGenerator(seed: seed &* 0xA24B_AED4_963E_E407 &+ 3)
        for c in 0..<s.clients { schedule(s.messageSeconds * Partition.uniform(&arrivals), c, .checkIn) }

        var outcome = Outcome(
            figures: RoundFigures(
                completed: 0, abandoned: 0, tasks: 0, applied: 0, late: 0, dropped: 0, samplesTrained: 0,
                meanSeconds: 0, p90Seconds: 0, deadlineSeconds: deadlineSeconds))
        var appliedSamples = 0
        var tasksOf = [Int](repeating: 0, count: s.clients)
        var now = 0.0
        var statistics = server.roundStatistics ?? RoundStatistics()
        var openedAt: Double?
        var lastEnd = 0.0
        var abandonedInARow = 0
        var finished = false
        var durations: [Double] = []
        let stallLimit = 20 * (deadlineSeconds + Double(Self.waitMilliseconds) / 1000 + 5)
        let checkInBytes = Self.frameSize(CheckIn(waitMilliseconds: Self.waitMilliseconds))
        // Secure rounds: each client's participant, the stage it is gone after (if drawn), and
        // the model version and count the server acknowledged last (the samples a round applied).
        var participants: [Int: SecAggParticipant] = [:]
        var goneAfter: [Int: SimulationConfiguration.SecureStage] = [:]
        var acknowledged = (version: UInt64(0), datasets: UInt64(0))
        // With differential privacy the server publishes no sample count: each acknowledged
        // client's own samples count instead (an input sent by a client gone before its ACK is
        // in the sum but not counted).
        var secureSamples: [Int: Int] = [:]
        /// A client of a secure round gone after a stage: back when the round is surely over.
        func vanish(_ c: Int) {
            participants[c] = nil
            goneAfter[c] = nil
            outcome.figures.dropped += 1
            schedule(now + deadlineSeconds, c, .checkIn)
        }

        func nanoseconds(_ t: Double) -> Int64 { Int64((t * 1e9).rounded()) }

        /// After the server handled an event: the rounds that ended and
        /// opened, then every answer in order.
        func settle() throws {
            server.settleRounds()
            let st = server.roundStatistics ?? statistics
            if st.closed > statistics.closed, let opened = openedAt {
                durations.append(now - opened)
            }
            if st.closed > statistics.closed || st.abandoned > statistics.abandoned {
                openedAt = nil
                lastEnd = now
            }
            if st.closed > statistics.closed { abandonedInARow = 0 }
            abandonedInARow += st.abandoned - statistics.abandoned
            if st.tasksGiven > statistics.tasksGiven { openedAt = now }
            statistics = st
            let answers = inbox.withLock { a in
                defer { a = [] }
                return a
            }
            for answer in answers {
                switch answer {
                case .assignment(let c, let a) where a.kind == .secureTrain:
                    bytes(0, Self.frameSize(a))
                    if appliedSamples >= s.budget { continue }
                    var participant = try SecAggParticipant(a)
                    let keys = try participant.keys()
                    participants[c] = participant
                    outcome.figures.tasks += 1
                    var draw = SeededGenerator(
                        seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(c) &* 1_000_003 &+ UInt64(tasksOf[c]) &* 7919
                            &+ 0x5EC)
                    tasksOf[c] += 1
                    var u = Partition.uniform(&draw)
                    for stage in SimulationConfiguration.SecureStage.allCases {
                        let f = s.secureDropouts[stage] ?? 0
                        if u < f {
                            goneAfter[c] = stage
                            break
                        }
                        u -= f
                    }
                    schedule(now, c, .secure(keys, taskID: a.taskID))
                case .secure(let c, let result):
                    switch result {
                    case .failure(let e):
                        bytes(0, FrameHeader.size + 4 + e.message.utf8.count)
                        participants[c] = nil
                        goneAfter[c] = nil
                        secureSamples[c] = nil
                        if e.code == .roundClosed {
                            outcome.figures.late += 1
                        } else {
                            if outcome.refused < 3 { refused(c, "\(e.code): \(e.message)") }
                            outcome.refused += 1
                        }
                        schedule(now, c, .checkIn)
                    case .success(.ack(let version, let datasets)):
                        bytes(0, FrameHeader.size + 16)
                        outcome.figures.applied += 1
                        participants[c] = nil
                        if s.privacy != nil {
                            let added = secureSamples.removeValue(forKey: c) ?? 0
                            appliedSamples += added
                            try applied(added, now)
                        } else if version > acknowledged.version {
                            // The round's samples count once, at its first ACK (inputs of clients gone
                            // after sending them are in the sum too).
                            let added = Int(datasets >= acknowledged.datasets ? datasets - acknowledged.datasets : 0)
                            acknowledged = (version, datasets)
                            appliedSamples += added
                            try applied(added, now)
                        }
                        schedule(now, c, .checkIn)
                    case .success(let message):
                        guard case .other(let relayed) = message, participants[c] != nil else { continue }
                        bytes(0, FrameHeader.size + Self.payloadSize(relayed.base))
                        if let roster = relayed.as(SecAggRoster.self) {
                            if goneAfter[c] == .keys { vanish(c); continue }
                            let shares = try participants[c]!.shares(for: roster)
                            schedule(now, c, .secure(shares, taskID: roster.taskID))
                        } else if let inbox = relayed.as(SecAggInbox.self) {
                            try participants[c]!.open(inbox)
                            if goneAfter[c] == .shares { vanish(c); continue }
                            let p = try train(c, now)
                            outcome.figures.samplesTrained += p.samples
                            secureSamples[c] = p.samples
                            let input = try participants[c]!.input(
                                trained: p.weights, base: p.fetched, samples: UInt64(p.samples))
                            schedule(p.time, c, .secure(input, taskID: inbox.taskID))
                        } else if let survivors = relayed.as(SecAggSurvivors.self) {
                            if goneAfter[c] == .input { vanish(c); continue }
                            let unmask = try participants[c]!.unmask(survivors)
                            schedule(now, c, .secure(unmask, taskID: survivors.taskID))
                        }
                    }
                case .assignment(let c, let a):
                    bytes(0, Self.frameSize(a))
                    guard a.kind == .train else {
                        // No more rounds will run (the privacy budget is spent): the run ends.
                        if a.reason == .budgetSpent || a.reason == .finished {
                            finished = true
                            continue
                        }
                        schedule(now + Double(a.retryAfterMilliseconds) / 1000, c, .checkIn)
                        continue
                    }
                    // The budget is spent: the run ends; this task is never trained.
                    if appliedSamples >= s.budget { continue }
                    let p = try train(c, now)
                    guard p.base == a.modelVersion else {
                        throw SimulationError(
                            "client \(c) fetched version \(p.base) for a task of version \(a.modelVersion)")
                    }
                    outcome.figures.tasks += 1
                    outcome.figures.samplesTrained += p.samples
                    var draw = SeededGenerator(
                        seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(c) &* 1_000_003 &+ UInt64(tasksOf[c]) &* 7919
                            &+ 0xD809)
                    tasksOf[c] += 1
                    if Partition.uniform(&draw) < s.dropouts {
                        outcome.figures.dropped += 1
                        schedule(p.time, c, .checkIn)
                    } else {
                        schedule(p.time, c, .report(p, taskID: a.taskID))
                    }
                case .reported(let c, let samples, let result):
                    switch result {
                    case .success:
                        bytes(0, FrameHeader.size + 16)
                        outcome.figures.applied += 1
                        appliedSamples += samples
                        try applied(samples, now)
                    case .failure(let e):
                        bytes(0, FrameHeader.size + 4 + e.message.utf8.count)
                        if e.code == .roundClosed {
                            outcome.figures.late += 1
                        } else {
                            if outcome.refused < 3 { refused(c, "\(e.code): \(e.message)") }
                            outcome.refused += 1
                        }
                    }
                    schedule(now, c, .checkIn)
                }
            }
        }

        while appliedSamples < s.budget && !finished {
            if isCancelled() { throw CancellationError() }
            let next = events.indices.min {
                (events[$0].time, events[$0].client, events[$0].order)
                    < (events[$1].time, events[$1].client, events[$1].order)
            }
            let timer = clock.nextDeadline
            if let timer, next.map({ timer <= .nanoseconds(nanoseconds(events[$0].time)) }) ?? true {
                // The server's timers of this instant run first.
                clock.advance(to: timer)
                let (seconds, attoseconds) = timer.components
                now = max(now, Double(seconds) + Double(attoseconds) / 1e18)
            } else if let i = next {
                let e = events.remove(at: i)
                now = max(now, e.time)
                clock.advance(to: .nanoseconds(nanoseconds(now)))
                let c = e.client
                switch e.kind {
                case .checkIn:
                    bytes(checkInBytes, 0)
                    let checkIn = CheckIn(
                        features: s.secureAggregation != nil ? .secureAggregation : [], abilities: .train,
                        waitMilliseconds: Self.waitMilliseconds)
                    if case .failure(let error) = server.checkIn(
                        checkIn, clientID: "sim-\(c)",
                        answer: { a in inbox.withLock { $0.append(.assignment(client: c, a)) } })
                    {
                        throw SimulationError("the check-in of client \(c) was refused: \(error.message)")
                    }
                case .report(let p, let taskID):
                    let report = Report(
                        taskID: taskID, samples: UInt64(p.samples), tensors: p.weights, compression: .none)
                    var wire = report
                    wire.compression = s.compression
                    bytes(Self.frameSize(wire), 0)
                    outcome.reports += 1
                    let samples = p.samples
                    if let error = server.report(
                        report, clientID: "sim-\(c)",
                        completion: { r in inbox.withLock { $0.append(.reported(client: c, samples: samples, r)) } })
                    {
                        inbox.withLock { $0.append(.reported(client: c, samples: samples, .failure(error))) }
                    }
                case .secure(let message, let taskID):
                    bytes(Self.frameSize(message), 0)
                    if message is SecAggInput { outcome.reports += 1 }
                    if let error = server.secure(
                        message, taskID: taskID, clientID: "sim-\(c)",
                        completion: { r in inbox.withLock { $0.append(.secure(client: c, r)) } })
                    {
                        inbox.withLock { $0.append(.secure(client: c, .failure(error))) }
                    }
                }
            } else {
                throw SimulationError("the rounds stalled: no client event and no server timer is left")
            }
            try settle()
            if abandonedInARow >= Self.abandonedLimit {
                throw SimulationError(
                    "the rounds stalled: \(abandonedInARow) rounds in a row were abandoned at their deadline of \(deadlineSeconds) s with fewer than the reports needed; lengthen the deadline or lower the minimum"
                )
            }
            if now - lastEnd > stallLimit {
                throw SimulationError(
                    "the rounds stalled: no round closed or was abandoned in \(Int(now - lastEnd)) virtual seconds")
            }
        }
        let stats = server.roundStatistics ?? statistics
        outcome.figures.completed = stats.closed
        outcome.figures.abandoned = stats.abandoned
        if !durations.isEmpty {
            outcome.figures.meanSeconds = durations.reduce(0, +) / Double(durations.count)
            let sorted = durations.sorted()
            outcome.figures.p90Seconds = sorted[max(0, Int((0.9 * Double(sorted.count)).rounded(.up)) - 1)]
        }
        return outcome
    }

    /// Bytes of `message`'s frame: the header and the payload of version 4.
    static func frameSize(_ message: any ProtocolMessage) -> Int { FrameHeader.size + payloadSize(message) }

    /// Bytes of `message`'s payload in version 4.
    static func payloadSize(_ message: any ProtocolMessage) -> Int {
        var w = ByteWriter()
        message.write(into: &w, version: 4)
        return w.bytes.count
    }
}
