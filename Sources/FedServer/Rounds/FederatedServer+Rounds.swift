import FedCodec

/// The rounds without a transport: the calls a connection handler makes for
/// a `CHECK_IN` or a `REPORT` frame once it is decoded, made in process (a
/// simulation driving many clients in virtual time, a test). The same
/// `FederationService` checks run (properties, the agreed compression,
/// draining, shapes, the memory budget); no frame is encoded or decoded and
/// nothing is counted as a request.
extension FederatedServer {
    /// `CHECK_IN` of `clientID` (as if it said HELLO with version 4 and no
    /// compression): `answer` runs once, on the rounds' queue, with a task or
    /// when to come back. Returns the ticket to forget the wait with
    /// (``cancelCheckIn(_:)``), or the ERROR a `CHECK_IN` frame would get.
    public func checkIn(
        _ checkIn: CheckIn, clientID: String, answer: @escaping @Sendable (Assignment) -> Void
    ) -> Result<UInt64, ErrorMessage> {
        service.checkIn(checkIn, session: Self.inProcess(clientID), answer: answer)
    }

    /// Forgets a check-in (its client went away).
    public func cancelCheckIn(_ ticket: UInt64) { service.cancelCheckIn(ticket) }

    /// `REPORT` of `clientID`, its tensors uncompressed: `completion` runs
    /// once, on the rounds' queue, when the round closes (the ACK) or the
    /// report is refused. Returns the ERROR when it is refused at once
    /// (`completion` is then never called).
    public func report(
        _ report: Report, clientID: String,
        completion: @escaping @Sendable (Result<Acknowledgement, ErrorMessage>) -> Void
    ) -> ErrorMessage? {
        service.report(report, session: Self.inProcess(clientID), completion: completion)
    }

    /// A request of secure aggregation (`SECAGG_KEYS`, `_SHARES`, `_INPUT`,
    /// `_UNMASK`) of `clientID` for task `taskID`: `completion` runs once, on
    /// the rounds' queue, when the request's stage closes (the relayed
    /// message, or the ACK of the round) or it is refused. Returns the ERROR
    /// when it is refused at once (`completion` is then never called).
    public func secure(
        _ message: any ProtocolMessage, taskID: UInt64, clientID: String,
        completion: @escaping @Sendable (Result<Message, ErrorMessage>) -> Void
    ) -> ErrorMessage? {
        service.secure(
            AnyProtocolMessage(message), taskID: taskID, session: Self.inProcess(clientID), completion: completion)
    }

    /// Returns once the rounds have handled every check-in, report and due
    /// timer handed to them before this call, with the answers those gave.
    /// Never call it from an answer's closure (it runs on the rounds' queue).
    public func settleRounds() { rounds?.settle() }

    /// What the rounds did so far; nil when the server runs none.
    /// nil too with continuous admission (an asynchronous strategy), which runs no rounds.
    public var roundStatistics: RoundStatistics? { (rounds as? RoundCoordinator)?.statistics }

    /// The privacy spent by the versions published so far; nil without differential privacy.
    public var privacySpent: PrivacySpent? {
        (rounds as? RoundCoordinator)?.privacy.map {
            PrivacySpent(epsilon: $0.epsilon, delta: $0.configuration.delta, rounds: $0.rounds, clip: $0.clip)
        }
    }

    private static func inProcess(_ clientID: String) -> FederationService.Session {
        FederationService.Session(clientID: clientID, version: 4, compressions: .uncompressed, transport: .binary)
    }
}
