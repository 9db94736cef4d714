import FedCodec
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

/// Readers never wait for the disk (issue 22, item 3): while a checkpoint
/// write takes 1.5 s inside the store's commit, a fetch answered with
/// MODEL_DELTA, `GET /metrics` and PING are answered at once.
@Suite("Readers during a slow commit", .serialized)
struct SlowDiskReadersTests {
    static let slowWrite = 1500

    static func elapsed(_ body: () throws -> Void) rethrows -> Double {
        let start = Date()
        try body()
        return Date().timeIntervalSince(start)
    }

    @Test("MODEL_DELTA fetches, /metrics and PING answer while a commit waits 1.5 s for the disk")
    func readersDuringSlowCommit() throws {
        let s = try RunningServer { $0.deltaEncoding = .int8 }
        // Two versions, so that a version-3 fetch holding version 1 is answered with a step.
        let pusher = try TestClient(port: s.port, timeoutSeconds: 30)
        _ = try pusher.handshake("pusher")
        for v: Float in [1, 2] {
            guard case .ack = try pusher.push(constantTensors(v), datasets: 10) else { throw TestError("no ACK") }
        }
        s.server.committer.testDelayMilliseconds.store(Self.slowWrite, ordering: .relaxed)
        let reader = try TestClient(port: s.port, timeoutSeconds: 30)
        _ = try reader.send(.hello(Hello(minVersion: 1, maxVersion: 3, clientID: "reader")), version: 1)
        guard case .welcome(let w)? = try reader.receive()?.1, w.version == 3 else { throw TestError("no v3 WELCOME") }

        var worst = (delta: 0.0, metrics: 0.0, ping: 0.0)
        // Each reading starts 0.2 s into a commit of its own (a push whose write now takes 1.5 s).
        for round in 0..<6 {
            _ = try pusher.send(.push(Push(clientID: "p", datasets: 10, baseVersion: 0, tensors: constantTensors(3))))
            Thread.sleep(forTimeInterval: 0.2)
            switch round % 3 {
            case 0:
                worst.delta = max(
                    worst.delta,
                    try Self.elapsed {
                        _ = try reader.send(
                            .fetch(heldVersion: 1, compression: .zlib, deltaEncodings: 0b1_1111), version: 3)
                        guard case .modelDelta? = try reader.receive()?.1 else { throw TestError("no MODEL_DELTA") }
                    })
            case 1:
                worst.metrics = max(
                    worst.metrics,
                    try Self.elapsed {
                        let http = try TestClient(port: s.port, timeoutSeconds: 30)
                        try http.send(Array("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
                        #expect(http.receiveAll().hasPrefix("HTTP/1.1 200"))
                    })
            default:
                worst.ping = max(
                    worst.ping,
                    try Self.elapsed {
                        _ = try reader.send(.ping(nonce: UInt64(round)), version: 3)
                        guard case .pong? = try reader.receive()?.1 else { throw TestError("no PONG") }
                    })
            }
            guard case .ack? = try pusher.receive()?.1 else { throw TestError("no ACK") }
        }
        s.server.committer.testDelayMilliseconds.store(0, ordering: .relaxed)
        print(
            "during 1.5 s commits: MODEL_DELTA fetch \(worst.delta) s, /metrics \(worst.metrics) s, PING \(worst.ping) s (worst of 2 each)"
        )
        // Milliseconds on a quiet machine; waiting for the commit would take over a second.
        #expect(worst.delta < 0.75 && worst.metrics < 0.75 && worst.ping < 0.75, "\(worst)")
    }
}
