import Dispatch
import FedCodec
import Logging
import NIOCore
import NIOHTTP1

/// The original demo's HTTP interface (Protocol/SPEC.md, section 10): one
/// route, `/`, GET or POST, form fields `id`, `send`, `datasets`, `weights`.
///
/// `send=True` applies an update (same validation, same durable commit as a
/// binary `PUSH`) and answers `200 Success`, or an error with a JSON body and
/// the model unchanged. Anything else answers the model as the original's
/// JSON (`{"id", "datasets", "weights"}`), encoded once per model version.
///
/// Checked on the request head, before any body byte is read: the `Origin`
/// (403 unless allowed), the bearer token when tokens are set (401), the
/// declared `Content-Length` (413); then `Expect: 100-continue` is answered.
/// Every error answer closes the connection. Body bytes count against the
/// memory budget (503 when it is exhausted), and so do answers until the
/// socket has taken them; a request is not handled while the previous answer
/// is still queued past the write watermark (a client that does not read
/// holds one answer, not one per request). Form and JSON parsing run off the
/// event loop.
final class HTTPConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let context: ServerContext
    private let service: FederationService
    private let gate: HTTPRequestGate
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var lease: BudgetLease
    private var state = HTTPConnectionState<(HTTPRequestHead, ByteBuffer?)>()
    private var logger: Logger

    init(context: ServerContext, gate: HTTPRequestGate) {
        self.context = context
        self.service = context.service
        self.gate = gate
        self.lease = context.service.requestLease()
        self.logger = context.logger
    }

    func handlerAdded(context ctx: ChannelHandlerContext) {
        logger[metadataKey: "peer"] = "\(ctx.remoteAddress?.description ?? "?")"
    }

    // MARK: Inbound

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = nil
            state.headArrived()
            checkHead(ctx, h)
        case .body(var chunk):
            guard !state.discarding else { return }
            let size = (body?.readableBytes ?? 0) + chunk.readableBytes
            if size > context.limits.maxHTTPBodyBytes {
                return fail(
                    ctx, .payloadTooLarge, .frameTooLarge, "request body over \(context.limits.maxHTTPBodyBytes) bytes")
            }
            // Without a Content-Length (chunked) the buffer grows as it must: count what it holds.
            let capacity = max(body?.capacity ?? 0, size)
            guard lease.resize(to: max(lease.held, capacity)) else { return refuseForMemory(ctx) }
            if body == nil {
                body = ctx.channel.allocator.buffer(capacity: max(lease.held, chunk.readableBytes))
            }
            body!.writeBuffer(&chunk)
        case .end:
            gate.requestArrived()
            guard !state.discarding, let head else { return }
            self.head = nil
            let request = (head, body)
            body = nil
            if let now = state.requestArrived(request, writable: ctx.channel.isWritable) {
                handle(ctx, now.0, body: now.1)
            }
        }
    }

    func channelWritabilityChanged(context ctx: ChannelHandlerContext) {
        if ctx.channel.isWritable, let (head, body) = state.becameWritable() {
            handle(ctx, head, body: body)
        }
        resumeReading(ctx)
        ctx.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context ctx: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            if state.inputDidClose(requestInProgress: head != nil) { ctx.close(promise: nil) }
            return
        }
        ctx.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context ctx: ChannelHandlerContext, error: Error) {
        // HTTPServerProtocolErrorHandler has answered a parser error with 400; nothing more can be read.
        logger.info("closing HTTP connection: \(error)")
        ctx.close(promise: nil)
    }

    func channelInactive(context ctx: ChannelHandlerContext) {
        lease.close()
        ctx.fireChannelInactive()
    }

    // MARK: Outbound: reads are held while a request is handled or waits.

    func read(context ctx: ChannelHandlerContext) {
        if state.readRequested(writable: ctx.channel.isWritable) == .read { ctx.read() }
    }

    private func resumeReading(_ ctx: ChannelHandlerContext) {
        if state.resumeReading(writable: ctx.channel.isWritable) == .read { ctx.read() }
    }

    // MARK: Requests

    /// The checks that need only the head; a failure is answered at once.
    private func checkHead(_ ctx: ChannelHandlerContext, _ h: HTTPRequestHead) {
        let config = context.configuration
        if let origin = h.headers.first(name: "origin"), !config.http.allowedOrigins.contains(origin) {
            logger.warning("HTTP request refused: origin \(LogSafe.text(origin)) is not allowed")
            return fail(ctx, .forbidden, .unauthorized, "cross-origin requests are not allowed")
        }
        let given = h.headers.first(name: "authorization").flatMap { value -> String? in
            let parts = value.split(separator: " ", maxSplits: 1)
            return parts.count == 2 && parts[0].lowercased() == "bearer" ? String(parts[1]) : nil
        }
        guard service.isAuthorized(token: given) else {
            logger.warning("HTTP request refused: \(given == nil ? "no" : "unknown") bearer token")
            return fail(
                ctx, .unauthorized, .unauthorized, "a valid token is required (Authorization: Bearer TOKEN)",
                extraHeaders: [("WWW-Authenticate", "Bearer")])
        }
        let lengths = h.headers["content-length"]
        if let length = lengths.first.flatMap({ Int($0) }), length > context.limits.maxHTTPBodyBytes {
            logger.warning("HTTP request refused: Content-Length \(length) over \(context.limits.maxHTTPBodyBytes)")
            return fail(
                ctx, .payloadTooLarge, .frameTooLarge, "request body over \(context.limits.maxHTTPBodyBytes) bytes")
        }
        if let length = lengths.first.flatMap({ Int($0) }), length > 0 {
            // The body's whole size is known: hold it in the budget before any of it is read.
            guard lease.resize(to: length) else { return refuseForMemory(ctx) }
        }
        if h.headers.first(name: "expect")?.lowercased() == "100-continue" {
            ctx.writeAndFlush(
                wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .continue))), promise: nil)
        }
    }

    private func handle(_ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, body: ByteBuffer?) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        if path.first == "/metrics" && head.method == .GET {
            service.record(.request(.http, "metrics"))
            return respond(
                ctx, head, status: .ok, body: ctx.channel.allocator.buffer(string: context.renderMetrics()),
                type: "text/plain; version=0.0.4; charset=utf-8")
        }
        if let target = path.first, target == "/v1/model" || target.hasPrefix("/v1/model/"),
            head.method == .GET || head.method == .HEAD
        {
            return serveModel(ctx, head, String(target))
        }
        if path.first == "/v1/evaluation" { return serveEvaluation(ctx, head, body: body) }
        guard path.first == "/" || path.first == "" else {
            return respondError(
                ctx, head, .notFound, .unexpectedMessage, "only /, /v1/model, /v1/evaluation and /metrics are served")
        }
        guard head.method == .GET || head.method == .POST else {
            return respondError(ctx, head, .methodNotAllowed, .unexpectedMessage, "use GET or POST")
        }
        state.startedWork()
        let query = path.count > 1 ? Array(path[1].utf8) : []
        let bodyBytes = head.method == .POST ? body.map { Array($0.readableBytesView) } ?? [] : []
        // Parsing holds the body, its decoded form and the tensors at once: about three times the body.
        guard lease.resize(to: 3 * (bodyBytes.count + query.count)) else {
            return refuseForMemory(ctx, head: head)
        }
        let loopBound = NIOLoopBound((self, ctx), eventLoop: ctx.eventLoop)
        let eventLoop = ctx.eventLoop
        // Parsing a 5 MB form of JSON numbers takes milliseconds: not on the event loop.
        DispatchQueue.global().async {
            let request = LegacyRequest(query: query, body: bodyBytes)
            eventLoop.execute {
                let (handler, ctx) = loopBound.value
                handler.handle(ctx, head, request)
            }
        }
    }

    private func handle(_ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, _ request: LegacyRequest) {
        lease.close()
        switch request.kind {
        case .fetch:
            service.record(.request(.http, "fetch"))
            let answer = service.legacyFetch(clientID: request.clientID).legacyJSON(
                serverID: context.configuration.network.serverID
            ).buffer
            switch service.holdAnswer(bytes: answer.readableBytes, kind: .fetch) {
            case .failure(let refusal):
                respondError(ctx, head, .serviceUnavailable, refusal.code, refusal.message)
            case .success(let hold):
                respond(ctx, head, status: .ok, body: answer) { hold.written() }
            }
        case .invalid(let rejection):
            logger.warning("rejected update from \(LogSafe.text(request.clientID)) (HTTP): \(rejection)")
            reject(ctx, head, ErrorMessage(code: rejection.code, message: rejection.message))
        case .push(let tensors, let datasets):
            service.record(.request(.http, "push"))
            let loopBound = NIOLoopBound((self, ctx), eventLoop: ctx.eventLoop)
            let eventLoop = ctx.eventLoop
            let refusal = service.push(
                .init(tensors: tensors, datasets: datasets), session: .http(clientID: request.clientID)
            ) { result in
                eventLoop.execute {
                    let (handler, ctx) = loopBound.value
                    switch result {
                    case .success:
                        handler.respond(
                            ctx, head, status: .ok, body: ctx.channel.allocator.buffer(string: "Success"),
                            type: "text/html; charset=utf-8")
                    case .failure(let error):
                        handler.reject(ctx, head, error)
                    }
                }
            }
            if let refusal { reject(ctx, head, refusal) }
        }
    }

    /// `GET /v1/model` (the current version, revalidated by ETag) and
    /// `GET /v1/model/VERSION` (one version, immutable): the MODEL payload in
    /// shuffle-zlib (Protocol/SPEC.md section 10.1), cacheable by any HTTP
    /// cache unless tokens are set and the model is not declared public.
    private func serveModel(_ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, _ target: String) {
        service.record(.request(.http, "model"))
        let current = service.current()
        let snapshot: ModelSnapshot
        let immutable: Bool
        if target == "/v1/model" {
            snapshot = current
            immutable = false
        } else {
            let name = target.dropFirst("/v1/model/".count)
            guard let version = ModelResource.version(name) else {
                return respondError(
                    ctx, head, .notFound, .unexpectedMessage,
                    "no such resource: a version is named in decimal without sign or leading zeros (/v1/model/\(current.version))"
                )
            }
            guard let found = service.retained(version: version) else {
                return respondError(
                    ctx, head, .notFound, .unexpectedMessage,
                    "version \(version) is not held; the current one is \(current.version)")
            }
            snapshot = found
            immutable = true
        }
        let etag = "\"v\(snapshot.version)\""
        let scope = service.modelIsPublic ? "public" : "private"
        var extra = [
            ("ETag", etag), ("X-Fed-Model-Version", "\(snapshot.version)"),
            ("Cache-Control", immutable ? "\(scope), max-age=31536000, immutable" : "\(scope), no-cache"),
        ]
        if !immutable { extra.append(("Content-Location", "/v1/model/\(snapshot.version)")) }
        if ModelResource.ifNoneMatch(head.headers["if-none-match"], matches: etag) {
            return respond(
                ctx, head, status: .notModified, body: ctx.channel.allocator.buffer(capacity: 0),
                type: "application/vnd.fed.model", extraHeaders: extra, noBody: true)
        }
        let payload = snapshot.modelPayload(.shuffleZlib)
        let size = payload.buffer.readableBytes
        switch service.holdAnswer(bytes: size, kind: .other) {
        case .failure(let refusal):
            respondError(ctx, head, .serviceUnavailable, refusal.code, refusal.message)
        case .success(let hold):
            respond(
                ctx, head, status: .ok,
                body: head.method == .HEAD ? ctx.channel.allocator.buffer(capacity: 0) : payload.buffer,
                type: "application/vnd.fed.model", extraHeaders: extra, contentLength: size
            ) { hold.written() }
        }
    }

    /// `POST /v1/evaluation` (a JSON evaluation report, answered `200` with
    /// `{"model_version": N, "datasets": N}`, the current model's) and `GET
    /// /v1/evaluation` (the history as JSON, Protocol/SPEC.md section 12.9).
    private func serveEvaluation(_ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, body: ByteBuffer?) {
        lease.close()
        switch head.method {
        case .GET:
            service.record(.request(.http, "evaluationHistory"))
            respond(ctx, head, status: .ok, body: ctx.channel.allocator.buffer(bytes: service.evaluationHistoryJSON()))
        case .POST:
            service.record(.request(.http, "evaluationReport"))
            switch service.httpEvaluationReport(body.map { Array($0.readableBytesView) } ?? []) {
            case .success(let ack):
                respond(
                    ctx, head, status: .ok,
                    body: ctx.channel.allocator.buffer(
                        string: "{\"datasets\": \(ack.datasets), \"model_version\": \(ack.version)}"))
            case .failure(let error):
                reject(ctx, head, error)
            }
        default:
            respondError(ctx, head, .methodNotAllowed, .unexpectedMessage, "use GET or POST on /v1/evaluation")
        }
    }

    /// Answers a push the service refused or rejected: 503 when it may succeed later, 400 otherwise.
    private func reject(_ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, _ error: ErrorMessage) {
        respondError(
            ctx, head, error.code.isRetryableByDefault ? .serviceUnavailable : .badRequest, error.code, error.message)
    }

    private func refuseForMemory(_ ctx: ChannelHandlerContext, head: HTTPRequestHead? = nil) {
        logger.warning("HTTP request refused: memory budget exhausted (\(context.budget.used) B held)")
        let refusal = FederationService.outOfMemoryForRequests
        if let head {
            lease.close()
            return respondError(ctx, head, .serviceUnavailable, refusal.code, refusal.message)
        }
        fail(ctx, .serviceUnavailable, refusal.code, refusal.message)
    }

    /// Answers an error for the request whose head has just arrived (its body is not read) and closes.
    private func fail(
        _ ctx: ChannelHandlerContext, _ status: HTTPResponseStatus, _ code: ErrorCode, _ message: String,
        extraHeaders: [(String, String)] = []
    ) {
        state.discardRest()
        body = nil
        lease.close()
        guard let head else { return ctx.close(promise: nil) }
        self.head = nil
        respondError(ctx, head, status, code, message, extraHeaders: extraHeaders)
    }

    private func respondError(
        _ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ code: ErrorCode,
        _ message: String, extraHeaders: [(String, String)] = []
    ) {
        service.record(.answeredError(code))
        var extra = extraHeaders
        if status == .serviceUnavailable { extra.append(("Retry-After", "1")) }
        respond(
            ctx, head, status: status, body: ctx.channel.allocator.buffer(bytes: errorJSON(code, message)),
            close: true, extraHeaders: extra)
    }

    private func respond(
        _ ctx: ChannelHandlerContext, _ head: HTTPRequestHead, status: HTTPResponseStatus, body: ByteBuffer,
        type: String = "application/json", close: Bool = false, extraHeaders: [(String, String)] = [],
        contentLength: Int? = nil, noBody: Bool = false, written: (@Sendable () -> Void)? = nil
    ) {
        let keepAlive = head.isKeepAlive && !close && !state.inputClosed
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        if !noBody { headers.add(name: "Content-Length", value: String(contentLength ?? body.readableBytes)) }
        headers.add(name: "Server", value: "fed")
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        ctx.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        let bodyWritten = ctx.eventLoop.makePromise(of: Void.self)
        if let written { bodyWritten.futureResult.whenComplete { _ in written() } }
        ctx.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: bodyWritten)
        let done = ctx.writeAndFlush(wrapOutboundOut(.end(nil)))
        let channel = ctx.channel
        if !keepAlive {
            state.discardRest()
            _ = state.answered(writable: false)
            done.whenComplete { _ in channel.close(promise: nil) }
        } else if let (nextHead, nextBody) = state.answered(writable: ctx.channel.isWritable) {
            // A pipelined request waited for this answer.
            handle(ctx, nextHead, body: nextBody)
        } else {
            resumeReading(ctx)
        }
    }
}

