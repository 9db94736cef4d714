import NIOCore

/// Counts the bytes a connection reads and writes (first in its pipeline,
/// so both protocols and every refusal are counted).
final class TrafficCounter: ChannelDuplexHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private let metrics: ServerMetrics

    init(metrics: ServerMetrics) { self.metrics = metrics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        metrics.bytesIn.add(UInt64(unwrapInboundIn(data).readableBytes), ordering: .relaxed)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .byteBuffer(let b): metrics.bytesOut.add(UInt64(b.readableBytes), ordering: .relaxed)
        case .fileRegion(let f): metrics.bytesOut.add(UInt64(f.readableBytes), ordering: .relaxed)
        }
        context.write(data, promise: promise)
    }
}
