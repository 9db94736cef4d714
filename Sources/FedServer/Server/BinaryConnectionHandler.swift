import FedCodec
import Logging
import NIOCore

/// One connection of the binary protocol (Protocol/SPEC.md).
///
/// Frames are decoded incrementally and answered strictly in order
/// (pipelining). A push waits for its durable commit before the next frame
/// of the connection is handled. Backpressure: while the channel is not
/// writable (a slow reader of large answers) or a push is in flight, the
/// handler stops asking the socket for more bytes, so the server buffers at
/// most what is already in flight. A frame that has started to arrive must
/// complete within `requestTimeout`. Frame-level errors are answered with
/// `ERROR` and close the connection; payload errors are answered and the
/// connection goes on.
final class BinaryConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let context: ServerContext
    private var decoder: FrameDecoder
    private var clientID: String?
    private var compressions: UInt8 = 1
    private var pushInFlight = false
    private var readPending = false
    private var closing = false
    private var requestTimer: Scheduled<Void>?
    private var logger: Logger

    init(context: ServerContext) {
        self.context = context
        self.decoder = FrameDecoder(limits: context.configuration.limits)
        self.logger = context.logger
    }

    func handlerAdded(context ctx: ChannelHandlerContext) {
        logger[metadataKey: "peer"] = "\(ctx.remoteAddress?.description ?? "?")"
    }

    // MARK: Inbound

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        decoder.append(buffer.readableBytesView)
        process(ctx)
    }

    func channelWritabilityChanged(context ctx: ChannelHandlerContext) {
        if ctx.channel.isWritable { process(ctx) }
        ctx.fireChannelWritabilityChanged()
    }

    func channelInactive(context ctx: ChannelHandlerContext) {
        requestTimer?.cancel()
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

    /// Handles every complete frame, in order, until one must wait.
    private func process(_ ctx: ChannelHandlerContext) {
        var wrote = false
        while !pushInFlight && !closing && ctx.channel.isWritable {
            let frame: Frame
            do throws(CodecError) {
                guard let next = try decoder.next() else { break }
                frame = next
            } catch {
                logger.warning("rejected frame: \(error)")
                send(ctx, .error(ErrorMessage(error)), requestID: 0)
                closing = true
                let channel = ctx.channel
                ctx.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                    channel.close(promise: nil)
                }
                return
            }
            handle(ctx, frame)
            wrote = true
        }
        if wrote { ctx.flush() }
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
                context.configuration.requestTimeout, logger: logger, reason: "a frame did not arrive")
        }
    }

    private func send(_ ctx: ChannelHandlerContext, _ message: Message, requestID: UInt32) {
        let bytes = MessageCodec.encode(message, requestID: requestID, level: 1)
        ctx.write(wrapOutboundOut(ctx.channel.allocator.buffer(bytes: bytes)), promise: nil)
    }

    private func sendError(_ ctx: ChannelHandlerContext, _ code: ErrorCode, _ text: String, requestID: UInt32) {
        send(ctx, .error(ErrorMessage(code: code, message: text)), requestID: requestID)
    }

    private func handle(_ ctx: ChannelHandlerContext, _ frame: Frame) {
        let id = frame.header.requestID
        let message: Message
        do throws(CodecError) {
            message = try MessageCodec.decode(frame, limits: context.configuration.limits)
        } catch {
            logger.warning("rejected \(frame.header.type) request \(id): \(error)")
            send(ctx, .error(ErrorMessage(error)), requestID: id)
            return
        }
        switch message {
        case .hello(let hello):
            let ours = FrameHeader.supportedVersions
            // Not a ClosedRange: building one with lower > upper would trap.
            let (low, high) = (max(hello.minVersion, ours.lowerBound), min(hello.maxVersion, ours.upperBound))
            guard low <= high else {
                logger.warning(
                    "client \(hello.clientID) speaks \(hello.minVersion)...\(hello.maxVersion): no common version")
                sendError(
                    ctx, .unsupportedVersion,
                    "client speaks \(hello.minVersion)...\(hello.maxVersion); this server speaks \(ours.lowerBound)...\(ours.upperBound)",
                    requestID: id)
                closing = true
                let channel = ctx.channel
                ctx.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                    channel.close(promise: nil)
                }
                return
            }
            let tokens = context.configuration.authTokens
            guard tokens.isEmpty || tokens.contains(hello.authToken) else {
                logger.warning(
                    "client \(hello.clientID) refused: \(hello.authToken.isEmpty ? "no" : "unknown") auth token")
                sendError(ctx, .unauthorized, "a valid auth token is required", requestID: id)
                closing = true
                let channel = ctx.channel
                ctx.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                    channel.close(promise: nil)
                }
                return
            }
            clientID = hello.clientID
            logger[metadataKey: "client"] = "\(hello.clientID)"
            compressions = (hello.compressions & context.configuration.compressions) | Compression.none.bit
            let model = context.store.snapshot()
            send(
                ctx,
                .welcome(
                    Welcome(
                        version: high, compressions: compressions,
                        serverID: context.configuration.serverID,
                        modelVersion: model.version, datasets: model.datasets,
                        maxPayloadBytes: UInt32(clamping: context.configuration.limits.maxPayloadBytes))),
                requestID: id)
        case .ping(let nonce):
            send(ctx, .pong(nonce: nonce), requestID: id)
        case .pong, .error:
            break
        case .welcome, .model, .modelUnchanged, .ack:
            sendError(ctx, .unexpectedMessage, "a client does not send \(message.type)", requestID: id)
        case .fetch(let held, let wanted):
            guard clientID != nil else { return sendError(ctx, .handshakeRequired, "send HELLO first", requestID: id) }
            let model = context.store.snapshot()
            if held != 0 && held == model.version {
                send(ctx, .modelUnchanged(version: model.version, datasets: model.datasets), requestID: id)
                return
            }
            let compression = compressions & wanted.bit != 0 ? wanted : .none
            let (header, payload) = model.modelFrame(requestID: id, compression: compression)
            ctx.write(wrapOutboundOut(ctx.channel.allocator.buffer(bytes: header)), promise: nil)
            ctx.write(wrapOutboundOut(payload), promise: nil)
        case .push(let push):
            guard let client = clientID else {
                return sendError(ctx, .handshakeRequired, "send HELLO first", requestID: id)
            }
            if compressions & push.compression.bit == 0 {
                return sendError(ctx, .unsupportedCompression, "\(push.compression) was not agreed", requestID: id)
            }
            pushInFlight = true
            let loopBound = NIOLoopBound((self, ctx), eventLoop: ctx.eventLoop)
            let eventLoop = ctx.eventLoop
            let logger = self.logger
            context.committer.submit(push.tensors, datasets: push.datasets) { result in
                switch result {
                case .success(let s):
                    logger.info(
                        "applied update from \(client): \(push.datasets) samples, version \(s.version) (\(s.datasets) samples)"
                    )
                case .failure(let rejection):
                    logger.warning("rejected update from \(client): \(rejection)")
                }
                eventLoop.execute {
                    let (handler, ctx) = loopBound.value
                    handler.pushInFlight = false
                    switch result {
                    case .success(let s):
                        handler.send(ctx, .ack(version: s.version, datasets: s.datasets), requestID: id)
                    case .failure(let r):
                        handler.send(ctx, .error(ErrorMessage(code: r.code, message: r.message)), requestID: id)
                    }
                    ctx.flush()
                    handler.process(ctx)
                }
            }
        }
    }
}
