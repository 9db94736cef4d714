import FedCodec
import NIOCore
import Synchronization

/// One version of the model: immutable, shared by every reader of that version.
///
/// A reader that holds a snapshot sees all its tensors from one version, even
/// while writers publish newer ones. Encodings (a `MODEL` payload per
/// compression mode, the original demo's JSON) are produced at most once per
/// snapshot, on first use, and then shared by every request.
public final class ModelSnapshot: Sendable {
    public let version: UInt64
    public let datasets: UInt64
    public let tensors: [Tensor]
    /// With fetch deltas: the blob of the step from version - 1 to this one
    /// (`tensors` are exactly the previous version's plus its decoded values).
    public let step: [UInt8]?
    private let cache = Mutex<[String: EncodedPayload]>([:])

    public init(version: UInt64, datasets: UInt64, tensors: [Tensor], step: [UInt8]? = nil) {
        self.version = version
        self.datasets = datasets
        self.tensors = tensors
        self.step = step
    }

    /// Bytes that do not change between requests, and their CRC-32.
    public struct EncodedPayload: Sendable {
        public let bytes: [UInt8]
        public let crc: UInt32
        /// The same bytes as a NIO buffer; writing it to many channels shares one storage.
        public let buffer: ByteBuffer
    }

    /// The `MODEL` payload in `compression` (level 1 for the zlib modes).
    public func modelPayload(_ compression: Compression) -> EncodedPayload {
        cached("model-\(compression.rawValue)") {
            MessageCodec.payload(
                .model(Model(version: version, datasets: datasets, tensors: tensors, compression: compression)),
                level: 1)
        }
    }

    /// The original demo's fetch answer: `{"id": serverID, "datasets": N, "weights": [...]}`.
    public func legacyJSON(serverID: String) -> EncodedPayload {
        cached("json-\(serverID)") { LegacyJSON.modelAnswer(serverID: serverID, datasets: datasets, tensors: tensors) }
    }

    /// A complete `MODEL` frame for `requestID`: the 20-byte header is built
    /// per request, the payload is the shared one. The frame CRC is combined
    /// from the header's and the cached payload CRC, so a fetch costs no pass
    /// over the weights.
    func modelFrameHeader(requestID: UInt32, compression: Compression) -> (header: [UInt8], payload: [UInt8]) {
        let (header, payload) = modelFrame(requestID: requestID, compression: compression, version: 1)
        return (header, Array(payload.readableBytesView))
    }

    /// `modelFrameHeader` with the payload as the shared NIO buffer.
    /// `version` is the frame's (the connection's agreed version); the payload is the same in every version.
    public func modelFrame(requestID: UInt32, compression: Compression, version: UInt8 = 1)
        -> (header: [UInt8], payload: ByteBuffer)
    {
        let payload = modelPayload(compression)
        let header = FrameWriter.header(
            type: .model, requestID: requestID, payloadLength: payload.bytes.count, payloadCRC: payload.crc,
            version: version)
        return (header, payload.buffer)
    }

    /// Encodes under the snapshot's lock, so each encoding is made exactly once;
    /// readers that arrive meanwhile wait for it instead of encoding again.
    private func cached(_ key: String, _ make: () -> [UInt8]) -> EncodedPayload {
        cache.withLock { table in
            if let hit = table[key] { return hit }
            let bytes = make()
            let fresh = EncodedPayload(bytes: bytes, crc: CRC32.checksum(bytes), buffer: ByteBuffer(bytes: bytes))
            table[key] = fresh
            return fresh
        }
    }

    /// How many encodings this snapshot holds (for tests of the cache).
    var cachedEncodingCount: Int { cache.withLock { $0.count } }
}
