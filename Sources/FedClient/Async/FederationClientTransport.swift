import Dispatch
import FedCodec
import Synchronization

/// The async client behind the blocking `ModelTransport` interface, for a
/// loop that runs on a thread of its own (`fed client` over TLS). Each call
/// blocks its thread until the client's task finishes; never call it from a
/// task of Swift's concurrency pool.
public final class FederationClientTransport: ModelTransport {
    public let client: FederationClient

    /// `client` should not retry itself (`RetryPolicy(maxAttempts: 1)`) when
    /// the loop using this transport retries.
    public init(client: FederationClient) {
        self.client = client
    }

    public func fetch(heldVersion: UInt64) throws -> FetchResult {
        let client = self.client
        return try Self.wait { try await client.fetch(held: heldVersion) }
    }

    public func push(_ tensors: [Tensor], datasets: UInt64, baseVersion: UInt64, pushID: UInt64) throws -> (
        version: UInt64, datasets: UInt64
    ) {
        let client = self.client
        let ack = try Self.wait {
            try await client.push(tensors, datasets: datasets, baseVersion: baseVersion, pushID: pushID)
        }
        return (ack.version, ack.datasets)
    }

    public var bytesSent: Int {
        let client = self.client
        return (try? Self.wait { await client.bytesSent }) ?? 0
    }

    public var bytesReceived: Int {
        let client = self.client
        return (try? Self.wait { await client.bytesReceived }) ?? 0
    }

    public func reset() {
        let client = self.client
        _ = try? Self.wait { await client.close() }
    }

    /// Runs `body` as a task and blocks until it finishes.
    private static func wait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                let value = try await body()
                result.withLock { $0 = .success(value) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        done.wait()
        return try result.withLock { $0! }.get()
    }
}
