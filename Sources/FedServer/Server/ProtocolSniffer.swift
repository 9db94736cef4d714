import Dispatch
import FedCodec
import NIOCore
import NIOHTTP1
import NIOSSL

/// Decides from a connection's first bytes which protocol it speaks
/// (Protocol/SPEC.md, section 10's table), then replaces itself with that
/// protocol's handlers and passes the bytes on.
///
/// - `FEDW`: the binary protocol;
/// - an HTTP method and a space (`GET `, `POST `, ...): HTTP/1.1;
/// - 0x16 (a TLS handshake record) on a server with TLS: TLS, then a second
///   sniffer decides inside the TLS stream;
/// - anything else: `ERROR bad_magic` (request id 0), then close.
///
/// With TLS configured, clear text (FEDW or HTTP outside TLS) is refused
/// unless `allowPlaintext` says otherwise.
///
/// The bytes that decide must arrive within `firstBytesTimeout`, or the
/// connection is closed. A connection admitted only to be refused (over a
/// connection limit) gets `ERROR overloaded` (binary) or `503` (HTTP) once its
/// protocol is known, and is closed.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private static let methods = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"].map {
        Array($0.utf8) + [0x20]
    }
    private static let longestPrefix = 8
    private let context: ServerContext
    private let refusal: String?
    /// True for the sniffer inside a TLS stream.
    private let insideTLS: Bool
    private var buffered: ByteBuffer?
    private var deadline: Scheduled<Void>?

    /// `refusal`: why this connection is refused (nil: it is served).
    init(context: ServerContext, refusal: String? = nil, insideTLS: Bool = false) {
        self.context = context
        self.refusal = refusal
        self.insideTLS = insideTLS
    }

    enum Verdict { case binary, http, undecided, unknown }

    static func classify(_ bytes: ByteBufferView) -> Verdict {
        let prefix = Array(bytes.prefix(longestPrefix))
        if prefix.isEmpty { return .undecided }
        let magicLength = min(prefix.count, 4)
        if prefix[0..<magicLength].elementsEqual(FrameHeader.magic[0..<magicLength]) {
            return magicLength == 4 ? .binary : .undecided
        }
        var undecided = false
        for method in methods {
            let n = min(prefix.count, method.count)
            if prefix[0..<n].elementsEqual(method[0..<n]) {
                if n == method.count { return .http }
                undecided = true
            }
        }
        return undecided ? .undecided : .unknown
    }

    func handlerAdded(context ctx: ChannelHandlerContext) {
        deadline = ctx.closeAfter(
            TimeAmount(context.configuration.network.firstBytesTimeout), logger: context.logger,
            reason: "the first bytes of a connection did not arrive", level: .info)
    }

    func handlerRemoved(context ctx: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var b = buffered {
            b.writeBuffer(&incoming)
            buffered = b
        } else {
            buffered = incoming
        }
        guard let bytes = buffered else { return }
        let peer = ctx.remoteAddress?.description ?? "?"
        if !insideTLS, let tls = context.tls, bytes.readableBytesView.first == 0x16 {
            deadline?.cancel()
            return startTLS(ctx, tls)
        }
        let verdict = Self.classify(bytes.readableBytesView)
        if !insideTLS, context.tls != nil, context.configuration.security.tls?.allowPlaintext != true,
            verdict == .binary || verdict == .http
        {
            deadline?.cancel()
            context.logger.info("connection from \(peer) refused: clear text on a TLS port")
            if verdict == .binary {
                ctx.sendErrorAndClose(.unauthorized, "this port takes TLS only: connect with TLS", requestID: 0)
            } else {
                ctx.writeRawHTTP(
                    status: "400 Bad Request", json: errorJSON(.unauthorized, "this port takes HTTPS only"))
            }
            return
        }
        if let refusal, verdict != .undecided {
            deadline?.cancel()
            return refuse(ctx, verdict: verdict, bytes: bytes, reason: refusal)
        }
        switch verdict {
        case .undecided:
            return
        case .unknown:
            deadline?.cancel()
            context.logger.warning(
                "closing connection from \(peer): neither FEDW nor HTTP (first bytes \(bytes.readableBytesView.prefix(8).map { String($0, radix: 16) }))"
            )
            ctx.sendErrorAndClose(.badMagic, "a connection must start with FEDW or an HTTP method", requestID: 0)
        case .binary:
            deadline?.cancel()
            do {
                try ctx.pipeline.syncOperations.addHandler(
                    BinaryConnectionHandler(context: context), position: .after(self))
                forward(ctx)
            } catch {
                ctx.close(promise: nil)
            }
        case .http where !context.configuration.http.enabled:
            deadline?.cancel()
            context.logger.warning("closing HTTP connection from \(peer): HTTP is disabled")
            ctx.writeRawHTTP(status: "404 Not Found", json: errorJSON(.unexpectedMessage, "HTTP is disabled"))
        case .http:
            deadline?.cancel()
            do {
                let gate = HTTPRequestGate(context: context)
                let http = HTTPConnectionHandler(context: context, gate: gate)
                let sync = ctx.pipeline.syncOperations
                try sync.addHandler(http, position: .after(self))
                try sync.configureHTTPServerPipeline(
                    position: .after(self), withPipeliningAssistance: true, withErrorHandling: true)
                try sync.addHandler(gate, position: .after(self))
                forward(ctx)
            } catch {
                ctx.close(promise: nil)
            }
        }
    }

    /// Puts TLS in front of the rest of the pipeline and a sniffer for the
    /// bytes inside it; passes the handshake's bytes on. A handshake over the
    /// limits (`TLSHandshakeLimits`) is closed instead, before any TLS work.
    private func startTLS(_ ctx: ChannelHandlerContext, _ tls: NIOSSLContext) {
        let limiter = context.handshakes
        let metrics = context.metrics
        let now = DispatchTime.now().uptimeNanoseconds
        if let refused = limiter.admit(AddressKey(ctx.remoteAddress), now: now) {
            metrics.tlsHandshakeRefused(refused)
            let peer = ctx.remoteAddress?.ipAddress ?? "?"
            if let line = limiter.noteRefusal(refused, peer: peer, now: now) { context.logger.warning("\(line)") }
            buffered = nil
            ctx.close(promise: nil)
            return
        }
        metrics.tlsHandshakesInProgress.add(1, ordering: .relaxed)
        let slot = HandshakeSlot {
            limiter.release()
            metrics.tlsHandshakesInProgress.subtract(1, ordering: .relaxed)
        }
        do {
            let handler = NIOSSLServerHandler(context: tls)
            let sync = ctx.pipeline.syncOperations
            try sync.addHandler(handler, position: .after(self))
            try sync.addHandler(slot, position: .after(handler))
            try sync.addHandler(
                ProtocolSniffer(context: context, refusal: refusal, insideTLS: true), position: .after(slot))
            forward(ctx)
        } catch {
            slot.done()
            ctx.close(promise: nil)
        }
    }

    /// A failed TLS handshake (untrusted or missing client certificate,
    /// garbage after 0x16) ends here: logged, and the connection closed.
    func errorCaught(context ctx: ChannelHandlerContext, error: any Error) {
        let peer = ctx.remoteAddress?.description ?? "?"
        context.logger.info("closing connection from \(peer): \(TLSDiagnostics.reason(error))")
        ctx.close(promise: nil)
    }

    /// Tells a client over a limit to come back later, in its protocol, and closes.
    private func refuse(_ ctx: ChannelHandlerContext, verdict: Verdict, bytes: ByteBuffer, reason: String) {
        let peer = ctx.remoteAddress?.description ?? "?"
        context.logger.warning("connection from \(peer) refused: \(reason)")
        switch verdict {
        case .binary:
            // Echo the request id if the header has arrived that far (bytes 8-11).
            let id = bytes.getInteger(at: bytes.readerIndex + 8, as: UInt32.self) ?? 0
            ctx.sendErrorAndClose(.overloaded, "the server is at its connection limit; try again later", requestID: id)
        case .http:
            ctx.writeRawHTTP(
                status: "503 Service Unavailable",
                json: errorJSON(.overloaded, "the server is at its connection limit"),
                extraHeaders: "Retry-After: 1\r\n")
        case .unknown, .undecided:
            ctx.sendErrorAndClose(.badMagic, "a connection must start with FEDW or an HTTP method", requestID: 0)
        }
    }

    /// The client half-closed before its protocol was known: the start of a
    /// frame (a prefix of FEDW) is a truncated frame (SPEC.md 2.1); anything else is closed.
    func userInboundEventTriggered(context ctx: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else { return ctx.fireUserInboundEventTriggered(event) }
        deadline?.cancel()
        let bytes = buffered.map { Array($0.readableBytesView) } ?? []
        if !bytes.isEmpty && bytes.count < 4 && FrameHeader.magic.starts(with: bytes) {
            ctx.sendErrorAndClose(
                .truncated, "the stream ended inside a frame (\(bytes.count) of 20 header bytes)", requestID: 0)
        } else {
            ctx.close(promise: nil)
        }
    }

    private func forward(_ ctx: ChannelHandlerContext) {
        let bytes = buffered!
        buffered = nil
        ctx.fireChannelRead(wrapInboundOut(bytes))
        ctx.pipeline.syncOperations.removeHandler(context: ctx, promise: nil)
    }
}

