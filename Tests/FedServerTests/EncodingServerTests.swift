import FedClient
import FedCodec
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

/// Version 3 over real sockets: lossy and delta pushes, fetch deltas, and old peers.
@Suite("Encodings over TCP", .serialized)
struct EncodingServerTests {
    func tensors(_ seed: Int, scale: Float = 1) -> [Tensor] {
        Tensor.mnistMLPShapes.enumerated().map { k, shape in
            let n = Tensor.elementCount(shape)!
            return try! Tensor(shape: shape, values: (0..<n).map { scale * Float(sin(Double($0 * (seed + 3) + k))) })
        }
    }

    @Test("A version-3 client pushes int8 deltas: the server applies base + decoded delta; WELCOME names the encodings")
    func deltaPush() throws {
        let s = try RunningServer(tensors: tensors(1))
        let c = try TestClient(port: s.port)
        _ = try c.send(.hello(Hello(maxVersion: 3, clientID: "v3")))
        guard case .welcome(let w)? = try c.receive()?.1 else { throw TestError("no WELCOME") }
        #expect(w.version == 3 && w.encodings == 0b1_1111 && w.deltaEncoding == 0)
        let base = tensors(1)
        let trained = tensors(2, scale: 1.01)
        let delta = zip(trained, base).map { a, b in
            try! Tensor(shape: a.shape, values: zip(a.values, b.values).map { $0 - $1 })
        }
        // Version 0 is the fresh model: the push names no base (0), so a delta cannot be placed.
        _ = try c.send(
            .push(
                Push(
                    clientID: "v3", datasets: 10, baseVersion: 0, tensors: delta, compression: .zlib, encoding: .int8,
                    isDelta: true)), version: 3)
        guard case .error(let e)? = try c.receive()?.1 else { throw TestError("delta on no base accepted") }
        #expect(e.code == .unknownBase && !e.retryable)
        _ = try c.send(.push(Push(clientID: "v3", datasets: 10, baseVersion: 0, tensors: base)), version: 3)
        guard case .ack(1, 10)? = try c.receive()?.1 else { throw TestError("no ACK") }
        _ = try c.send(
            .push(
                Push(
                    clientID: "v3", datasets: 10, baseVersion: 1, tensors: delta, compression: .zlib, encoding: .int8,
                    isDelta: true)), version: 3)
        guard case .ack(2, 20)? = try c.receive()?.1 else { throw TestError("no ACK for the delta") }
        // Running average: (10 W1 + 10 (W1 + dec(delta))) / 20.
        let decoded = delta.map { ValueEncoding.int8.roundTrip($0.values) }
        let model = s.server.store.snapshot().tensors
        for t in model.indices {
            for i in stride(from: 0, to: model[t].count, by: 97) {
                let wc = base[t].values[i] + decoded[t][i]
                let expected = (10 * base[t].values[i] + 10 * wc) / 20
                #expect(abs(model[t].values[i] - expected) < 1e-6)
            }
        }
        // A hostile delta is validated after decoding: infinity from fp16.
        var huge = delta
        huge[0].values[0] = 1e9
        _ = try c.send(
            .push(
                Push(
                    clientID: "v3", datasets: 10, baseVersion: 2, tensors: huge, encoding: .float16, isDelta: true)),
            version: 3)
        guard case .error(let e2)? = try c.receive()?.1 else { throw TestError("infinite delta accepted") }
        #expect(e2.code == .nonFiniteValue)
        #expect(s.server.store.snapshot().version == 2)
    }

    @Test("A server refuses encodings it was not configured for, with unsupported_d_type")
    func refusedEncoding() throws {
        let s = try RunningServer(tensors: tensors(1)) { $0.network.encodings = .float16 }
        let c = try TestClient(port: s.port)
        _ = try c.send(.hello(Hello(maxVersion: 3, clientID: "v3")))
        guard case .welcome(let w)? = try c.receive()?.1 else { throw TestError("no WELCOME") }
        #expect(w.encodings == 0b11)
        _ = try c.send(
            .push(Push(clientID: "v3", datasets: 10, baseVersion: 0, tensors: tensors(2), encoding: .int4)),
            version: 3)
        guard case .error(let e)? = try c.receive()?.1 else { throw TestError("accepted") }
        #expect(e.code == .unsupportedDType)
    }

