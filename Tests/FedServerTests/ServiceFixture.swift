import FedCodec
import FedStorage
import FedTestSupport
import Foundation
import Logging

@testable import FedServer

/// A `FederationService` (and the `ServerContext` a connection handler
/// needs) over a small model, with no socket and no event loop: for tests of
/// the core and of the handlers in `EmbeddedChannel`s.
final class ServiceFixture {
    static let shapes = [[2, 3], [3]]
    let dir: URL
    let store: ModelStore
    let committer: GroupCommitter
    let budget: MemoryBudget
    let lifecycle = ServerLifecycle()
    let metrics = ServerMetrics()
    let service: FederationService
    let context: ServerContext

    init(
        budgetBytes: Int = 64 << 20, deltaEncoding: ValueEncoding? = nil,
        configure: (inout ServerConfiguration) -> Void = { _ in }
    ) throws {
        dir = try temporaryDirectory("service")
        var configuration = ServerConfiguration(
            network: .init(port: 0), aggregation: .init(deltaEncoding: deltaEncoding),
            storage: .init(checkpointPath: dir.appendingPathComponent("model.fedk").path))
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let tensors = Self.tensors(0)
        store = ModelStore(
            initial: ModelSnapshot(version: 0, datasets: 0, tensors: tensors),
            configuration: .init(
                maxDatasets: configuration.limits.maxDatasets, strategy: configuration.aggregation.strategy,
                maxStaleness: configuration.aggregation.maxStaleness,
                deltaEncoding: configuration.aggregation.deltaEncoding))
        committer = GroupCommitter(store: store, checkpoints: InMemoryCheckpointStore(), metrics: metrics)
        budget = MemoryBudget(limit: budgetBytes)
        let limits = ResolvedLimits(configuration: configuration, modelShapes: Self.shapes)
        service = FederationService(
            configuration: configuration, limits: limits, modelShapes: Self.shapes, store: store,
            committer: committer, budget: budget, lifecycle: lifecycle, metrics: metrics, logger: logger)
        context = ServerContext(
            configuration: configuration, limits: limits, modelShapes: Self.shapes, store: store,
            committer: committer, budget: budget, lifecycle: lifecycle, metrics: metrics,
            registry: ConnectionRegistry(limit: 16, perAddressLimit: nil), logger: logger, tls: nil,
            handshakes: HandshakeLimiter(limits: TLSHandshakeLimits()), service: service)
    }

    deinit { try? FileManager.default.removeItem(at: dir) }

    static func tensors(_ value: Float) -> [Tensor] { constantTensors(value, shapes: shapes) }

    /// The core's answer to `push`, waited for.
    func push(
        _ request: FederationService.PushRequest, as session: FederationService.Session
    ) -> Result<Acknowledgement, ErrorMessage> {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        if let refusal = service.push(
            request, session: session,
            completion: { result in
                box.set(result)
                done.signal()
            })
        {
            return .failure(refusal)
        }
        done.wait()
        return box.get()
    }

    /// A session as HELLO would agree it.
    static func session(_ id: String = "c", version: UInt8 = 3) -> FederationService.Session {
        .init(clientID: id, version: version, compressions: .all, transport: .binary)
    }
}

/// One result handed from the committer's thread to the test.
private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<Acknowledgement, ErrorMessage>?
    func set(_ r: Result<Acknowledgement, ErrorMessage>) { lock.withLock { result = r } }
    func get() -> Result<Acknowledgement, ErrorMessage> { lock.withLock { result! } }
}
