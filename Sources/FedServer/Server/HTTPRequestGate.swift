import NIOCore

/// Sits below the HTTP decoder and starts the request deadline on the first
/// byte of a request, so a client that dribbles its headers is closed at
/// `requestTimeout` like one that dribbles its body. `HTTPConnectionHandler`
/// calls `requestArrived()` once a request's last part is in.
final class HTTPRequestGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let context: ServerContext
    private var timer: Scheduled<Void>?
    private var betweenRequests = true

    init(context: ServerContext) { self.context = context }

    func channelRead(context ctx: ChannelHandlerContext, data: NIOAny) {
        if betweenRequests {
            betweenRequests = false
            timer = ctx.closeAfter(
                TimeAmount(context.configuration.network.requestTimeout), logger: context.logger,
                reason: "HTTP request not complete")
        }
        ctx.fireChannelRead(data)
    }

    /// The current request has arrived whole: stop its deadline; the next byte starts the next one.
    func requestArrived() {
        timer?.cancel()
        timer = nil
        betweenRequests = true
    }

    func channelInactive(context ctx: ChannelHandlerContext) {
        timer?.cancel()
        ctx.fireChannelInactive()
    }
}
