import Foundation
import Testing

@testable import FedCodec

/// One entry of `Protocol/vectors/manifest.json`.
struct GoldenVector: CustomTestStringConvertible, Sendable {
    let name: String
    let kind: String
    let bytes: [UInt8]
    let canonical: Bool
    /// Expected frames, each re-serialised as sorted-key JSON for comparison.
    let frames: [String]
    let errorStage: String?
    let errorName: String?
    let errorCode: Int?

    var testDescription: String { name }

    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Protocol/vectors")

    static let all: [GoldenVector] = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("manifest.json"))
        let root = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (root["vectors"] as! [[String: Any]]).map { v in
            let file = directory.appendingPathComponent(v["file"] as! String)
            let error = v["error"] as? [String: Any]
            return GoldenVector(
                name: v["name"] as! String,
                kind: v["kind"] as! String,
                bytes: [UInt8](try! Data(contentsOf: file)),
                canonical: v["canonical"] as! Bool,
                frames: (v["frames"] as! [Any]).map { canonicalJSON($0) },
                errorStage: error?["stage"] as? String,
                errorName: error?["name"] as? String,
                errorCode: error?["code"] as? Int)
        }
    }()

    static var streams: [GoldenVector] { all.filter { $0.kind == "stream" } }
    static var checkpoints: [GoldenVector] { all.filter { $0.kind == "checkpoint" } }
}

func canonicalJSON(_ object: Any) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

/// A decoded message in the manifest's JSON form.
func manifestForm(_ message: Message, requestID: UInt32) -> String {
    func tensors(_ ts: [Tensor]) -> [[String: Any]] {
        ts.map { t in
            let raw = t.values.withUnsafeBytes { [UInt8]($0) }
            var d: [String: Any] = ["shape": t.shape, "count": t.count, "crc32": Int(CRC32.checksum(raw))]
            if t.count <= 32 {
                d["values_hex"] = t.values.map { v in
                    let s = String(v.bitPattern, radix: 16)
                    return String(repeating: "0", count: 8 - s.count) + s
                }
            }
            return d
        }
    }
    var fields: [String: Any]
    let type: String
    switch message {
    case .hello(let h):
        type = "hello"
        fields = [
            "min_version": Int(h.minVersion), "max_version": Int(h.maxVersion), "compressions": Int(h.compressions),
            "client_id": h.clientID, "auth_token": h.authToken,
        ]
    case .welcome(let w):
        type = "welcome"
        fields = [
            "version": Int(w.version), "compressions": Int(w.compressions), "server_id": w.serverID,
            "model_version": Int(w.modelVersion), "datasets": Int(w.datasets),
            "max_payload": Int(w.maxPayloadBytes),
        ]
        if w.version >= 2 {
            fields["max_decompressed"] = Int(w.maxDecompressedBytes)
            fields["max_datasets"] = Int(w.maxDatasets)
        }
        if w.version >= 3 {
            fields["encodings"] = Int(w.encodings)
            fields["delta_encoding"] = Int(w.deltaEncoding)
        }
    case .fetch(let held, let compression, let deltaEncodings):
        type = "fetch"
        fields = ["held_version": Int(held), "compression": compression.description]
        if deltaEncodings != 0 { fields["delta_encodings"] = Int(deltaEncodings) }
    case .model(let m):
        type = "model"
        fields = [
            "version": Int(m.version), "datasets": Int(m.datasets), "compression": m.compression.description,
            "tensors": tensors(m.tensors),
        ]
    case .modelUnchanged(let version, let datasets):
        type = "model_unchanged"
        fields = ["version": Int(version), "datasets": Int(datasets)]
    case .push(let p):
        type = "push"
        fields = [
            "client_id": p.clientID, "datasets": Int(p.datasets), "base_version": Int(p.baseVersion),
            "compression": p.compression.description, "tensors": tensors(p.tensors),
        ]
        if p.pushID != 0 { fields["push_id"] = NSNumber(value: p.pushID) }
        if p.encoding != .float32 { fields["encoding"] = p.encoding.description }
        if p.isDelta { fields["delta"] = true }
    case .modelDelta(let d):
        type = "model_delta"
        fields = [
            "version": Int(d.version), "datasets": Int(d.datasets), "from_version": Int(d.fromVersion),
            "encoding": d.encoding.description, "steps": d.steps.map { tensors($0) },
        ]
    case .ack(let version, let datasets):
        type = "ack"
        fields = ["version": Int(version), "datasets": Int(datasets)]
    case .error(let e):
        type = "error"
        fields = [
            "code": Int(e.code.rawValue), "retryable": e.retryable, "min_version": Int(e.minVersion),
            "max_version": Int(e.maxVersion), "message": e.message,
        ]
    case .ping(let nonce):
        type = "ping"
        fields = ["nonce": Int(bitPattern: UInt(nonce))]
    case .pong(let nonce):
        type = "pong"
        fields = ["nonce": Int(bitPattern: UInt(nonce))]
    case .other:
        type = message.descriptor.name.lowercased()
        if let c = message.as(CheckIn.self) {
            fields = [
                "features": NSNumber(value: c.features.rawValue), "abilities": Int(c.abilities.rawValue),
                "wait_ms": Int(c.waitMilliseconds), "properties": c.properties,
            ]
        } else if let a = message.as(Assignment.self) {
            fields = [
                "kind": Int(a.kind.rawValue), "features": NSNumber(value: a.features.rawValue),
                "task_id": NSNumber(value: a.taskID), "round": NSNumber(value: a.round),
                "model_version": NSNumber(value: a.modelVersion), "deadline_ms": Int(a.deadlineMilliseconds),
                "retry_after_ms": Int(a.retryAfterMilliseconds), "reason": Int(a.reason.rawValue),
                "parameters": a.parameters,
            ]
        } else if let r = message.as(Report.self) {
            fields = [
                "task_id": NSNumber(value: r.taskID), "samples": NSNumber(value: r.samples),
                "compression": r.compression.description, "tensors": tensors(r.tensors),
            ]
            if r.encoding != .float32 { fields["encoding"] = r.encoding.description }
            if r.isDelta { fields["delta"] = true }
        } else if let e = message.as(EvaluationReport.self) {
            fields = [
                "task_id": NSNumber(value: e.taskID), "model_version": NSNumber(value: e.modelVersion),
                "examples": NSNumber(value: e.examples), "loss": e.loss, "metrics": e.metrics,
            ]
        } else if let secure = secureAggregationForm(message) {
            fields = secure
        } else {
            // A message this test does not know: its name only, so the comparison fails.
            fields = [:]
        }
    }
    return canonicalJSON(["type": type, "request_id": Int(requestID), "message": fields])
}

