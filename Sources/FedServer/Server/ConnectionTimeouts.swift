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
    /// Closes the channel after `timeout` (logging `reason`) unless the
    /// returned task is cancelled first: the first-bytes deadline and the
    /// per-request deadline of both protocols. Call on the channel's event loop.
    func closeAfter(
        _ timeout: TimeAmount, logger: Logger, reason: String, level: Logger.Level = .warning
    ) -> Scheduled<Void> {
        let channel = self.channel
        let peer = remoteAddress?.description ?? "?"
        return eventLoop.scheduleTask(in: timeout) {
            logger.log(level: level, "closing connection from \(peer): \(reason) within \(timeout)")
            channel.close(promise: nil)
        }
    }
}
