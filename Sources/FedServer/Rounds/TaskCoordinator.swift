import FedCodec

/// What hands out and collects the tasks of protocol version 4:
/// `RoundCoordinator` (synchronous rounds, FedAvg at each close) or
/// `ContinuousAdmission` (tasks while places are free, each report an update
/// for an asynchronous strategy), chosen by `RoundConfiguration.admission`.
protocol TaskCoordinator: AnyObject, Sendable {
    /// A client checks in; `answer` runs once, with a task or when to come
    /// back. Returns a ticket for `cancel` (the client's connection closed).
    func checkIn(_ checkIn: CheckIn, clientID: String, answer: @escaping @Sendable (Assignment) -> Void) -> UInt64
    /// Forgets a check-in whose client is gone (nothing is answered).
    func cancel(ticket: UInt64)
    /// A train task's report; `answer` runs once, with the ACK or the ERROR.
    func report(
        _ report: Report, clientID: String, answer: @escaping @Sendable (Result<Acknowledgement, ErrorMessage>) -> Void)
    /// Stops handing out tasks; returns once the waiting check-ins are answered.
    func shutdown()
    /// Returns once every event handed over before this call was handled.
    /// Never call it from an answer's closure (it runs on the coordinator's queue).
    func settle()
}
