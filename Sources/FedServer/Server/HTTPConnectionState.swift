/// What an HTTP connection is doing, and what its handler does next.
///
/// Pure state over the request type, so the rules are tested without a
/// channel: one request is handled at a time, in order; a request that
/// arrives while another is handled (pipelined) or while answers are backed
/// up waits, and is handled as soon as both clear; reads are held meanwhile
/// (a client that does not read holds one answer, not one per request).
struct HTTPConnectionState<Request> {
    /// A request is being handled off the event loop (its answer is not written yet).
    private(set) var busy = false
    /// A complete request waiting for its turn.
    private(set) var waiting: Request?
    /// The pipeline asked for a read while the handler could not take more.
    private(set) var readPending = false
    /// The client has half-closed.
    private(set) var inputClosed = false
    /// An error was answered for the current request: its remaining parts are ignored.
    private(set) var discarding = false

    /// What to do with a request for more bytes.
    enum ReadAction: Equatable {
        case read
        case hold
    }

    /// A request's head arrived: a new request starts.
    mutating func headArrived() { discarding = false }

    /// The current request was answered with an error (the connection closes): ignore the rest of it.
    mutating func discardRest() { discarding = true }

    /// A request arrived whole: the request to handle now, or nil when it must wait.
    mutating func requestArrived(_ request: Request, writable: Bool) -> Request? {
        if writable && !busy && waiting == nil { return request }
        waiting = request
        return nil
    }

    /// The handler hands the current request to work off the event loop.
    mutating func startedWork() { busy = true }

    /// Its answer was written (or it was refused before the work began):
    /// the waiting request to handle next, if it can go now.
    mutating func answered(writable: Bool) -> Request? {
        busy = false
        return next(writable: writable)
    }

    /// The channel drained: the waiting request to handle now, if any.
    mutating func becameWritable() -> Request? { next(writable: true) }

    private mutating func next(writable: Bool) -> Request? {
        guard writable, !busy, let request = waiting else { return nil }
        waiting = nil
        return request
    }

    /// The pipeline asks for more bytes.
    mutating func readRequested(writable: Bool) -> ReadAction {
        if busy || waiting != nil || !writable {
            readPending = true
            return .hold
        }
        return .read
    }

    /// Issue a read held earlier, if now possible.
    mutating func resumeReading(writable: Bool) -> ReadAction {
        guard readPending && !busy && waiting == nil && writable else { return .hold }
        readPending = false
        return .read
    }

    /// The client half-closed; true when nothing is left to answer (close now).
    mutating func inputDidClose(requestInProgress: Bool) -> Bool {
        inputClosed = true
        return !busy && waiting == nil && !requestInProgress
    }
}
