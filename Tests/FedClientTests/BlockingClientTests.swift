import Dispatch
import FedClient
import FedCodec
import FedTestSupport
import Foundation
import Testing

/// `BinaryTransport` (blocking) and `FederationClient` (async) behave alike:
/// the policy's attempts through the one retry loop, the same `unknown_base`
/// fallback, the same bytes, against scripted servers on 127.0.0.1.
@Suite("Blocking and async client")
struct BlockingClientTests {
    static let weights = constantTensors(0.5, shapes: [[2, 2]])
    static let model = Message.model(Model(version: 7, datasets: 70, tensors: weights))
    static let clientID = "blocking-client-tests"

    static func policy(_ attempts: Int) -> RetryPolicy {
        RetryPolicy(
            maxAttempts: attempts, initialBackoff: .milliseconds(5), maxBackoff: .milliseconds(10), deadline: nil)
    }

    /// Pushes that reached `s` from this suite's clients.
    static func pushes(_ s: FakeServer) -> [Push] {
        s.requests.withLock { r in
            r.compactMap { if case .push(let p) = $0, p.clientID == clientID { p } else { nil } }
        }
    }

    /// A server that answers `FETCH` with `model` and refuses the first
    /// `refusals` pushes with a retryable `overloaded` (every push when nil).
    static func refusing(_ refusals: Int?) throws -> FakeServer {
        let calls = Counter()
        return try FakeServer { _, request in
            switch request {
            case .hello: return .answer(FakeServer.welcome())
            case .fetch: return .answer(model)
            case .push:
                if let refusals, calls.next() >= refusals { return .answer(.ack(version: 8, datasets: 80)) }
                return .answer(.error(ErrorMessage(code: .overloaded, message: "busy")))
            default: return .answer(.error(ErrorMessage(code: .unexpectedMessage, message: "not scripted")))
            }
        }
    }

    /// A model that trains nothing and pushes `weights`.
    struct Fixed: LocalModel {
        var weights = BlockingClientTests.weights
        mutating func load(_ weights: [Tensor]) throws { self.weights = weights }
        mutating func train(round: Int) -> Int { 10 }
    }

    @Test("A loop over BinaryTransport makes the policy's attempts, not the policy's squared", arguments: [nil, 2])
    func blockingAttempts(refusals: Int?) throws {
        let s = try Self.refusing(refusals)
        let transport = BinaryTransport(host: "127.0.0.1", port: s.port, clientID: Self.clientID, timeout: 10)
        let loop = FederatedLoop(model: Fixed(), transport: transport, options: .init(retry: Self.policy(4)))
        let summary = loop.run(rounds: 1)
        let expected = refusals.map { $0 + 1 } ?? 4
        #expect(Self.pushes(s).count == expected)
        #expect(summary.retries == expected - 1)
        #expect(summary.pushesAccepted == (refusals == nil ? 0 : 1))
        // The retries of one push carry its id: a server that applied it answers with the first ACK.
        #expect(Set(Self.pushes(s).map(\.pushID)).count == 1)
    }

    @Test("The async client makes the policy's attempts against the same server", arguments: [nil, 2])
    func asyncAttempts(refusals: Int?) async throws {
        let s = try Self.refusing(refusals)
        let c = FederationClient(
            host: "127.0.0.1", port: s.port, configuration: .init(clientID: Self.clientID, retryPolicy: Self.policy(4)))
        let result: Result<FederationClient.Acknowledgement, ClientError>
        do throws(ClientError) {
            result = .success(try await c.push(Self.weights, datasets: 10, baseVersion: 7))
        } catch {
            result = .failure(error)
        }
        let expected = refusals.map { $0 + 1 } ?? 4
        #expect(Self.pushes(s).count == expected)
        #expect(await c.retries == expected - 1)
        switch result {
        case .success(let ack): #expect(refusals != nil && ack.version == 8 && ack.datasets == 80)
        case .failure(let e): #expect(refusals == nil && e.code == .server(.overloaded), "\(e)")
        }
        await c.close()
    }

