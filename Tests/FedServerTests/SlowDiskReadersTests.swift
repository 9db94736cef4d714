import FedCodec
import FedTestSupport
import Foundation
import Synchronization
import Testing

@testable import FedServer

/// Readers never wait for the disk (issue 22): while a continuous pusher
/// keeps a deliberately slow `CheckpointStore` busy (each save sleeps 1 to
/// 1.5 s), a plain FETCH, a FETCH answered with MODEL_DELTA and
/// `GET /metrics` are each answered within 50 ms (p99).
@Suite("Readers during slow checkpoint saves", .serialized)
struct SlowDiskReadersTests {
    static func milliseconds(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        let took = ContinuousClock.now - start
        return Double(took.components.seconds) * 1000 + Double(took.components.attoseconds) * 1e-15
    }

    /// The pusher thread's flag and what it saw.
    final class Pushing: Sendable {
        let stop = Atomic<Bool>(false)
        let acks = Atomic<Int>(0)
        /// Milliseconds the slowest acknowledged push took.
        let slowestAck = Mutex<Double>(0)
    }

    static func p99(_ xs: [Double]) -> Double {
        let sorted = xs.sorted()
        return sorted.isEmpty ? .infinity : sorted[min(sorted.count - 1, Int(0.99 * Double(sorted.count)))]
    }

    @Test("With every save taking 1-1.5 s and a continuous pusher, FETCH, MODEL_DELTA FETCH and /metrics p99 < 50 ms")
    func readersDuringSlowSaves() throws {
        let checkpoints = SlowCheckpointStore()
        let s = try RunningServer {
            $0.aggregation.deltaEncoding = .int8
            $0.storage.checkpointStore = checkpoints
        }
        // Two versions, so that a version-3 fetch holding the previous one is answered with a step.
        let warmup = try TestClient(port: s.port, timeoutSeconds: 30)
        _ = try warmup.handshake("warmup")
        for v: Float in [1, 2] {
            guard case .ack = try warmup.push(constantTensors(v), datasets: 10) else { throw TestError("no ACK") }
        }
        checkpoints.delay = 1000...1500

        let pushing = Pushing()
        let port = s.port
        Thread {
            guard let c = try? TestClient(port: port, timeoutSeconds: 30), (try? c.handshake("pusher")) != nil
            else { return }
            var v: Float = 3
            while !pushing.stop.load(ordering: .relaxed) {
                var answer: Message?
                let took = SlowDiskReadersTests.milliseconds { answer = try? c.push(constantTensors(v), datasets: 10) }
                guard case .ack? = answer else { return }
                pushing.acks.add(1, ordering: .relaxed)
                pushing.slowestAck.withLock { $0 = max($0, took) }
                v += 1
            }
        }.start()

        let plain = try TestClient(port: s.port, timeoutSeconds: 30)
        _ = try plain.handshake("plain")
        let reader = try TestClient(port: s.port, timeoutSeconds: 30)
        _ = try reader.send(.hello(Hello(minVersion: 1, maxVersion: 3, clientID: "reader")), version: 1)
        guard case .welcome(let w)? = try reader.receive()?.1, w.version == 3 else { throw TestError("no v3 WELCOME") }

        var times = (fetch: [Double](), delta: [Double](), metrics: [Double]())
        var steps = 0
        let end = ContinuousClock.now + .seconds(6)
        while ContinuousClock.now < end {
            var current: UInt64 = 2
            times.fetch.append(
                try Self.milliseconds {
                    guard case .model(let m) = try plain.fetch() else { throw TestError("no MODEL") }
                    current = m.version
                })
            times.delta.append(
                try Self.milliseconds {
                    _ = try reader.send(
                        .fetch(heldVersion: current - 1, compression: .zlib, deltaEncodings: 0b1_1111), version: 3)
                    switch try reader.receive()?.1 {
                    case .modelDelta?: steps += 1
                    case .model?: break  // the pusher published again in between: too many steps
                    case let other: throw TestError("no MODEL_DELTA: \(String(describing: other))")
                    }
                })
            times.metrics.append(
                try Self.milliseconds {
                    let http = try TestClient(port: s.port, timeoutSeconds: 30)
                    try http.send(Array("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
                    #expect(http.receiveAll().hasPrefix("HTTP/1.1 200"))
                })
            Thread.sleep(forTimeInterval: 0.01)
        }
        pushing.stop.store(true, ordering: .relaxed)
        let figures = (fetch: Self.p99(times.fetch), delta: Self.p99(times.delta), metrics: Self.p99(times.metrics))
        let slowest = pushing.slowestAck.withLock { $0 }
        print(
            "saves of 1-1.5 s, \(pushing.acks.load(ordering: .relaxed)) pushes acknowledged (slowest \(Int(slowest)) ms); p99 over \(times.fetch.count) rounds: FETCH \(figures.fetch) ms, MODEL_DELTA FETCH \(figures.delta) ms (\(steps) answered with steps), GET /metrics \(figures.metrics) ms"
        )
        // The readings were taken while saves were slow: pushes went through, each waiting a second or more.
        let acks = pushing.acks.load(ordering: .relaxed)
        #expect(acks >= 3 && slowest >= 1000 && checkpoints.slowSaves.load(ordering: .relaxed) >= 3)
        #expect(steps > times.delta.count / 2)
        #expect(figures.fetch < 50 && figures.delta < 50 && figures.metrics < 50, "\(figures)")
        checkpoints.delay = 0...0
    }
}