extension ChannelHandlerContext {
    /// Writes one `ERROR` frame, flushes it, then closes the connection: the
    /// answer to every error fatal to a stream.
    func sendErrorAndClose(_ code: ErrorCode, _ text: String, requestID: UInt32) {
        let bytes = MessageCodec.encode(.error(ErrorMessage(code: code, message: text)), requestID: requestID)
        let channel = self.channel
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// Writes a complete HTTP/1.1 answer with `Connection: close` below any
    /// HTTP handler (before the protocol is set up), then closes.
    func writeRawHTTP(status: String, json: [UInt8], extraHeaders: String = "") {
        var text = "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(json.count)\r\n"
        text += "Server: fed\r\n\(extraHeaders)Connection: close\r\n\r\n"
        var buffer = channel.allocator.buffer(capacity: text.utf8.count + json.count)
        buffer.writeString(text)
        buffer.writeBytes(json)
        let channel = self.channel
        channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// The JSON body of an HTTP error answer: `{"error": name, "code": N, "message": text}`.
func errorJSON(_ code: ErrorCode, _ message: String) -> [UInt8] {
    var out = Array("{\"error\": ".utf8)
    LegacyJSON.appendString(code.name, to: &out)
    out += Array(", \"code\": \(code.rawValue), \"message\": ".utf8)
    LegacyJSON.appendString(message, to: &out)
    out += Array("}".utf8)
    return out
}