    /// A version-3 server holding version 7 that cannot place any delta (`unknown_base`).
    static func forgetful() throws -> FakeServer {
        try FakeServer { _, request in
            switch request {
            case .hello:
                return .answer(
                    .welcome(
                        Welcome(
                            version: 3, compressions: 0b111, serverID: "fake", modelVersion: 7, datasets: 70,
                            maxPayloadBytes: 16 << 20, encodings: 0b1_1111)))
            case .fetch: return .answer(model)
            case .push(let p) where p.isDelta:
                return .answer(.error(ErrorMessage(code: .unknownBase, message: "version 7 is gone")))
            case .push: return .answer(.ack(version: 8, datasets: 80))
            default: return .answer(.error(ErrorMessage(code: .unexpectedMessage, message: "not scripted")))
            }
        }
    }

    @Test("unknown_base: the blocking transport resends a delta as full weights, as the async client does")
    func unknownBaseFallback() async throws {
        let trained = constantTensors(0.75, shapes: [[2, 2]])
        let blockingServer = try Self.forgetful()
        let blocking = BinaryTransport(
            host: "127.0.0.1", port: blockingServer.port, clientID: Self.clientID, timeout: 10,
            encoding: WireEncoding(name: "int8-delta")!)
        _ = try blocking.fetch(heldVersion: 0)
        let ack = try blocking.push(trained, datasets: 10, baseVersion: 7, pushID: 99)
        #expect(ack.version == 8 && ack.datasets == 80)

        let asyncServer = try Self.forgetful()
        let client = FederationClient(
            host: "127.0.0.1", port: asyncServer.port,
            configuration: .init(
                clientID: Self.clientID, retryPolicy: RetryPolicy(maxAttempts: 1),
                encoding: WireEncoding(name: "int8-delta")!))
        _ = try await client.fetch()
        let asyncAck = try await client.push(trained, datasets: 10, baseVersion: 7, pushID: 99)
        #expect(asyncAck.version == 8 && asyncAck.datasets == 80)

        for s in [blockingServer, asyncServer] {
            let p = Self.pushes(s)
            // A delta refused, then the same push (same id) as full, lossless weights.
            #expect(p.map(\.isDelta) == [true, false])
            #expect(p.map(\.pushID) == [99, 99])
            #expect(p.last?.encoding == .float32 && p.last?.tensors == trained)
        }
        // One client under two faces: the same exchange costs the same bytes.
        #expect(blocking.bytesSent == (await client.bytesSent))
        #expect(blocking.bytesReceived == (await client.bytesReceived))
        #expect(blocking.bytesSent > 0 && blocking.fullFetches == 1)
        await client.close()
    }

    @Test("A cutoff set from another thread ends a BinaryTransport call waiting on a silent server")
    func cutoff() throws {
        let server = try StallingServer(dribble: nil)
        defer { server.stop() }
        let cutoff = RequestCutoff()
        let t = BinaryTransport(
            host: "127.0.0.1", port: server.port, clientID: Self.clientID, timeout: 60, cutoff: cutoff)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(300)) {
            cutoff.cut(at: .now() + .milliseconds(100))
        }
        for _ in 0..<2 {
            // The call waiting when the cutoff is set, then one starting after its time.
            let start = Date()
            do {
                _ = try t.fetch(heldVersion: 0)
                Issue.record("a call after the cutoff's time succeeded")
            } catch let e as ClientError {
                #expect(e.code == .cancelled && !e.isRetryable, "\(e)")
            }
            let took = Date().timeIntervalSince(start)
            #expect(took < 10, "the call ended after \(took) s (cut off at 0.4 s, timeout 60 s)")
        }
    }

    @Test("Calling the blocking transport on its client's event loop stops the program (it would wait for itself)")
    func onItsEventLoop() async {
        await #expect(processExitsWith: .failure) {
            let client = FederationClient(host: "127.0.0.1", port: 9, configuration: .init(clientID: "on-the-loop"))
            client.eventLoop.execute { _ = try? BinaryTransport(client: client).fetch(heldVersion: 0) }
            try? await Task.sleep(for: .seconds(10))
        }
    }
}