/// Lowercase hex, as the manifest writes byte strings.
func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] })
}

/// The manifest form of a `SECAGG_*` message's fields (feature secure aggregation), or nil for another message.
func secureAggregationForm(_ message: Message) -> [String: Any]? {
    func bundles(_ bs: [SealedShares]) -> [[String: Any]] {
        bs.map { ["participant": Int($0.participant), "sealed": hex($0.sealed)] }
    }
    if let k = message.as(SecAggKeys.self) {
        return [
            "task_id": NSNumber(value: k.taskID), "encryption_key": hex(k.encryptionKey),
            "masking_key": hex(k.maskingKey),
        ]
    }
    if let r = message.as(SecAggRoster.self) {
        return [
            "task_id": NSNumber(value: r.taskID), "participant": Int(r.participant),
            "neighbours": r.neighbours.map {
                ["id": Int($0.id), "encryption_key": hex($0.encryptionKey), "masking_key": hex($0.maskingKey)]
            },
        ]
    }
    if let s = message.as(SecAggShares.self) {
        return ["task_id": NSNumber(value: s.taskID), "bundles": bundles(s.bundles)]
    }
    if let i = message.as(SecAggInbox.self) {
        return ["task_id": NSNumber(value: i.taskID), "bundles": bundles(i.bundles)]
    }
    if let i = message.as(SecAggInput.self) {
        return [
            "task_id": NSNumber(value: i.taskID), "element_bytes": i.elementBytes, "values": i.values.map { Int($0) },
        ]
    }
    if let s = message.as(SecAggSurvivors.self) {
        return [
            "task_id": NSNumber(value: s.taskID), "contributors": Int(s.contributors),
            "survivors": s.survivors.map { Int($0) },
        ]
    }
    if let k = message.as(SecAggSignedKeys.self) {
        return [
            "task_id": NSNumber(value: k.keys.taskID), "encryption_key": hex(k.keys.encryptionKey),
            "masking_key": hex(k.keys.maskingKey), "signature": hex(k.signature),
        ]
    }
    if let r = message.as(SecAggSignedRoster.self) {
        return [
            "task_id": NSNumber(value: r.taskID), "participant": Int(r.participant), "session": hex(r.session),
            "cohort": r.cohort.map { ["id": Int($0.id), "name": $0.name] },
            "neighbours": r.neighbours.map {
                [
                    "id": Int($0.id), "encryption_key": hex($0.encryptionKey), "masking_key": hex($0.maskingKey),
                    "signature": hex($0.signature),
                ]
            },
        ]
    }
    if let c = message.as(SecAggContributors.self) {
        return ["task_id": NSNumber(value: c.taskID), "contributors": c.contributors.map { Int($0) }]
    }
    if let c = message.as(SecAggConsistency.self) {
        return ["task_id": NSNumber(value: c.taskID), "signature": hex(c.signature)]
    }
    if let s = message.as(SecAggSignatures.self) {
        return [
            "task_id": NSNumber(value: s.taskID),
            "signatures": s.signatures.map { ["signer": Int($0.signer), "signature": hex($0.signature)] },
        ]
    }
    if let u = message.as(SecAggUnmask.self) {
        return [
            "task_id": NSNumber(value: u.taskID),
            "shares": u.shares.map { ["owner": Int($0.owner), "kind": Int($0.kind.rawValue), "share": hex($0.share)] },
        ]
    }
    return nil
}

