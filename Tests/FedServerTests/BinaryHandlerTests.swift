import FedCodec
import FedTestSupport
import NIOCore
import NIOEmbedded
import Testing

@testable import FedServer

/// The binary protocol's connection handler in an `EmbeddedChannel`: frames
/// in, frames out, no socket and no sleep. Pushes complete on the
/// committer's thread, so those tests use a `NIOAsyncTestingChannel`.
@Suite("Binary handler in an embedded channel")
struct BinaryHandlerTests {
    static func frame(_ message: Message, id: UInt32 = 1, version: UInt8 = 1) -> ByteBuffer {
        ByteBuffer(bytes: MessageCodec.encode(message, requestID: id, level: 1, version: version))
    }

    /// Every frame written so far, decoded with its request id.
    static func answers(_ channel: EmbeddedChannel) throws -> [(UInt32, Message)] {
        var decoder = FrameDecoder()
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { decoder.append(buffer.readableBytesView) }
        var out: [(UInt32, Message)] = []
        while let frame = try decoder.next() { out.append((frame.header.requestID, try MessageCodec.decode(frame))) }
        return out
    }

    static func channel(_ f: ServiceFixture) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(BinaryConnectionHandler(context: f.context))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        return channel
    }

    @Test("HELLO, PING and FETCH are answered in order, in the agreed version, from one read")
    func pipelinedSession() throws {
        let f = try ServiceFixture()
        let channel = try Self.channel(f)
        var bytes = Self.frame(.hello(Hello(minVersion: 1, maxVersion: 2, clientID: "e")), id: 1)
        var more = Self.frame(.ping(nonce: 42), id: 2, version: 2)
        bytes.writeBuffer(&more)
        more = Self.frame(.fetch(heldVersion: 0, compression: .zlib), id: 3, version: 2)
        bytes.writeBuffer(&more)
        more = Self.frame(.fetch(heldVersion: 0, compression: .zlib), id: 4, version: 2)
        bytes.writeBuffer(&more)
        try channel.writeInbound(bytes)
        let answers = try Self.answers(channel)
        #expect(answers.map(\.0) == [1, 2, 3, 4])
        guard case .welcome(let w) = answers[0].1, case .pong(42) = answers[1].1,
            case .model(let m) = answers[2].1, case .model = answers[3].1
        else { throw TestError("answers: \(answers.map(\.1.type))") }
        #expect(w.version == 2 && m.version == 0 && m.compression == .zlib)
        #expect(m.tensors.map(\.shape) == ServiceFixture.shapes)
        // Both fetch answers were written: nothing is left held in the budget.
        #expect(f.budget.used == 0)
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    @Test("Requests before HELLO get handshake_required; the connection stays open")
    func handshakeRequired() throws {
        let f = try ServiceFixture()
        let channel = try Self.channel(f)
        try channel.writeInbound(Self.frame(.fetch(heldVersion: 0, compression: .none), id: 5))
        let answers = try Self.answers(channel)
        guard case .error(let e) = answers.first?.1 else { throw TestError("no ERROR") }
        #expect(answers.first?.0 == 5 && e.code == .handshakeRequired && channel.isActive)
        _ = try channel.finish()
    }

    @Test("A frame of another version after HELLO: ERROR unsupported_version, then the connection closes")
    func versionChange() throws {
        let f = try ServiceFixture()
        let channel = try Self.channel(f)
        try channel.writeInbound(Self.frame(.hello(Hello(minVersion: 1, maxVersion: 3, clientID: "e"))))
        try channel.writeInbound(Self.frame(.ping(nonce: 1), id: 2, version: 2))
        let answers = try Self.answers(channel)
        guard case .welcome = answers.first?.1, case .error(let e) = answers.last?.1 else {
            throw TestError("answers: \(answers.map(\.1.type))")
        }
        #expect(e.code == .unsupportedVersion)
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test("HELLO with a wrong token: ERROR unauthorized and the connection closes")
    func wrongToken() throws {
        let f = try ServiceFixture { $0.security.authTokens = ["right"] }
        let channel = try Self.channel(f)
        try channel.writeInbound(Self.frame(.hello(Hello(clientID: "e", authToken: "wrong"))))
        let answers = try Self.answers(channel)
        guard case .error(let e) = answers.first?.1 else { throw TestError("no ERROR") }
        #expect(e.code == .unauthorized)
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test("A push whose blob headers declare other shapes is refused from the header, the model unchanged")
    func declaredShapes() throws {
        let f = try ServiceFixture()
        let channel = try Self.channel(f)
        try channel.writeInbound(Self.frame(.hello(Hello(clientID: "e"))))
        let wrong =
            [try Tensor(shape: [3, 2], values: [Float](repeating: 1, count: 6))]
            + ServiceFixture.tensors(1)
            .dropFirst()
        try channel.writeInbound(
            Self.frame(.push(Push(clientID: "e", datasets: 1, baseVersion: 0, tensors: wrong)), id: 9))
        let answers = try Self.answers(channel)
        guard case .error(let e) = answers.last?.1 else { throw TestError("no ERROR") }
        #expect(answers.last?.0 == 9 && e.code == .shapeMismatch && channel.isActive)
        #expect(f.store.snapshot().version == 0 && f.committer.isIdle)
        _ = try channel.finish()
    }

    @Test("A corrupted frame: ERROR checksum_mismatch for request 0, then the connection closes")
    func corruptFrame() throws {
        let f = try ServiceFixture()
        let channel = try Self.channel(f)
        var bytes = Self.frame(.hello(Hello(clientID: "e")))
        let last = bytes.writerIndex - 1
        bytes.setInteger(bytes.getInteger(at: last, as: UInt8.self)! ^ 0xFF, at: last)
        try channel.writeInbound(bytes)
        let answers = try Self.answers(channel)
        guard case .error(let e) = answers.first?.1 else { throw TestError("no ERROR") }
        #expect(answers.first?.0 == 0 && e.code == .checksumMismatch)
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test("After a half-close, a frame cut off gets ERROR truncated and the connection closes")
    func halfClosedMidFrame() throws {
        let f = try ServiceFixture()
        let channel = try Self.channel(f)
        var hello = Self.frame(.hello(Hello(clientID: "e")))
        try channel.writeInbound(hello.readSlice(length: 10)!)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        let answers = try Self.answers(channel)
        guard case .error(let e) = answers.first?.1 else { throw TestError("no ERROR") }
        #expect(e.code == .truncated)
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test("A push is acknowledged after its commit, and the next frame waits for it")
    func pushThenFetch() async throws {
        let f = try ServiceFixture()
        let channel = NIOAsyncTestingChannel()
        let context = f.context
        try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.addHandler(BinaryConnectionHandler(context: context))
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9))
        var bytes = Self.frame(.hello(Hello(minVersion: 1, maxVersion: 3, clientID: "e")))
        var push = Self.frame(
            .push(Push(clientID: "e", datasets: 4, baseVersion: 0, tensors: ServiceFixture.tensors(2), pushID: 1)),
            id: 2, version: 3)
        bytes.writeBuffer(&push)
        var fetch = Self.frame(.fetch(heldVersion: 0, compression: .none), id: 3, version: 3)
        bytes.writeBuffer(&fetch)
        try await channel.writeInbound(bytes)
        var decoder = FrameDecoder()
        var answers: [(UInt32, Message)] = []
        while answers.count < 3 {
            let buffer = try await channel.waitForOutboundWrite(as: ByteBuffer.self)
            decoder.append(buffer.readableBytesView)
            while let frame = try decoder.next() {
                answers.append((frame.header.requestID, try MessageCodec.decode(frame)))
            }
        }
        #expect(answers.map(\.0) == [1, 2, 3])
        guard case .ack(let v, let datasets) = answers[1].1, case .model(let m) = answers[2].1 else {
            throw TestError("answers: \(answers.map(\.1.type))")
        }
        // The FETCH behind the PUSH saw its version: frames are handled strictly in order.
        #expect(v == 1 && datasets == 4 && m.version == 1 && m.tensors[0].values[0] == 2)
        _ = try await channel.finish()
    }

    @Test("The connection's state: a push holds the frames and reads behind it; a half-close ends after the answers")
    func stateMachine() {
        var state = BinaryConnectionState()
        #expect(state.mayHandleFrame(writable: true) && !state.mayHandleFrame(writable: false))
        #expect(state.readRequested(writable: true) == .read)
        // Answers backed up: the read is held, and issued once the channel drains.
        #expect(state.readRequested(writable: false) == .hold)
        #expect(state.resumeReading(writable: false) == .hold)
        #expect(state.resumeReading(writable: true) == .read)
        #expect(state.resumeReading(writable: true) == .hold)
        // A push in flight: nothing is handled or read, and no request deadline runs.
        state.pushSubmitted()
        #expect(!state.mayHandleFrame(writable: true))
        #expect(state.readRequested(writable: true) == .hold)
        #expect(state.resumeReading(writable: true) == .hold)
        #expect(!state.requestDeadlineRuns(bufferedBytes: 100))
        state.inputDidClose()
        #expect(state.endOfInput(bufferedBytes: 0, writable: true) == .keepGoing)
        state.pushAnswered()
        #expect(state.mayHandleFrame(writable: true) && state.resumeReading(writable: true) == .read)
        #expect(state.requestDeadlineRuns(bufferedBytes: 100) && !state.requestDeadlineRuns(bufferedBytes: 0))
        // Half-closed: close when nothing is buffered; a partial frame is cut off (once writable).
        #expect(state.endOfInput(bufferedBytes: 0, writable: true) == .close)
        #expect(state.endOfInput(bufferedBytes: 7, writable: true) == .cutOff)
        #expect(state.endOfInput(bufferedBytes: 7, writable: false) == .keepGoing)
        // Closing is final: a late commit answer does not reopen the connection.
        state.startClosing()
        state.pushAnswered()
        #expect(state.phase == .closing && !state.mayHandleFrame(writable: true))
    }
}
