import FedCodec
import Logging
import NIOCore

/// One connection of the binary protocol (Protocol/SPEC.md).
///
/// Frames are decoded incrementally and answered strictly in order
/// (pipelining). A push waits for its durable commit before the next frame
/// of the connection is handled. Backpressure: while the channel is not
/// writable (a slow reader of large answers) or a push is in flight, the
/// handler stops asking the socket for more bytes. The bytes of a frame still
/// arriving are counted against the server's memory budget (a frame that
/// would exceed it gets `ERROR overloaded` and the connection is closed), as
/// are `MODEL` answers until the socket has taken them. A frame that has
/// started to arrive must complete within `requestTimeout`.
///
/// Frame-level errors are answered with `ERROR` and close the connection;
/// payload errors are answered and the connection goes on. When the client
/// half-closes, every request already received is still answered; a frame
/// cut off by the half-close gets `ERROR truncated`; then the connection closes.
final class BinaryConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let context: ServerContext
    private let service: FederationService
    private var decoder: FrameDecoder
    private var lease: BudgetLease
    /// The agreed terms once HELLO has succeeded.
    private var session: FederationService.Session?
    /// The version of the frames this connection sends and expects (1 until HELLO is answered).
    private var version: UInt8 = 1
    private var state = BinaryConnectionState()
    private var requestTimer: Scheduled<Void>?
    /// The check-in waiting for a task, if one is (to forget it when the connection closes).
    private var checkInTicket: UInt64?
    /// The channel is gone: late answers of the rounds are dropped.
    private var isClosed = false
    private var logger: Logger

    init(context: ServerContext) {
        self.context = context
        self.service = context.service
        self.decoder = FrameDecoder(limits: context.limits.frame)
        self.lease = context.service.requestLease()
        self.logger = context.logger
    }

    func handlerAdded(context ctx: ChannelHandlerContext) {
        logger[metadataKey: "peer"] = "\(ctx.remoteAddress?.description ?? "?")"
    }

    // MARK: Inbound

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        guard state.phase != .closing else { return }
        let buffer = unwrapInboundIn(data)
        decoder.append(buffer.readableBytesView)
        process(ctx)
    }

    func channelWritabilityChanged(context ctx: ChannelHandlerContext) {
        if ctx.channel.isWritable { process(ctx) }
        ctx.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context ctx: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            state.inputDidClose()
            if let ticket = checkInTicket {
                // A client that closed its side (or exited) waits for nothing: it must not be selected.
                service.cancelCheckIn(ticket)
                checkInTicket = nil
                state.pushAnswered()
            }
            process(ctx)
            return
        }
        ctx.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context ctx: ChannelHandlerContext) {
        isClosed = true
        if let ticket = checkInTicket { service.cancelCheckIn(ticket) }
        checkInTicket = nil
        requestTimer?.cancel()
        lease.close()
        ctx.fireChannelInactive()
    }

    func errorCaught(context ctx: ChannelHandlerContext, error: Error) {
        logger.debug("connection error: \(error)")
        ctx.close(promise: nil)
    }

    // MARK: Outbound: reads are held while the handler cannot take more.

    func read(context ctx: ChannelHandlerContext) {
        if state.readRequested(writable: ctx.channel.isWritable) == .read { ctx.read() }
    }

    // MARK: Processing

    /// Handles every complete frame, in order, until one must wait; then, if
    /// the client has half-closed and nothing is left to answer, closes.
    private func process(_ ctx: ChannelHandlerContext) {
        var wrote = false
        while state.mayHandleFrame(writable: ctx.channel.isWritable) {
            let frame: Frame
            do throws(CodecError) {
                guard let next = try decoder.next() else { break }
                frame = next
            } catch {
                logger.warning("rejected frame: \(error)")
                return failStream(ctx, error.code, error.message)
            }
            handle(ctx, frame)
            wrote = true
        }
        if wrote { ctx.flush() }
        guard lease.resize(to: decoder.committedByteCount) else {
            logger.warning("closing connection: memory budget exhausted (\(context.budget.used) B held)")
            let refusal = FederationService.outOfMemoryForRequests
            return failStream(ctx, refusal.code, refusal.message)
        }
        decoder.reserveForPendingFrame()
        switch state.endOfInput(bufferedBytes: decoder.bufferedByteCount, writable: ctx.channel.isWritable) {
        case .close:
            return closeAfterWrites(ctx)
        case .cutOff:
            // Every complete frame has been handled: what is left was cut off.
            do throws(CodecError) {
                try decoder.finish()
            } catch {
                return failStream(ctx, error.code, error.message)
            }
        case .keepGoing:
            break
        }
        armRequestTimer(ctx)
        if state.resumeReading(writable: ctx.channel.isWritable) == .read { ctx.read() }
    }

    /// Starts the per-request deadline when part of a frame is buffered, and stops it otherwise.
    private func armRequestTimer(_ ctx: ChannelHandlerContext) {
        if !state.requestDeadlineRuns(bufferedBytes: decoder.bufferedByteCount) {
            requestTimer?.cancel()
            requestTimer = nil
        } else if requestTimer == nil {
            requestTimer = ctx.closeAfter(
                TimeAmount(context.configuration.network.requestTimeout), logger: logger,
                reason: "a frame did not arrive")
        }
    }

    /// Answers an error that ends the stream (request id 0), then closes.
    private func failStream(_ ctx: ChannelHandlerContext, _ code: ErrorCode, _ text: String, requestID: UInt32 = 0) {
        state.startClosing()
        requestTimer?.cancel()
        lease.close()
        send(ctx, .error(ErrorMessage(code: code, message: text)), requestID: requestID)
        closeAfterWrites(ctx)
    }

    /// Closes once everything written so far has reached the socket.
    private func closeAfterWrites(_ ctx: ChannelHandlerContext) {
        state.startClosing()
        let channel = ctx.channel
        ctx.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    private func send(_ ctx: ChannelHandlerContext, _ message: Message, requestID: UInt32) {
        if case .error(let e) = message { service.record(.answeredError(e.code)) }
        let bytes = MessageCodec.encode(message, requestID: requestID, level: 1, version: version)
        ctx.write(wrapOutboundOut(ctx.channel.allocator.buffer(bytes: bytes)), promise: nil)
    }

    private func sendError(_ ctx: ChannelHandlerContext, _ error: ErrorMessage, requestID: UInt32) {
        send(ctx, .error(error), requestID: requestID)
    }

    private func sendError(_ ctx: ChannelHandlerContext, _ code: ErrorCode, _ text: String, requestID: UInt32) {
        sendError(ctx, ErrorMessage(code: code, message: text), requestID: requestID)
    }

    private func handle(_ ctx: ChannelHandlerContext, _ frame: Frame) {
        let id = frame.header.requestID
        if session != nil && frame.header.version != version {
            logger.warning("frame of version \(frame.header.version) after agreeing on \(version)")
            return failStream(
                ctx, .unsupportedVersion, "this connection agreed on version \(version)", requestID: id)
        }
        if session != nil, let declared = MessageCodec.declaredPushShapes(frame, limits: context.limits.frame),
            let refusal = service.refuseDeclaredShapes(declared)
        {
            // Refused from the blob header alone: nothing is inflated or copied.
            return sendError(ctx, refusal, requestID: id)
        }
        service.record(.request(.binary, "\(frame.header.type)"))
        let message: Message
        do throws(CodecError) {
            message = try MessageCodec.decode(frame, limits: context.limits.frame)
        } catch {
            logger.warning("rejected \(frame.header.type) request \(id): \(error)")
            send(ctx, .error(ErrorMessage(error)), requestID: id)
            return
        }
        if message.descriptor.direction == .toClient {
            return sendError(ctx, .unexpectedMessage, "a client does not send \(message.type)", requestID: id)
        }
        switch message {
        case .hello(let hello):
            handleHello(ctx, hello, id: id)
        case .pong, .error:
            // Unsolicited answers from a client are ignored (SPEC.md section 4).
            if case .error(let e) = message { logger.info("client sent ERROR \(e.code)") }
        case .ping, .fetch, .push:
            guard let session else {
                return sendError(ctx, .handshakeRequired, "send HELLO first", requestID: id)
            }
            switch message {
            case .ping(let nonce): send(ctx, .pong(nonce: nonce), requestID: id)
            case .fetch(let held, let wanted, let deltas):
                handleFetch(
                    ctx,
                    service.fetch(
                        held: held, wanted: wanted, deltaEncodings: ValueEncodingSet(rawValue: deltas), session: session
                    ), id: id)
            case .push(let push): handlePush(ctx, push, session: session, id: id)
            default: break
            }
        case .other(let other):
            guard let session else {
                return sendError(ctx, .handshakeRequired, "send HELLO first", requestID: id)
            }
            if let checkIn = other.as(CheckIn.self) {
                handleCheckIn(ctx, checkIn, session: session, id: id)
            } else if let report = other.as(Report.self) {
                handleReport(ctx, report, session: session, id: id)
            } else if let taskID = SecureRequest.taskID(of: other) {
                handleSecure(ctx, other, taskID: taskID, session: session, id: id)
            } else if let evaluation = other.as(EvaluationReport.self) {
                switch service.evaluationReport(evaluation, session: session) {
                case .success(let ack): send(ctx, .ack(version: ack.version, datasets: ack.datasets), requestID: id)
                case .failure(let error): sendError(ctx, error, requestID: id)
                }
            } else {
                sendError(ctx, .unexpectedMessage, "this server does not serve \(message.type)", requestID: id)
            }
        default:
            sendError(ctx, .unexpectedMessage, "this server does not serve \(message.type)", requestID: id)
        }
    }

    private func handleHello(_ ctx: ChannelHandlerContext, _ hello: Hello, id: UInt32) {
        guard session == nil else {
            return sendError(ctx, .unexpectedMessage, "HELLO was already answered on this connection", requestID: id)
        }
        switch service.hello(hello) {
        case .refused(let error):
            failStream(ctx, error.code, error.message, requestID: id)
        case .accepted(let agreed, let welcome):
            session = agreed
            logger[metadataKey: "client"] = "\(LogSafe.text(hello.clientID))"
            // WELCOME travels in a version-1 frame; later frames use the agreed version.
            send(ctx, .welcome(welcome), requestID: id)
            version = agreed.version
        }
    }

    private func handleFetch(_ ctx: ChannelHandlerContext, _ answer: FederationService.FetchAnswer, id: UInt32) {
        let header: [UInt8]
        let payload: ByteBuffer
        switch answer {
        case .unchanged(let v, let datasets):
            return send(ctx, .modelUnchanged(version: v, datasets: datasets), requestID: id)
        case .model(let model, let compression):
            (header, payload) = model.modelFrame(requestID: id, compression: compression, version: version)
        case .steps(let model, let from, let blobs):
            let bytes = MessageCodec.modelDeltaPayload(
                version: model.version, datasets: model.datasets, from: from, stepBlobs: blobs)
            header = FrameWriter.header(
                type: .modelDelta, requestID: id, payloadLength: bytes.count, payloadCRC: CRC32.checksum(bytes),
                version: version)
            payload = ctx.channel.allocator.buffer(bytes: bytes)
        }
        switch service.holdAnswer(bytes: payload.readableBytes, kind: .fetch) {
        case .failure(let refusal):
            sendError(ctx, refusal, requestID: id)
        case .success(let hold):
            ctx.write(wrapOutboundOut(ctx.channel.allocator.buffer(bytes: header)), promise: nil)
            let written = ctx.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in hold.written() }
            ctx.write(wrapOutboundOut(payload), promise: written)
        }
    }

    private func handlePush(
        _ ctx: ChannelHandlerContext, _ push: Push, session: FederationService.Session, id: UInt32
    ) {
        let request = FederationService.PushRequest(
            tensors: push.tensors, datasets: push.datasets, pushID: push.pushID, compression: push.compression,
            baseVersion: push.baseVersion, isDelta: push.isDelta)
        state.pushSubmitted()
        let refusal = service.push(request, session: session, completion: acknowledgeLater(ctx, requestID: id))
        if let refusal {
            state.pushAnswered()
            sendError(ctx, refusal, requestID: id)
        }
    }

    /// The completion of a held request (a PUSH, a REPORT): on this
    /// connection's loop, answers ACK or ERROR and takes the frames behind it.
    private func acknowledgeLater(
        _ ctx: ChannelHandlerContext, requestID id: UInt32
    ) -> @Sendable (Result<Acknowledgement, ErrorMessage>) -> Void {
        let loopBound = NIOLoopBound((self, ctx), eventLoop: ctx.eventLoop)
        let eventLoop = ctx.eventLoop
        return { result in
            eventLoop.execute {
                let (handler, ctx) = loopBound.value
                guard !handler.isClosed else { return }
                handler.state.pushAnswered()
                switch result {
                case .success(let ack):
                    handler.send(ctx, .ack(version: ack.version, datasets: ack.datasets), requestID: id)
                case .failure(let error):
                    handler.sendError(ctx, error, requestID: id)
                }
                ctx.flush()
                handler.process(ctx)
            }
        }
    }

    /// A long poll: the frames behind it wait, as behind a push, until the
    /// rounds answer with a task or a time to come back.
    private func handleCheckIn(
        _ ctx: ChannelHandlerContext, _ checkIn: CheckIn, session: FederationService.Session, id: UInt32
    ) {
        let loopBound = NIOLoopBound((self, ctx), eventLoop: ctx.eventLoop)
        let eventLoop = ctx.eventLoop
        state.pushSubmitted()
        let outcome = service.checkIn(checkIn, session: session) { assignment in
            eventLoop.execute {
                let (handler, ctx) = loopBound.value
                // Cancelled meanwhile (closed, or half-closed): nothing waits for this answer.
                guard !handler.isClosed, handler.checkInTicket != nil else { return }
                handler.checkInTicket = nil
                handler.state.pushAnswered()
                handler.send(ctx, .other(AnyProtocolMessage(assignment)), requestID: id)
                ctx.flush()
                handler.process(ctx)
            }
        }
        switch outcome {
        case .success(let ticket):
            // The answer may already be queued on this loop: it clears the ticket after this.
            checkInTicket = ticket
        case .failure(let refusal):
            state.pushAnswered()
            sendError(ctx, refusal, requestID: id)
        }
    }

    /// A request of secure aggregation: answered when its stage closes.
    private func handleSecure(
        _ ctx: ChannelHandlerContext, _ message: AnyProtocolMessage, taskID: UInt64,
        session: FederationService.Session, id: UInt32
    ) {
        let loopBound = NIOLoopBound((self, ctx), eventLoop: ctx.eventLoop)
        let eventLoop = ctx.eventLoop
        state.pushSubmitted()
        let refusal = service.secure(message, taskID: taskID, session: session) { result in
            eventLoop.execute {
                let (handler, ctx) = loopBound.value
                guard !handler.isClosed else { return }
                handler.state.pushAnswered()
                switch result {
                case .success(let answer): handler.send(ctx, answer, requestID: id)
                case .failure(let error): handler.sendError(ctx, error, requestID: id)
                }
                ctx.flush()
                handler.process(ctx)
            }
        }
        if let refusal {
            state.pushAnswered()
            sendError(ctx, refusal, requestID: id)
        }
    }

    /// A train task's result: answered when its round closes.
    private func handleReport(
        _ ctx: ChannelHandlerContext, _ report: Report, session: FederationService.Session, id: UInt32
    ) {
        state.pushSubmitted()
        let refusal = service.report(report, session: session, completion: acknowledgeLater(ctx, requestID: id))
        if let refusal {
            state.pushAnswered()
            sendError(ctx, refusal, requestID: id)
        }
    }
}
