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
    private var decoder: FrameDecoder
    private var lease: BudgetLease
    /// The client's id once HELLO has succeeded.
    private var clientID: String?
    private var version: UInt8 = 1
    private var compressions: UInt8 = 1
    private var pushInFlight = false
    private var readPending = false
    private var inputClosed = false
    private var closing = false
    private var requestTimer: Scheduled<Void>?
    private var logger: Logger

    init(context: ServerContext) {
        self.context = context
        self.decoder = FrameDecoder(limits: context.limits.frame)
        self.lease = BudgetLease(budget: context.budget)
        self.logger = context.logger
    }

    func handlerAdded(context ctx: ChannelHandlerContext) {
        logger[metadataKey: "peer"] = "\(ctx.remoteAddress?.description ?? "?")"
    }

    // MARK: Inbound

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
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
            inputClosed = true
            process(ctx)
            return
        }
        ctx.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context ctx: ChannelHandlerContext) {
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
        if pushInFlight || !ctx.channel.isWritable {
            readPending = true
        } else {
            ctx.read()
        }
    }

    private func resumeReading(_ ctx: ChannelHandlerContext) {
        if readPending && !pushInFlight && ctx.channel.isWritable {
            readPending = false
            ctx.read()
        }
    }

    // MARK: Processing

    /// Handles every complete frame, in order, until one must wait; then, if
    /// the client has half-closed and nothing is left to answer, closes.
    private func process(_ ctx: ChannelHandlerContext) {
        var wrote = false
        while !pushInFlight && !closing && ctx.channel.isWritable {
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
            return failStream(ctx, .overloaded, "the server is out of memory for requests; try again later")
        }
        decoder.reserveForPendingFrame()
        if inputClosed && !pushInFlight && !closing {
            let left = decoder.bufferedByteCount
            if left > 0 && ctx.channel.isWritable {
                // Every complete frame has been handled: what is left was cut off.
                do throws(CodecError) {
                    try decoder.finish()
                } catch {
                    return failStream(ctx, error.code, error.message)
                }
            } else if left == 0 {
                return closeAfterWrites(ctx)
            }
        }
        armRequestTimer(ctx)
        resumeReading(ctx)
    }

    /// Starts the per-request deadline when part of a frame is buffered, and stops it otherwise.
    private func armRequestTimer(_ ctx: ChannelHandlerContext) {
        if decoder.bufferedByteCount == 0 || pushInFlight {
            requestTimer?.cancel()
            requestTimer = nil
        } else if requestTimer == nil {
            requestTimer = ctx.closeAfter(
                TimeAmount(context.configuration.requestTimeout), logger: logger, reason: "a frame did not arrive")
        }
    }

    /// Answers an error that ends the stream (request id 0), then closes.
    private func failStream(_ ctx: ChannelHandlerContext, _ code: ErrorCode, _ text: String, requestID: UInt32 = 0) {
        closing = true
        requestTimer?.cancel()
        lease.close()
        send(ctx, .error(ErrorMessage(code: code, message: text)), requestID: requestID)
        closeAfterWrites(ctx)
    }

    /// Closes once everything written so far has reached the socket.
    private func closeAfterWrites(_ ctx: ChannelHandlerContext) {
        closing = true
        let channel = ctx.channel
        ctx.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    private func send(_ ctx: ChannelHandlerContext, _ message: Message, requestID: UInt32) {
        if case .error(let e) = message { context.metrics.error(e.code) }
        let bytes = MessageCodec.encode(message, requestID: requestID, level: 1, version: version)
        ctx.write(wrapOutboundOut(ctx.channel.allocator.buffer(bytes: bytes)), promise: nil)
    }

    private func sendError(_ ctx: ChannelHandlerContext, _ code: ErrorCode, _ text: String, requestID: UInt32) {
        send(ctx, .error(ErrorMessage(code: code, message: text)), requestID: requestID)
    }

    private func handle(_ ctx: ChannelHandlerContext, _ frame: Frame) {
        let id = frame.header.requestID
        if clientID != nil && frame.header.version != version {
            logger.warning("frame of version \(frame.header.version) after agreeing on \(version)")
            return failStream(
                ctx, .unsupportedVersion, "this connection agreed on version \(version)", requestID: id)
        }
        if clientID != nil, let declared = MessageCodec.declaredPushShapes(frame, limits: context.limits.frame),
            declared != context.modelShapes
        {
            // Refused from the blob header alone: nothing is inflated or copied.
            return sendError(
                ctx, .shapeMismatch,
                "tensor shapes \(declared.prefix(8)) differ from the model's \(context.modelShapes)", requestID: id)
        }
        context.metrics.request("binary", "\(frame.header.type)")
        let message: Message
        do throws(CodecError) {
            message = try MessageCodec.decode(frame, limits: context.limits.frame)
        } catch {
            logger.warning("rejected \(frame.header.type) request \(id): \(error)")
            send(ctx, .error(ErrorMessage(error)), requestID: id)
            return
        }
        switch message {
        case .hello(let hello):
            handleHello(ctx, hello, id: id)
        case .pong, .error:
            // Unsolicited answers from a client are ignored (SPEC.md section 4).
            if case .error(let e) = message { logger.info("client sent ERROR \(e.code)") }
        case .welcome, .model, .modelUnchanged, .ack, .modelDelta:
            sendError(ctx, .unexpectedMessage, "a client does not send \(message.type)", requestID: id)
        case .ping, .fetch, .push:
            guard clientID != nil else {
                return sendError(ctx, .handshakeRequired, "send HELLO first", requestID: id)
            }
            switch message {
            case .ping(let nonce): send(ctx, .pong(nonce: nonce), requestID: id)
            case .fetch(let held, let wanted, let deltas):
                handleFetch(ctx, held: held, wanted: wanted, deltaEncodings: deltas, id: id)
            case .push(let push): handlePush(ctx, push, id: id)
            default: break
            }
        }
    }

    private func handleHello(_ ctx: ChannelHandlerContext, _ hello: Hello, id: UInt32) {
        let who = LogSafe.text(hello.clientID)
        guard clientID == nil else {
            return sendError(ctx, .unexpectedMessage, "HELLO was already answered on this connection", requestID: id)
        }
        let ours = FrameHeader.supportedVersions
        // Not a ClosedRange: building one with lower > upper would trap.
        let (low, high) = (max(hello.minVersion, ours.lowerBound), min(hello.maxVersion, ours.upperBound))
        guard low <= high else {
            logger.warning("client \(who) speaks \(hello.minVersion)...\(hello.maxVersion): no common version")
            return failStream(
                ctx, .unsupportedVersion,
                "client speaks \(hello.minVersion)...\(hello.maxVersion); this server speaks \(ours.lowerBound)...\(ours.upperBound)",
                requestID: id)
        }
        let tokens = context.configuration.authTokens
        guard tokens.isEmpty || tokens.contains(hello.authToken) else {
            logger.warning("client \(who) refused: \(hello.authToken.isEmpty ? "no" : "unknown") auth token")
            return failStream(ctx, .unauthorized, "a valid auth token is required", requestID: id)
        }
        clientID = hello.clientID
        logger[metadataKey: "client"] = "\(who)"
        compressions = (hello.compressions & context.configuration.compressions) | Compression.none.bit
        let model = context.store.snapshot()
        // WELCOME travels in a version-1 frame; later frames use the agreed version.
        send(
            ctx,
            .welcome(
                Welcome(
                    version: high, compressions: compressions, serverID: context.configuration.serverID,
                    modelVersion: model.version, datasets: model.datasets,
                    maxPayloadBytes: UInt32(clamping: context.limits.frame.maxPayloadBytes),
                    maxDecompressedBytes: UInt64(context.limits.frame.maxDecompressedBytes),
                    maxDatasets: context.configuration.maxDatasets, encodings: context.configuration.encodings | 1,
                    deltaEncoding: context.configuration.deltaEncoding?.bit ?? 0)),
            requestID: id)
        version = high
    }

    private func handleFetch(
        _ ctx: ChannelHandlerContext, held: UInt64, wanted: Compression, deltaEncodings: UInt8, id: UInt32
    ) {
        let model = context.store.snapshot()
        if let clientID { context.store.served(model.version, to: clientID) }
        if held != 0 && held == model.version {
            return send(ctx, .modelUnchanged(version: model.version, datasets: model.datasets), requestID: id)
        }
        let compression = compressions & wanted.bit != 0 ? wanted : .none
        var (header, payload) = model.modelFrame(requestID: id, compression: compression, version: version)
        // A version-3 client that holds a retained version and accepts the steps' encoding and
        // their blobs' compression gets the steps when their payload is smaller than the MODEL's.
        if version >= 3, let encoding = context.configuration.deltaEncoding, deltaEncodings & encoding.bit != 0,
            let steps = context.store.steps(from: held, to: model),
            steps.allSatisfy({ !$0.isEmpty && $0[0] < 8 && compressions & (1 << $0[0]) != 0 }),
            steps.reduce(0, { $0 + 4 + $1.count }) + 26 < payload.readableBytes
        {
            let bytes = MessageCodec.modelDeltaPayload(
                version: model.version, datasets: model.datasets, from: held, stepBlobs: steps)
            header = FrameWriter.header(
                type: .modelDelta, requestID: id, payloadLength: bytes.count, payloadCRC: CRC32.checksum(bytes),
                version: version)
            payload = ctx.channel.allocator.buffer(bytes: bytes)
            context.metrics.request("binary", "modelDelta")
        }
        let size = payload.readableBytes
        guard context.budget.reserve(size) else {
            logger.warning("fetch refused: memory budget exhausted (\(context.budget.used) B held)")
            return sendError(
                ctx, .overloaded, "the server is out of memory for answers; try again later", requestID: id)
        }
        let (budget, metrics) = (context.budget, context.metrics)
        let start = ContinuousClock.now
        ctx.write(wrapOutboundOut(ctx.channel.allocator.buffer(bytes: header)), promise: nil)
        let written = ctx.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { _ in
            budget.release(size)
            metrics.fetchTook(seconds(since: start))
        }
        ctx.write(wrapOutboundOut(payload), promise: written)
    }

    private func handlePush(_ ctx: ChannelHandlerContext, _ push: Push, id: UInt32) {
        let client = LogSafe.text(clientID ?? "?")
        if compressions & push.compression.bit == 0 {
            return sendError(ctx, .unsupportedCompression, "\(push.compression) was not agreed", requestID: id)
        }
        if context.lifecycle.isDraining {
            return sendError(ctx, .shuttingDown, "the server is shutting down; push again later", requestID: id)
        }
        pushInFlight = true
        let start = ContinuousClock.now
        let metrics = context.metrics
        let loopBound = NIOLoopBound((self, ctx), eventLoop: ctx.eventLoop)
        let eventLoop = ctx.eventLoop
        let logger = self.logger
        let key = push.pushID == 0 ? nil : PushKey(clientID: clientID ?? push.clientID, pushID: push.pushID)
        let update = ModelStore.Update(
            tensors: push.tensors, datasets: push.datasets, key: key, clientID: clientID ?? push.clientID,
            baseVersion: push.baseVersion, strictBase: version >= 2, isDelta: push.isDelta)
        let submitted = context.submitCounted(update) { result in
            switch result {
            case .success(let ack) where ack.replayed:
                logger.info(
                    "repeated push \(push.pushID) from \(client): answered with its ACK, version \(ack.version)")
            case .success(let ack):
                logger.info(
                    "applied update from \(client): \(push.datasets) samples, version \(ack.version) (\(ack.datasets) samples)"
                )
            case .failure(let rejection):
                logger.warning("rejected update from \(client): \(rejection)")
            }
            eventLoop.execute {
                let (handler, ctx) = loopBound.value
                handler.pushInFlight = false
                metrics.pushTook(seconds(since: start))
                switch result {
                case .success(let ack):
                    handler.send(ctx, .ack(version: ack.version, datasets: ack.datasets), requestID: id)
                case .failure(let r):
                    handler.send(ctx, .error(ErrorMessage(code: r.code, message: r.message)), requestID: id)
                }
                ctx.flush()
                handler.process(ctx)
            }
        }
        if !submitted {
            pushInFlight = false
            logger.warning("push refused: memory budget exhausted (\(context.budget.used) B held)")
            sendError(
                ctx, .overloaded, "the server is out of memory for pushes waiting to be stored; try again later",
                requestID: id)
        }
    }
}
