import FedClient
import FedCodec
import FedServer
import Foundation

/// An edge server's upstream over the binary protocol (shuffle-zlib; lossless
/// weights unless `encoding` says otherwise), one persistent connection that
/// reconnects after a failure. With a delta encoding the transport keeps the
/// last upstream model fetched as the base of the next push.
///
/// Each call ends within `timeout` seconds (connecting, handshake, request
/// and answer together, however slowly the upstream sends), and by the time
/// given to `cutOff`.
final class BinaryUpstream: UpstreamLink, @unchecked Sendable {
    /// Guards `transport` (a class that is not thread-safe); the uplink calls from one thread anyway.
    private let lock = NSLock()
    private let transport: BinaryTransport
    private let cutoff = RequestCutoff()

    init(host: String, port: Int, clientID: String, token: String, timeout: Double, encoding: WireEncoding = .lossless)
    {
        transport = BinaryTransport(
            host: host, port: port, clientID: clientID, timeout: timeout, authToken: token, encoding: encoding,
            cutoff: cutoff)
    }

    func cutOff(at deadline: DispatchTime) { cutoff.cut(at: deadline) }

    func fetch(held: UInt64) throws -> UpstreamModel? {
        try call {
            switch try transport.fetch(heldVersion: held) {
            case .unchanged: nil
            case .model(let version, let datasets, let tensors):
                UpstreamModel(version: version, samples: datasets, tensors: tensors)
            }
        }
    }

    func push(_ weights: [Tensor], samples: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> UInt64 {
        try call {
            try transport.push(weights, datasets: samples, baseVersion: baseVersion, pushID: pushID).version
        }
    }

    /// Runs `body`; a refusal the server says is final becomes `RejectedUpdate`,
    /// and the connection is dropped after any other failure.
    private func call<T>(_ body: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        do {
            return try body()
        } catch let e as ClientError where !e.isRetryable && e.code.serverCode != nil {
            throw RejectedUpdate(e.code.serverCode!, e.message)
        } catch {
            transport.reset()
            throw error
        }
    }
}
