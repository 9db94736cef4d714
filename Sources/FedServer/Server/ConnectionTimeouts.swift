import Logging
import NIOCore

/// Closes a connection when `IdleStateHandler` reports no bytes either way for
/// `idleTimeout`. It sits right after that handler, before the protocol is
/// known, so binary and HTTP connections share one rule and one log line.
final class IdleConnectionCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func userInboundEventTriggered(context ctx: ChannelHandlerContext, event: Any) {
        guard event is IdleStateHandler.IdleStateEvent else {
            ctx.fireUserInboundEventTriggered(event)
            return
        }
        logger.info("closing idle connection from \(ctx.remoteAddress?.description ?? "?")")
        ctx.close(promise: nil)
    }
}

extension ChannelHandlerContext {
    /// Closes the channel after `timeout` (logging `reason` as a warning)
    /// unless the returned task is cancelled first: the per-request deadline
    /// of both protocol handlers. Call on the channel's event loop.
    func closeAfter(_ timeout: TimeAmount, logger: Logger, reason: String) -> Scheduled<Void> {
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        return eventLoop.scheduleTask(in: timeout) {
            logger.warning("closing connection: \(reason) within \(timeout)")
            loopBound.value.close(promise: nil)
        }
    }
}
