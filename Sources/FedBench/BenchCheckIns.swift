import ArgumentParser
import FedCodec
import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

extension BenchCommand {
    struct CheckIns: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "checkins",
            abstract: "Thousands of clients waiting in check-ins (protocol version 4): server memory and task latency.",
            discussion: """
                Starts a child `fed server --rounds N --over-selection 1` (a round of all N clients, opened \
                when the last one checks in), connects N clients from this process (SwiftNIO), each sending \
                HELLO (version 4) and one CHECK_IN that waits; once N - 1 wait, reads the server's resident \
                memory, then sends the last check-in and times, for every client, the moment its train task \
                arrives after that check-in was written (the task became available then). Prints p50, p99 \
                and the largest latency, the server's memory, and the bars: memory under 256 MB and p99 \
                under 200 ms.
                """
        )

        @Option(help: "Clients waiting in check-ins.") var clients = 10_000

        func validate() throws {
            guard (2...60_000).contains(clients) else { throw ValidationError("--clients must be in 2...60000") }
        }

        func run() throws {
            raiseOpenFileLimit(to: clients + 1024)
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fed-checkins-\(getpid())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let (server, port) = try ChildServer.start(
                checkpoint: dir.appendingPathComponent("model.fedk").path,
                arguments: [
                    "--max-connections", "\(clients + 512)", "--rounds", "\(clients)", "--over-selection", "1",
                    "--min-reports", "\(clients)", "--selection-window", "3600", "--round-deadline", "3600",
                    "--check-in-wait", "600", "--idle-timeout", "7200",
                ])
            defer {
                kill(server.processIdentifier, SIGTERM)
                server.waitUntilExit()
            }
            let before = ChildServer.residentMegabytes(pid: server.processIdentifier) ?? 0
            print(
                "a child fed server on 127.0.0.1:\(port) (\(String(format: "%.0f", before)) MB resident); \(clients) clients"
            )
            let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
            defer { try? group.syncShutdownGracefully() }
            let state = CheckInState(clients: clients)
            var channels: [any Channel] = []
            let start = monotonicSeconds()
            for i in 0..<(clients - 1) {
                channels.append(try connect(id: i, port: port, group: group, state: state))
                if i % 1000 == 999 {
                    // Let the server accept what is queued before the backlog fills.
                    while state.waiting < i - 200 && monotonicSeconds() - start < 120 { usleep(2_000) }
                }
            }
            while state.waiting < clients - 1 && monotonicSeconds() - start < 300 { usleep(10_000) }
            guard state.waiting == clients - 1 else {
                throw ValidationError("only \(state.waiting) of \(clients - 1) clients reached their check-in")
            }
            print(
                String(format: "%d clients waiting in check-ins after %.1f s", clients - 1, monotonicSeconds() - start))
            usleep(500_000)
            let waitingMB = ChildServer.residentMegabytes(pid: server.processIdentifier) ?? 0
            // The last client: its check-in makes the round's selection complete.
            channels.append(try connect(id: clients - 1, port: port, group: group, state: state))
            let deadline = monotonicSeconds() + 120
            while state.received < clients && monotonicSeconds() < deadline { usleep(5_000) }
            let peakMB = ChildServer.residentMegabytes(pid: server.processIdentifier) ?? 0
            let latencies = state.latencies().sorted()
            for c in channels { c.close(promise: nil) }
            guard latencies.count == clients else {
                throw ValidationError(
                    "\(latencies.count) of \(clients) clients received a task (\(state.otherAnswers) other answers)")
            }
            func q(_ p: Double) -> Double {
                latencies[min(latencies.count - 1, Int(p * Double(latencies.count)))] * 1000
            }
            print(
                String(
                    format:
                        "server resident: %.0f MB at start, %.0f MB with %d check-ins waiting, %.0f MB after the tasks",
                    before, waitingMB, clients - 1, peakMB))
            print(
                String(
                    format:
                        "task latency after the last check-in (%d tasks): first %.1f ms, p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                    latencies.count, latencies[0] * 1000, q(0.5), q(0.99), latencies.last! * 1000))
            print("\nbars (\(clients) clients in long-poll check-ins):")
            Bar.expect(
                "server memory under 256 MB", max(waitingMB, peakMB) < 256,
                String(format: "%.0f MB at most", max(waitingMB, peakMB)))
            Bar.expect("task p99 under 200 ms", q(0.99) < 200, String(format: "%.1f ms", q(0.99)))
        }

        private func connect(id: Int, port: Int, group: any EventLoopGroup, state: CheckInState) throws -> any Channel {
            try ClientBootstrap(group: group)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(30))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(CheckInHandler(id: id, state: state))
                    }
                }
                .connect(host: "127.0.0.1", port: port).wait()
        }

        private func raiseOpenFileLimit(to wanted: Int) {
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            limit.rlim_cur = min(rlim_t(wanted), limit.rlim_max)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
    }
}

/// What the clients of `fed bench checkins` have seen.
final class CheckInState: Sendable {
    private struct State {
        var waiting = 0
        var lastCheckInAt = 0.0
        var receivedAt: [Double] = []
        var other = 0
    }
    private let state = Mutex(State())
    let clients: Int

    init(clients: Int) { self.clients = clients }

    func checkedIn(at time: Double) {
        state.withLock {
            $0.waiting += 1; $0.lastCheckInAt = max($0.lastCheckInAt, time)
        }
    }
    func assigned(at time: Double) { state.withLock { $0.receivedAt.append(time) } }
    func otherAnswer() { state.withLock { $0.other += 1 } }
    var waiting: Int { state.withLock { $0.waiting } }
    var received: Int { state.withLock { $0.receivedAt.count } }
    var otherAnswers: Int { state.withLock { $0.other } }
    /// Each task's arrival after the last check-in was written.
    func latencies() -> [Double] { state.withLock { s in s.receivedAt.map { $0 - s.lastCheckInAt } } }
}

/// One client: HELLO (versions 1-4), then one CHECK_IN that waits; records
/// when its check-in was written and when its ASSIGNMENT arrived.
final class CheckInHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let id: Int
    let state: CheckInState
    var decoder = FrameDecoder()

    init(id: Int, state: CheckInState) {
        self.id = id
        self.state = state
    }

    func channelActive(context: ChannelHandlerContext) {
        let hello = MessageCodec.encode(
            .hello(Hello(minVersion: 1, maxVersion: 4, compressions: 0b111, clientID: "checkin-\(id)")), requestID: 1)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: hello)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        decoder.append(bytes.readableBytesView)
        while let frame = try? decoder.next() {
            guard let message = try? MessageCodec.decode(frame) else {
                state.otherAnswer()
                continue
            }
            switch message {
            case .welcome(let w) where w.version >= 4:
                let checkIn = MessageCodec.encode(
                    .other(AnyProtocolMessage(CheckIn(waitMilliseconds: 600_000))), requestID: 2, version: w.version)
                let state = self.state
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: checkIn))).whenSuccess {
                    state.checkedIn(at: monotonicSeconds())
                }
            default:
                if let a = message.as(Assignment.self), a.kind == .train {
                    state.assigned(at: monotonicSeconds())
                } else {
                    state.otherAnswer()
                }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}
