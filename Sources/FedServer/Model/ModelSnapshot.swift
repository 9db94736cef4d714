import FedCodec
import NIOCore
import Synchronization

/// One version of the model: immutable, shared by every reader of that version.
///
/// A reader that holds a snapshot sees all its tensors from one version, even
/// while writers publish newer ones. Encodings (a `MODEL` payload per
/// compression mode, the original demo's JSON) are produced at most once per
/// snapshot and then shared by every request: each in a cell of its own, so
/// a reader waits only for the encoding it asked for while another thread
/// makes it, never for another encoding or another version. Before a new
/// version is published, the committer makes the encodings readers used of
/// the previous one (`prepareEncodings(usedBy:)`), so that those readers
/// find them made instead of making them on an event loop.
public final class ModelSnapshot: Sendable {
    public let version: UInt64
    public let datasets: UInt64
    public let tensors: [Tensor]
    /// With fetch deltas: the blob of the step from version - 1 to this one
    /// (`tensors` are exactly the previous version's plus its decoded values).
    public let step: [UInt8]?

    /// An encoding of the snapshot that is made once and shared.
    enum Encoding: Hashable, Sendable {
        /// The `MODEL` payload in a compression (level 1 for the zlib modes).
        case model(Compression)
        /// The original demo's fetch answer naming a server.
        case legacyJSON(serverID: String)
    }

    /// Made once: the first caller makes the value under the cell's lock;
    /// callers that arrive meanwhile wait for it (they need the same bytes).
    private final class Cell: Sendable {
        let value = Mutex<EncodedPayload?>(nil)
    }

    /// The cells, and which encodings readers have asked for (not the
    /// committer's preparing); held only to look a cell up, never while encoding.
    private struct Cells {
        var cells: [Encoding: Cell] = [:]
        var requested: Set<Encoding> = []
    }
    private let cells = Mutex(Cells())

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
        payload(.model(compression), requested: true)
    }

    /// The original demo's fetch answer: `{"id": serverID, "datasets": N, "weights": [...]}`.
    public func legacyJSON(serverID: String) -> EncodedPayload {
        payload(.legacyJSON(serverID: serverID), requested: true)
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

    /// Makes the encodings readers asked for of `previous` (an older
    /// version), so that readers of this one find them made. Called by the
    /// committer before it publishes this snapshot, off every event loop.
    func prepareEncodings(usedBy previous: ModelSnapshot) {
        let used = previous.cells.withLock { $0.requested }
        for encoding in used { _ = payload(encoding, requested: false) }
    }

    /// The encoding, made now if no one has made it yet.
    private func payload(_ encoding: Encoding, requested: Bool) -> EncodedPayload {
        let cell = cells.withLock { state in
            if requested { state.requested.insert(encoding) }
            if let cell = state.cells[encoding] { return cell }
            let cell = Cell()
            state.cells[encoding] = cell
            return cell
        }
        return cell.value.withLock { value in
            if let value { return value }
            let bytes = make(encoding)
            let fresh = EncodedPayload(bytes: bytes, crc: CRC32.checksum(bytes), buffer: ByteBuffer(bytes: bytes))
            value = fresh
            return fresh
        }
    }

    private func make(_ encoding: Encoding) -> [UInt8] {
        switch encoding {
        case .model(let compression):
            MessageCodec.payload(
                .model(Model(version: version, datasets: datasets, tensors: tensors, compression: compression)),
                level: 1)
        case .legacyJSON(let serverID):
            LegacyJSON.modelAnswer(serverID: serverID, datasets: datasets, tensors: tensors)
        }
    }

    /// How many encodings this snapshot holds (for tests of the cache).
    var cachedEncodingCount: Int {
        let all = cells.withLock { Array($0.cells.values) }
        return all.reduce(0) { n, cell in n + (cell.value.withLock { $0 == nil } ? 0 : 1) }
    }
}