/// A request of the original's form protocol, parsed (off the event loop).
struct LegacyRequest: Sendable {
    enum Kind: Sendable {
        case fetch
        case push(tensors: [Tensor], datasets: UInt64)
        case invalid(RejectedUpdate)
    }
    var clientID: String
    var kind: Kind

    init(query: [UInt8], body: [UInt8]) {
        var fields = FormFields.parse(query)
        fields.merge(FormFields.parse(body)) { _, new in new }
        clientID = fields["id"].map { String(decoding: $0, as: UTF8.self) } ?? "?"
        guard fields["send"].map({ String(decoding: $0, as: UTF8.self) }) == "True" else {
            kind = .fetch
            return
        }
        guard let datasetsText = fields["datasets"].map({ String(decoding: $0, as: UTF8.self) }),
            let datasets = UInt64(datasetsText.filter { !$0.isWhitespace })
        else {
            kind = .invalid(RejectedUpdate(.invalidDatasets, "datasets must be a positive integer"))
            return
        }
        guard let weightsText = fields["weights"] else {
            kind = .invalid(RejectedUpdate(.malformedPayload, "weights field missing"))
            return
        }
        do throws(WeightsJSONParser.Failure) {
            kind = .push(tensors: try WeightsJSONParser.parse(weightsText), datasets: datasets)
        } catch {
            kind = .invalid(RejectedUpdate(.malformedPayload, error.description))
        }
    }
}
