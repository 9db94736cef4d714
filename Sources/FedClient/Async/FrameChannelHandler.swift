import FedCodec
import NIOCore
import Synchronization

/// One request on a client channel: its frame's bytes, its request id, and
/// where the answer's frame goes.
struct FrameRequest {
    let id: UInt32
    let bytes: ByteBuffer
    let answer: EventLoopPromise<Frame>
}

/// The client end of a binary-protocol channel: writes request frames,
/// splits the byte stream into frames (`FrameDecoder`: limits checked
/// before allocation) and completes each request's promise with the frame
/// answering it, matched by request id. Frames are decoded into messages by
/// the client.
///
/// Any failure (the connection closing, a frame that does not decode, an
/// answer to no request) fails every request waiting and closes the channel.
final class FrameChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = FrameRequest
    typealias OutboundOut = ByteBuffer

    private var decoder: FrameDecoder
    private var waiting: [UInt32: EventLoopPromise<Frame>] = [:]
    private var failure: ClientError?
    private let traffic: Traffic
    private let channelFailure: ChannelFailure
    /// `host:port`, for messages.
    private let peer: String

    /// A handler counting bytes in `traffic` (its client's, every channel's)
    /// and recording the channel's first failure in `failure` (the channel's own).
    init(limits: Limits, traffic: Traffic, failure: ChannelFailure, peer: String) {
        decoder = FrameDecoder(limits: limits)
        self.traffic = traffic
        channelFailure = failure
        self.peer = peer
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.answer.fail(failure)
            promise?.fail(failure)
            return
        }
        waiting[request.id] = request.answer
        traffic.sent.add(request.bytes.readableBytes, ordering: .relaxed)
        context.write(wrapOutboundOut(request.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        traffic.received.add(buffer.readableBytes, ordering: .relaxed)
        decoder.append(buffer.readableBytesView)
        // Room for the whole frame once its header is in: no regrowing a model-sized buffer.
        decoder.reserveForPendingFrame()
        do {
            while let frame = try decoder.next() {
                guard let promise = waiting.removeValue(forKey: frame.header.requestID) else {
                    // An ERROR with request id 0 is about the connection (SPEC 2.2): every request gets it.
                    if frame.header.requestID == 0, case .error(let e)? = try? MessageCodec.decode(frame) {
                        fail(context, ClientError(e))
                    } else {
                        fail(context, .violation("an answer to request \(frame.header.requestID), which was not asked"))
                    }
                    return
                }
                promise.succeed(frame)
            }
        } catch {
            fail(context, .undecodable(error))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(context, .closed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, ClientError.from(error, peer: peer))
    }

    /// Fails every waiting request with `error` (the first failure wins) and closes.
    func fail(_ context: ChannelHandlerContext, _ error: ClientError) {
        if failure == nil {
            failure = error
            channelFailure.error.withLock { $0 = error }
        }
        let pending = waiting
        waiting = [:]
        for p in pending.values { p.fail(failure!) }
        context.close(promise: nil)
    }
}

/// Bytes written and read on every channel of one client, readable from any thread.
final class Traffic: Sendable {
    let sent = Atomic<Int>(0)
    let received = Atomic<Int>(0)
}

/// Why one channel failed (a TLS handshake's failure, a reset), once it has, readable from any thread.
final class ChannelFailure: Sendable {
    let error = Mutex<ClientError?>(nil)
}
