/// What a binary connection is doing, and what its handler does next.
///
/// Pure state: each event returns the action to carry out, so the rules
/// (strict ordering behind a push, reads held while the handler cannot take
/// more, what a half-close leaves to do) are tested without a channel.
///
/// Invariant: while a push waits for its commit, no other frame of the
/// connection is handled and no read is issued.
struct BinaryConnectionState {
    enum Phase: Equatable {
        /// Frames are handled as they arrive.
        case serving
        /// A push waits for its durable commit; the frames behind it wait too.
        case awaitingCommit
        /// An answer that ends the stream was sent, or the client is done: nothing more is handled.
        case closing
    }

    private(set) var phase = Phase.serving
    /// The client has half-closed: answer what arrived, then close.
    private(set) var inputClosed = false
    /// The pipeline asked for a read while the handler could not take more.
    private(set) var readPending = false

    /// What to do with a request for more bytes.
    enum ReadAction: Equatable {
        case read
        case hold
    }

    /// Whether the next complete frame may be handled now.
    func mayHandleFrame(writable: Bool) -> Bool { phase == .serving && writable }

    /// The pipeline asks for more bytes: read unless a push waits or answers are backed up.
    mutating func readRequested(writable: Bool) -> ReadAction {
        if phase == .awaitingCommit || !writable {
            readPending = true
            return .hold
        }
        return .read
    }

    /// After handling what it could: issue a read held earlier, if now possible.
    mutating func resumeReading(writable: Bool) -> ReadAction {
        guard readPending && phase != .awaitingCommit && writable else { return .hold }
        readPending = false
        return .read
    }

    /// A push was handed to the committer.
    mutating func pushSubmitted() {
        if phase == .serving { phase = .awaitingCommit }
    }

    /// The push's answer was written: the frames behind it may go on (unless closing).
    mutating func pushAnswered() {
        if phase == .awaitingCommit { phase = .serving }
    }

    mutating func startClosing() { phase = .closing }

    mutating func inputDidClose() { inputClosed = true }

    /// What a half-closed connection has left once no frame can be handled now.
    enum EndOfInput: Equatable {
        /// Not half-closed, or still answering.
        case keepGoing
        /// Every request is answered: close once the answers are written.
        case close
        /// Bytes of a frame that can no longer complete: answer `truncated`.
        case cutOff
    }

    func endOfInput(bufferedBytes: Int, writable: Bool) -> EndOfInput {
        guard inputClosed && phase == .serving else { return .keepGoing }
        if bufferedBytes == 0 { return .close }
        return writable ? .cutOff : .keepGoing
    }

    /// Whether a request deadline runs: part of a frame is buffered and no push waits.
    func requestDeadlineRuns(bufferedBytes: Int) -> Bool { bufferedBytes > 0 && phase != .awaitingCommit }
}
