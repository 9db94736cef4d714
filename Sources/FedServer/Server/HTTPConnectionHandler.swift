import FedCodec
import Logging
import NIOCore
import NIOHTTP1

/// The original demo's HTTP interface (Protocol/SPEC.md, section 10): one
/// route, `/`, GET or POST, form fields `id`, `send`, `datasets`, `weights`.
///
/// `send=True` applies an update (same validation, same durable commit as a
/// binary `PUSH`) and answers `200 Success`, or `400` with a JSON error and
/// the model unchanged. Anything else answers the model as the original's
/// JSON (`{"id", "datasets", "weights"}`), encoded once per model version.
/// Bodies over `maxHTTPBodyBytes` get `413` and the connection is closed.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let context: ServerContext
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false
    private var requestTimer: Scheduled<Void>?
    private var logger: Logger

    init(context: ServerContext) {
        self.context = context
        self.logger = context.logger
    }

    func handlerAdded(context ctx: ChannelHandlerContext) {
        logger[metadataKey: "peer"] = "\(ctx.remoteAddress?.description ?? "?")"
    }

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = nil
            tooLarge = false
            if let length = h.headers.first(name: "content-length").flatMap(Int.init),
                length > context.configuration.maxHTTPBodyBytes
            {
                tooLarge = true
            }
            requestTimer = ctx.closeAfter(
                context.configuration.requestTimeout, logger: logger, reason: "HTTP request not complete")
        case .body(var chunk):
            guard !tooLarge else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > context.configuration.maxHTTPBodyBytes {
                tooLarge = true
                body = nil
                return
            }
            if body == nil {
                body = chunk
            } else {
                body!.writeBuffer(&chunk)
            }
        case .end:
            requestTimer?.cancel()
            requestTimer = nil
            guard let head else { return }
            self.head = nil
            if tooLarge {
                logger.warning("rejected HTTP request: body over \(context.configuration.maxHTTPBodyBytes) bytes")
                respond(
                    ctx, head, status: .payloadTooLarge, json: errorJSON(.frameTooLarge, "request body too large"),
                    close: true)
                return
            }
            handle(ctx, head, body: body.map { Array($0.readableBytesView) } ?? [])
        }
    }

    func channelInactive(context ctx: ChannelHandlerContext) {
        requestTimer?.cancel()
        ctx.fireChannelInactive()
    }

    private func handle(_ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, body: [UInt8]) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard path.first == "/" || path.first == "" else {
            respond(ctx, head, status: .notFound, json: errorJSON(.unexpectedMessage, "only / is served"))
            return
        }
        guard head.method == .GET || head.method == .POST else {
            respond(ctx, head, status: .methodNotAllowed, json: errorJSON(.unexpectedMessage, "use GET or POST"))
            return
        }
        var fields = path.count > 1 ? FormFields.parse(Array(path[1].utf8)) : [:]
        if head.method == .POST { fields.merge(FormFields.parse(body)) { _, new in new } }
        let client = fields["id"].map { String(decoding: $0, as: UTF8.self) } ?? "?"
        let send = fields["send"].map { String(decoding: $0, as: UTF8.self) }
        guard send == "True" else {
            let model = context.store.snapshot()
            respond(ctx, head, status: .ok, body: model.legacyJSON(serverID: context.configuration.serverID).buffer)
            return
        }
        guard let datasetsText = fields["datasets"].map({ String(decoding: $0, as: UTF8.self) }),
            let datasets = UInt64(datasetsText.filter { !$0.isWhitespace })
        else {
            return reject(ctx, head, client, RejectedUpdate(.invalidDatasets, "datasets must be a positive integer"))
        }
        guard let weightsText = fields["weights"] else {
            return reject(ctx, head, client, RejectedUpdate(.malformedPayload, "weights field missing"))
        }
        let tensors: [Tensor]
        do throws(WeightsJSONParser.Failure) {
            tensors = try WeightsJSONParser.parse(weightsText)
        } catch {
            return reject(ctx, head, client, RejectedUpdate(.malformedPayload, error.description))
        }
        let loopBound = NIOLoopBound((self, ctx), eventLoop: ctx.eventLoop)
        let eventLoop = ctx.eventLoop
        let logger = self.logger
        context.committer.submit(tensors, datasets: datasets) { result in
            if case .success(let s) = result {
                logger.info(
                    "applied update from \(client) (HTTP): \(datasets) samples, version \(s.version) (\(s.datasets) samples)"
                )
            }
            eventLoop.execute {
                let (handler, ctx) = loopBound.value
                switch result {
                case .success:
                    handler.respond(
                        ctx, head, status: .ok, body: ctx.channel.allocator.buffer(string: "Success"),
                        type: "text/html; charset=utf-8")
                case .failure(let rejection):
                    handler.reject(ctx, head, client, rejection)
                }
            }
        }
    }

    private func reject(_ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, _ client: String, _ r: RejectedUpdate) {
        logger.warning("rejected update from \(client) (HTTP): \(r)")
        respond(
            ctx, head, status: r.code.isRetryableByDefault ? .serviceUnavailable : .badRequest,
            json: errorJSON(r.code, r.message))
    }

    private func errorJSON(_ code: ErrorCode, _ message: String) -> [UInt8] {
        var out = Array("{\"error\": ".utf8)
        LegacyJSON.appendString(code.name, to: &out)
        out += Array(", \"code\": \(code.rawValue), \"message\": ".utf8)
        LegacyJSON.appendString(message, to: &out)
        out += Array("}".utf8)
        return out
    }

    private func respond(
        _ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, status: HTTPResponseStatus, json: [UInt8],
        close: Bool = false
    ) {
        respond(ctx, head, status: status, body: ctx.channel.allocator.buffer(bytes: json), close: close)
    }

    private func respond(
        _ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, status: HTTPResponseStatus, body: ByteBuffer,
        type: String = "application/json", close: Bool = false
    ) {
        let keepAlive = head.isKeepAlive && !close
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Server", value: "fed")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        ctx.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        ctx.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let done = ctx.writeAndFlush(wrapOutboundOut(.end(nil)))
        let channel = ctx.channel
        if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
    }
}
