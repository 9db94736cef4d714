import Testing

@testable import FedCodec

/// A message of a later version, as a `ProtocolMessage` defines one: its
/// descriptor and its codec in one place.
private struct Probe: ProtocolMessage {
    static let descriptor = MessageDescriptor(
        type: MessageType(defining: 0x7F), name: "PROBE", label: "probe", sinceVersion: 3, feature: 1 << 0,
        direction: .toServer)
    var round: UInt64
    var note: String

    func write(into writer: inout ByteWriter, version: UInt8) {
        writer.u64(round)
        writer.string(note)
    }

    static func read(from reader: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError) -> Probe {
        Probe(round: try reader.u64("round"), note: try reader.string("note", maxBytes: 64))
    }
}

@Suite("Messages described once")
struct MessageRegistryTests {
    @Test("Every message of versions 1-4 is in the table once, named as the spec and the code name it")
    func builtInTable() {
        let all = MessageRegistry.all
        #expect(MessageRegistry.builtIn.count == 11 && all.count == 27)
        #expect(Set(all.map(\.type.rawValue)).count == all.count)
        #expect(all.map(\.type) == MessageType.allCases)
        for d in all {
            #expect("\(d.type)" == d.label)
            #expect(MessageType(rawValue: d.type.rawValue) == d.type)
        }
        #expect(MessageType(rawValue: 0x1C) == nil && MessageType(rawValue: 0) == nil)
        // Version 4 (SPEC.md section 4): the rounds' messages, their numbers and directions.
        let rounds: [(MessageType, String, MessageDescriptor.Direction)] = [
            (.checkIn, "CHECK_IN", .toServer), (.assignment, "ASSIGNMENT", .toClient), (.report, "REPORT", .toServer),
            (.evaluationReport, "EVALUATION_REPORT", .toServer),
        ]
        for (type, name, direction) in rounds {
            #expect(type.descriptor?.name == name && type.descriptor?.sinceVersion == 4)
            #expect(type.descriptor?.direction == direction)
        }
        #expect(
            [MessageType.checkIn, .assignment, .report, .evaluationReport].map(\.rawValue) == [0x0C, 0x0D, 0x0E, 0x0F])
        #expect(MessageType.evaluationReport.descriptor?.feature == Features.evaluation.rawValue)
        // Version 4, feature secure aggregation (bit 2, SPEC.md section 12.11): types 0x10-0x16, in the
        // order a client sends and receives them.
        let secure: [(MessageType, String, String, MessageDescriptor.Direction)] = [
            (.secAggKeys, "SECAGG_KEYS", "secAggKeys", .toServer),
            (.secAggRoster, "SECAGG_ROSTER", "secAggRoster", .toClient),
            (.secAggShares, "SECAGG_SHARES", "secAggShares", .toServer),
            (.secAggInbox, "SECAGG_INBOX", "secAggInbox", .toClient),
            (.secAggInput, "SECAGG_INPUT", "secAggInput", .toServer),
            (.secAggSurvivors, "SECAGG_SURVIVORS", "secAggSurvivors", .toClient),
            (.secAggUnmask, "SECAGG_UNMASK", "secAggUnmask", .toServer),
        ]
        #expect(secure.map(\.0.rawValue) == Array(0x10...0x16))
        #expect(Features.secureAggregation.rawValue == 1 << 2)
        for (type, name, label, direction) in secure {
            #expect(type.descriptor?.name == name && type.descriptor?.label == label && "\(type)" == label)
            #expect(type.descriptor?.sinceVersion == 4 && type.descriptor?.direction == direction)
            #expect(type.descriptor?.feature == Features.secureAggregation.rawValue)
            #expect(MessageRegistry.extensions.contains { $0.descriptor.type == type })
        }
        // The consistency check's messages: 0x17-0x1B, gated on the same bit.
        let consistency: [(MessageType, String, MessageDescriptor.Direction)] = [
            (.secAggSignedKeys, "SECAGG_SIGNED_KEYS", .toServer),
            (.secAggSignedRoster, "SECAGG_SIGNED_ROSTER", .toClient),
            (.secAggContributors, "SECAGG_CONTRIBUTORS", .toClient),
            (.secAggConsistency, "SECAGG_CONSISTENCY", .toServer),
            (.secAggSignatures, "SECAGG_SIGNATURES", .toClient),
        ]
        #expect(consistency.map(\.0.rawValue) == Array(0x17...0x1B))
        for (type, name, direction) in consistency {
            #expect(type.descriptor?.name == name && type.descriptor?.direction == direction)
            #expect(
                type.descriptor?.sinceVersion == 4 && type.descriptor?.feature == Features.secureAggregation.rawValue)
        }
        #expect(Assignment.Kind.secureTrain.rawValue == 3)
        #expect(MessageType.modelDelta.descriptor?.name == "MODEL_DELTA")
        #expect(MessageType.modelDelta.descriptor?.sinceVersion == 3)
        #expect(MessageType.push.descriptor?.direction == .toServer)
        #expect(Message.ack(version: 1, datasets: 1).descriptor.direction == .toClient)
    }

    @Test("A frame header's type must be defined in the frame's version", arguments: [UInt8(1), 2, 3, 4])
    func headerVersionGate(version: UInt8) throws {
        let bytes = MessageCodec.encode(
            .modelDelta(
                ModelDelta(version: 2, datasets: 1, fromVersion: 1, steps: [], encoding: .float32, compression: .none)),
            requestID: 1, version: version)
        do throws(CodecError) {
            var decoder = FrameDecoder()
            decoder.append(bytes)
            let frame = try decoder.next()
            #expect(version >= 3 && frame?.header.type == .modelDelta)
        } catch {
            #expect(version < 3 && error.code == .unknownMessageType)
        }
        let keys = MessageCodec.encode(
            .other(
                AnyProtocolMessage(
                    SecAggKeys(
                        taskID: 1, encryptionKey: .init(repeating: 1, count: 32),
                        maskingKey: .init(repeating: 2, count: 32)))), requestID: 3, version: version)
        do throws(CodecError) {
            var decoder = FrameDecoder()
            decoder.append(keys)
            let frame = try decoder.next()
            #expect(version >= 4 && frame?.header.type == .secAggKeys)
        } catch {
            #expect(version < 4 && error.code == .unknownMessageType)
        }
        let checkIn = MessageCodec.encode(.other(AnyProtocolMessage(CheckIn())), requestID: 2, version: version)
        do throws(CodecError) {
            var decoder = FrameDecoder()
            decoder.append(checkIn)
            let frame = try decoder.next()
            #expect(version >= 4 && frame?.header.type == .checkIn)
        } catch {
            #expect(version < 4 && error.code == .unknownMessageType)
        }
    }

    @Test("A later message round-trips as Message.other through the codec, gated by its version")
    func extensionMessage() throws {
        let probe = Probe(round: 42, note: "cohort 7")
        let message = Message.other(AnyProtocolMessage(probe))
        #expect(message.type.rawValue == 0x7F && message.as(Probe.self) == probe)
        #expect(message.descriptor.name == "PROBE" && "\(message.type)" == "type0x7F")
        let payload = MessageCodec.payload(message, version: 3)
        func frame(_ version: UInt8) -> Frame {
            Frame(
                header: FrameHeader(
                    version: version, type: Probe.descriptor.type, requestID: 1, payloadLength: UInt32(payload.count)),
                payload: payload)
        }
        let decoded = try MessageCodec.decode(frame(3), extensions: [Probe.self])
        #expect(decoded == message && decoded.as(Probe.self)?.note == "cohort 7")
        // Not defined before its version, and unknown to a peer that does not list it.
        for (version, extensions) in [(UInt8(2), [Probe.self] as [any ProtocolMessage.Type]), (3, [])] {
            #expect(throws: CodecError.self) { try MessageCodec.decode(frame(version), extensions: extensions) }
        }
        // Trailing bytes are refused as for every message.
        var long = frame(3)
        long.payload.append(0)
        #expect(throws: CodecError.self) { try MessageCodec.decode(long, extensions: [Probe.self]) }
    }
}
