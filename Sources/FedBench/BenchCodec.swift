import ArgumentParser
import FedCodec
import FedModel
import Foundation

extension BenchCommand {
    struct Codec: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bytes and encode/decode speed of the MLP's weights in every compression mode.",
            discussion: """
                Encodes the MNIST MLP's 199,210 Float32 weights (Glorot-uniform from --seed, or a \
                checkpoint's tensors with --checkpoint) as a MODEL frame in each compression mode, \
                decodes it back, and prints bytes and MB/s of weight data. zlib's crc32 over the same \
                bytes is the ceiling for raw mode, and Foundation's JSON text of the same weights \
                (the original demo's format) the baseline; both are measured in the same run.
                Build with -c release for meaningful figures.
                """
        )

        @Option(help: "Seed of the generated weights.")
        var seed: UInt64 = 1

        @Option(help: "Read the weights from this checkpoint file instead of generating them.")
        var checkpoint: String?

        @Option(help: "Seconds spent measuring each figure.")
        var seconds: Double = 0.5

        func validate() throws {
            guard seconds > 0, seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
        }

        func run() throws {
            let tensors: [Tensor]
            if let checkpoint {
                let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: checkpoint)))
                tensors = try Checkpoint.decode(bytes).tensors
            } else {
                tensors = glorotWeights(seed: seed)
            }
            let floats = tensors.reduce(0) { $0 + $1.count }
            let rawBytes = floats * 4
            let mb = Double(rawBytes) / 1e6
            print("weights: \(floats) floats, \(rawBytes) bytes raw\(checkpoint.map { " (from \($0))" } ?? "")")

            let raw = tensors.flatMap { $0.values }.withUnsafeBytes { [UInt8]($0) }
            let crcTime = Timing.measure(seconds: seconds) { _ = CRC32.checksum(raw) }
            let crcSpeed = mb / crcTime
            print(String(format: "crc32 ceiling: %.0f MB/s\n", crcSpeed))

            let header = ["mode", "bytes", "x raw", "encode MB/s", "decode MB/s"]
            var rows: [[String]] = []
            var speeds: [String: (enc: Double, dec: Double, bytes: Int)] = [:]
            let modes: [(String, Compression, Int32)] = [
                ("raw", .none, 0), ("zlib-1", .zlib, 1), ("zlib-6", .zlib, 6), ("zlib-9", .zlib, 9),
                ("shuffle-zlib-1", .shuffleZlib, 1), ("shuffle-zlib-6", .shuffleZlib, 6),
            ]
            for (name, compression, level) in modes {
                let message = Message.model(
                    Model(version: 1, datasets: 5000, tensors: tensors, compression: compression))
                let frame = MessageCodec.encode(message, requestID: 1, level: level)
                // Check the round trip once before timing it.
                guard try decodeFrame(frame) == message else { throw ValidationError("\(name) did not round-trip") }
                let enc = Timing.measure(seconds: seconds) {
                    _ = MessageCodec.encode(message, requestID: 1, level: level)
                }
                let dec = Timing.measure(seconds: seconds) { _ = try? decodeFrame(frame) }
                speeds[name] = (mb / enc, mb / dec, frame.count)
                rows.append([
                    name, "\(frame.count)", String(format: "%.3f", Double(frame.count) / Double(rawBytes)),
                    String(format: "%.0f", mb / enc), String(format: "%.0f", mb / dec),
                ])
            }
            let json = try jsonText(tensors)
            let jsonEnc = Timing.measure(seconds: seconds) { _ = try? jsonText(tensors) }
            let jsonDec = Timing.measure(seconds: seconds) { _ = try? parseJSON(json) }
            guard try parseJSON(json).count == floats else { throw ValidationError("JSON did not round-trip") }
            rows.append([
                "JSON (Foundation)", "\(json.count)", String(format: "%.3f", Double(json.count) / Double(rawBytes)),
                String(format: "%.1f", mb / jsonEnc), String(format: "%.1f", mb / jsonDec),
            ])
            print(Table.render(header: header, rows: rows))

            let rawMode = speeds["raw"]!
            print("\nbars:")
            Bar.check("raw encode >= 0.5x crc32", rawMode.enc / crcSpeed, atLeast: 0.5)
            Bar.check("raw decode >= 0.5x crc32", rawMode.dec / crcSpeed, atLeast: 0.5)
            for level in [1, 6] {
                Bar.check(
                    "shuffle-zlib-\(level) encode >= zlib-\(level) encode",
                    speeds["shuffle-zlib-\(level)"]!.enc / speeds["zlib-\(level)"]!.enc, atLeast: 1.0)
            }
            Bar.check("JSON encode >= 30x slower than raw", rawMode.enc / (mb / jsonEnc), atLeast: 30)
            Bar.check("JSON decode >= 30x slower than raw", rawMode.dec / (mb / jsonDec), atLeast: 30)
        }

        func decodeFrame(_ bytes: [UInt8]) throws -> Message? {
            var decoder = FrameDecoder()
            decoder.append(bytes)
            guard let frame = try decoder.next() else { return nil }
            return try MessageCodec.decode(frame)
        }

        /// The original demo's fetch answer: `{"id", "datasets", "weights": [nested lists]}`.
        func jsonText(_ tensors: [Tensor]) throws -> Data {
            let weights: [Any] = tensors.map { t -> Any in
                guard t.shape.count == 2 else { return t.values.map { Double($0) } }
                let cols = t.shape[1]
                return (0..<t.shape[0]).map { r in t.values[r * cols..<(r + 1) * cols].map { Double($0) } }
            }
            return try JSONSerialization.data(withJSONObject: ["id": "server", "datasets": 5000, "weights": weights])
        }

        func parseJSON(_ data: Data) throws -> [Float] {
            let root = try JSONSerialization.jsonObject(with: data) as? [String: Any]
            var out: [Float] = []
            func walk(_ x: Any) {
                if let list = x as? [Any] {
                    for e in list { walk(e) }
                } else if let n = x as? NSNumber {
                    out.append(n.floatValue)
                }
            }
            walk(root?["weights"] ?? [])
            return out
        }
    }
}

/// Glorot-uniform kernels and zero biases for the MNIST MLP, from a seed.
func glorotWeights(seed: UInt64) -> [Tensor] {
    MLP(seed: seed).tensors()
}