    @Test(
        "Fetch deltas: the server publishes quantized steps, a v3 client applies them and holds the server's model bit for bit",
        arguments: [ValueEncoding.int2, .int8, .float16])
    func fetchDeltas(_ encoding: ValueEncoding) throws {
        let s = try RunningServer(tensors: tensors(1)) { $0.aggregation.deltaEncoding = encoding }
        let reader = BinaryTransport(
            host: "127.0.0.1", port: s.port, clientID: "reader", encoding: .lossless, acceptDeltas: true)
        let writer = BinaryTransport(
            host: "127.0.0.1", port: s.port, clientID: "writer", encoding: WireEncoding(values: .int4, delta: true),
            acceptDeltas: true)
        _ = try reader.fetch(heldVersion: 0)
        var lastSize = 0
        for round in 1...4 {
            guard case .model(let v, _, let w) = try writer.fetch(heldVersion: 0) else { throw TestError("unchanged") }
            let trained = zip(w, tensors(round + 5, scale: 0.05)).map { a, b in
                try! Tensor(shape: a.shape, values: zip(a.values, b.values).map { $0 + $1 })
            }
            _ = try writer.push(trained, datasets: 100, baseVersion: v, pushID: UInt64(round))
            if round % 2 == 0 {
                let before = reader.bytesReceived
                guard case .model(let rv, _, let mine) = try reader.fetch(heldVersion: 0) else {
                    throw TestError("unchanged")
                }
                lastSize = reader.bytesReceived - before
                let server = s.server.store.snapshot()
                #expect(rv == server.version)
                #expect(mine == server.tensors, "the client's copy differs from the server's model")
            }
        }
        // Version 0 cannot be named as held (0 means none): the first two fetches are full models.
        #expect(reader.deltaFetches == 1 && reader.fullFetches == 2)
        // Two steps of int2 are far smaller than a full model (796,840 bytes raw).
        if encoding == .int2 { #expect(lastSize < 120_000, "\(lastSize) bytes for two steps") }
        // A version-2 client still gets full models.
        let old = try TestClient(port: s.port)
        _ = try old.send(.hello(Hello(maxVersion: 2, clientID: "old")))
        _ = try old.receive()
        _ = try old.send(.fetch(heldVersion: 2, compression: .none), version: 2)
        guard case .model(let m)? = try old.receive()?.1 else { throw TestError("no MODEL for a v2 client") }
        #expect(m.tensors == s.server.store.snapshot().tensors)
    }

    @Test("Error feedback: a lossy delta client's rounding errors do not add up over pushes")
    func errorFeedback() throws {
        // FedBuff with K = 1 and SGD 1 adds each delta to the model: after N pushes the model is
        // W0 + the sum of the deltas meant, minus the last residual (less than one int2 step).
        let s = try RunningServer(tensors: tensors(1)) {
            $0.aggregation.strategy = FedBuff(bufferSize: 1, staleness: .constant, optimizer: .sgd(learningRate: 1))
        }
        let client = BinaryTransport(
            host: "127.0.0.1", port: s.port, clientID: "ef", encoding: WireEncoding(values: .int2, delta: true))
        let other = BinaryTransport(host: "127.0.0.1", port: s.port, clientID: "other")
        _ = try other.push(tensors(1), datasets: 1, baseVersion: 0, pushID: 1)  // version 1: a base for deltas
        var meant = s.server.store.snapshot().tensors
        // Without error feedback the rounding errors of the 64 pushes would add up (as sqrt(N)); with it they stay within about one step:
        var withoutFeedback = meant.map { Tensor(zeros: $0.shape) }
        for k in 1...64 {
            guard case .model(let v, _, let w) = try client.fetch(heldVersion: 0) else { throw TestError("no model") }
            let d = tensors(20 + k, scale: 0.05)
            let trained = zip(w, d).map { a, b in
                try! Tensor(shape: a.shape, values: zip(a.values, b.values).map { $0 + $1 })
            }
            _ = try client.push(trained, datasets: 1, baseVersion: v, pushID: UInt64(10 + k))
            meant = zip(meant, d).map { a, b in
                try! Tensor(shape: a.shape, values: zip(a.values, b.values).map { $0 + $1 })
            }
            for t in d.indices {
                let q = ValueEncoding.int2.roundTrip(d[t].values, rounding: .stochastic(seed: UInt64(k * 31 + t)))
                for i in q.indices { withoutFeedback[t].values[i] += q[i] - d[t].values[i] }
            }
        }
        func rms(_ e: [Tensor]) -> Float {
            let all = e.flatMap(\.values)
            return (all.map { $0 * $0 }.reduce(0, +) / Float(all.count)).squareRoot()
        }
        let unbounded = rms(withoutFeedback)
        let model = s.server.store.snapshot().tensors
        let error = rms(
            zip(model, meant).map { a, b in try! Tensor(shape: a.shape, values: zip(a.values, b.values).map { $0 - $1 })
            })
        #expect(error < unbounded / 2, "RMS error \(error) after 64 pushes; without feedback \(unbounded)")
    }

    @Test("A delta against a version the server no longer holds gets unknown_base; the client resends full weights")
    func unknownBaseFallback() throws {
        let s = try RunningServer(tensors: tensors(1)) { $0.aggregation.maxStaleness = 1 }
        let client = BinaryTransport(
            host: "127.0.0.1", port: s.port, clientID: "late", encoding: WireEncoding(values: .int2, delta: true))
        let other = BinaryTransport(host: "127.0.0.1", port: s.port, clientID: "other")
        _ = try other.push(tensors(2), datasets: 1, baseVersion: 0, pushID: 1)
        guard case .model(let v, _, _) = try client.fetch(heldVersion: 0) else { throw TestError("no model") }
        #expect(v == 1)
        _ = try other.push(tensors(3), datasets: 1, baseVersion: 0, pushID: 2)
        _ = try other.push(tensors(4), datasets: 1, baseVersion: 0, pushID: 3)
        let w3 = s.server.store.snapshot().tensors
        let wc = tensors(5)
        let (version, datasets) = try client.push(wc, datasets: 1, baseVersion: v, pushID: 7)
        #expect(version == 4 && datasets == 4)
        // The running average took the full, lossless weights: (3 W3 + Wc) / 4.
        let model = s.server.store.snapshot().tensors
        for t in model.indices {
            for i in stride(from: 0, to: model[t].count, by: 101) {
                #expect(abs(model[t].values[i] - (3 * w3[t].values[i] + wc[t].values[i]) / 4) < 1e-6)
            }
        }
    }
}