/// What feeding a whole stream produced: decoded frames (manifest form), then the error if any.
struct StreamOutcome: Equatable {
    var frames: [String] = []
    var errorStage: String?
    var error: CodecError?
}

/// Feeds `bytes` to a fresh decoder in the given chunks, decoding every frame's message.
func runStream(_ bytes: [UInt8], chunks: [Range<Int>]) -> StreamOutcome {
    var decoder = FrameDecoder()
    var outcome = StreamOutcome()
    do throws(CodecError) {
        for range in chunks {
            decoder.append(bytes[range])
            while let frame = try decoder.next() {
                do throws(CodecError) {
                    let message = try MessageCodec.decode(frame)
                    outcome.frames.append(manifestForm(message, requestID: frame.header.requestID))
                } catch {
                    outcome.errorStage = "message"
                    outcome.error = error
                    return outcome
                }
            }
        }
        try decoder.finish()
    } catch {
        outcome.errorStage = "frame"
        outcome.error = error
    }
    return outcome
}

@Suite("Golden vectors")
struct GoldenVectorTests {
    @Test func manifestHasEnoughVectors() {
        #expect(GoldenVector.all.count >= 24)
        // Every message type of versions 1-4 has at least one vector that decodes it.
        let decoded = Set(
            GoldenVector.streams.flatMap(\.frames).compactMap { frame in
                (try? JSONSerialization.jsonObject(with: Data(frame.utf8)) as? [String: Any])?["type"] as? String
            })
        for d in MessageRegistry.all { #expect(decoded.contains(d.name.lowercased()), "no vector decodes \(d.name)") }
        #expect(Set(GoldenVector.all.map(\.name)).count == GoldenVector.all.count)
    }

    @Test(
        "Every SECAGG_* message (the consistency check's too) and the secure-train ASSIGNMENT have valid and refused vectors"
    )
    func secureAggregationVectors() {
        let byName = Dictionary(uniqueKeysWithValues: GoldenVector.all.map { ($0.name, $0) })
        let names = [
            "secagg_keys", "secagg_roster", "secagg_shares", "secagg_inbox", "secagg_input", "secagg_survivors",
            "secagg_unmask", "assignment_secure_train", "secagg_signed_keys", "secagg_signed_roster",
            "secagg_contributors", "secagg_consistency", "secagg_signatures",
        ]
        for name in names {
            #expect(byName[name]?.errorName == nil && byName[name]?.frames.count == 1, "no valid \(name)")
            let refused = GoldenVector.all.filter { $0.name.hasPrefix(name + "_") && $0.errorStage == "message" }
            #expect(!refused.isEmpty, "no refused \(name)")
        }
        // Both element widths of a masked input.
        #expect(byName["secagg_input"]?.frames.first?.contains("\"element_bytes\":4") == true)
        #expect(byName["secagg_input_16"]?.frames.first?.contains("\"element_bytes\":2") == true)
        #expect(byName["assignment_secure_train_task_zero"]?.errorName == "malformed_payload")
    }

    @Test("Each stream vector decodes as the manifest says", arguments: GoldenVector.streams)
    func decodeWhole(_ vector: GoldenVector) {
        let outcome = runStream(vector.bytes, chunks: [0..<vector.bytes.count])
        #expect(outcome.frames == vector.frames)
        #expect(outcome.errorStage == vector.errorStage)
        #expect(outcome.error?.code.name == vector.errorName)
        #expect(outcome.error.map { Int($0.code.rawValue) } == vector.errorCode)
    }

    @Test("Each stream vector, split at every point, decodes the same", arguments: GoldenVector.streams)
    func decodeAtEverySplit(_ vector: GoldenVector) {
        let whole = runStream(vector.bytes, chunks: [0..<vector.bytes.count])
        let n = vector.bytes.count
        // Every split point for small vectors; 97 spread points for large ones.
        let points = n <= 4096 ? Array(0...n) : (0...96).map { $0 * n / 96 }
        for split in points {
            let outcome = runStream(vector.bytes, chunks: [0..<split, split..<n])
            #expect(outcome == whole, "split at \(split)")
        }
    }

    @Test("Each stream vector fed one byte at a time decodes the same", arguments: GoldenVector.streams)
    func decodeByteByByte(_ vector: GoldenVector) {
        let whole = runStream(vector.bytes, chunks: [0..<vector.bytes.count])
        let outcome = runStream(vector.bytes, chunks: (0..<vector.bytes.count).map { $0..<$0 + 1 })
        #expect(outcome == whole)
    }

    @Test("Canonical vectors re-encode byte for byte", arguments: GoldenVector.streams.filter(\.canonical))
    func reencode(_ vector: GoldenVector) throws {
        var decoder = FrameDecoder()
        decoder.append(vector.bytes)
        var out: [UInt8] = []
        while let frame = try decoder.next() {
            out += MessageCodec.encode(
                try MessageCodec.decode(frame), requestID: frame.header.requestID, version: frame.header.version)
        }
        #expect(out == vector.bytes)
    }

    @Test("Each checkpoint vector reads as the manifest says", arguments: GoldenVector.checkpoints)
    func checkpoint(_ vector: GoldenVector) {
        do throws(CodecError) {
            let ck = try Checkpoint.decode(vector.bytes)
            #expect(vector.errorName == nil)
            let model = Message.model(Model(version: ck.version, datasets: ck.datasets, tensors: ck.tensors))
            // Compare through the MODEL form, minus the fields a checkpoint lacks.
            let form =
                try! JSONSerialization.jsonObject(with: Data(manifestForm(model, requestID: 0).utf8)) as! [String: Any]
            var fields = form["message"] as! [String: Any]
            fields["compression"] = nil
            if !ck.recentPushes.isEmpty {
                fields["recent_pushes"] = ck.recentPushes.map {
                    [
                        "client_id": $0.clientID, "push_id": NSNumber(value: $0.pushID),
                        "version": Int($0.version), "datasets": Int($0.datasets),
                    ] as [String: Any]
                }
            }
            if let state = ck.strategyState {
                func forms(_ ts: [Tensor]) -> Any {
                    let m = Message.model(Model(version: 0, datasets: 0, tensors: ts))
                    let json = try! JSONSerialization.jsonObject(with: Data(manifestForm(m, requestID: 0).utf8))
                    return ((json as! [String: Any])["message"] as! [String: Any])["tensors"]!
                }
                fields["strategy_state"] =
                    [
                        "buffer": state.buffer.map {
                            [
                                "client_id": $0.clientID, "samples": Int($0.samples), "staleness": Int($0.staleness),
                                "weight": $0.weight, "norm": $0.norm, "delta": forms($0.delta),
                            ] as [String: Any]
                        },
                        "tensors": state.tensors.mapValues { forms($0) },
                        "scalars": state.scalars,
                    ] as [String: Any]
            }
            #expect(canonicalJSON(["type": "checkpoint", "message": fields]) == vector.frames.first)
        } catch {
            #expect(error.code.name == vector.errorName, "\(error)")
        }
    }
}
