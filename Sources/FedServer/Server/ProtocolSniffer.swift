import FedCodec
import NIOCore
import NIOHTTP1

/// Decides from a connection's first bytes which protocol it speaks, then
/// replaces itself with that protocol's handlers and passes the bytes on.
///
/// `FEDW` goes to the binary protocol; an HTTP method followed by a space
/// (`GET `, `POST `, ...) to HTTP/1.1; anything else is logged and closed.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private static let methods = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"].map {
        Array($0.utf8) + [0x20]
    }
    private let context: ServerContext
    private var buffered: ByteBuffer?

    init(context: ServerContext) { self.context = context }

    enum Verdict { case binary, http, undecided, unknown }

    static func classify(_ bytes: ByteBufferView) -> Verdict {
        let prefix = Array(bytes.prefix(8))
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

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var b = buffered {
            b.writeBuffer(&incoming)
            buffered = b
        } else {
            buffered = incoming
        }
        guard let bytes = buffered else { return }
        switch Self.classify(bytes.readableBytesView) {
        case .undecided:
            return
        case .unknown:
            context.logger.warning(
                "closing connection from \(ctx.remoteAddress?.description ?? "?"): neither FEDW nor HTTP (first bytes \(bytes.readableBytesView.prefix(8).map { String($0, radix: 16) }))"
            )
            ctx.close(promise: nil)
        case .binary:
            do {
                try ctx.pipeline.syncOperations.addHandler(
                    BinaryConnectionHandler(context: context), position: .after(self))
                forward(ctx)
            } catch {
                ctx.close(promise: nil)
            }
        case .http where !context.configuration.serveHTTP:
            context.logger.warning(
                "closing HTTP connection from \(ctx.remoteAddress?.description ?? "?"): HTTP is disabled")
            ctx.close(promise: nil)
        case .http:
            do {
                let http = HTTPConnectionHandler(context: context)
                try ctx.pipeline.syncOperations.addHandler(http, position: .after(self))
                try ctx.pipeline.syncOperations.configureHTTPServerPipeline(
                    position: .after(self), withPipeliningAssistance: true, withErrorHandling: true)
                forward(ctx)
            } catch {
                ctx.close(promise: nil)
            }
        }
    }

    private func forward(_ ctx: ChannelHandlerContext) {
        let bytes = buffered!
        buffered = nil
        ctx.fireChannelRead(wrapInboundOut(bytes))
        ctx.pipeline.syncOperations.removeHandler(context: ctx, promise: nil)
    }
}
