import Synchronization

/// Bytes the server holds on behalf of clients (requests still arriving,
/// answers not yet written to the socket), counted against one limit.
///
/// Invariant: `used <= limit` at all times; `reserve` never lets it pass.
/// Requests still arriving may take at most `requestLimit` (5/8 of the
/// limit), so answers to other clients (a fetch) always find room: the rest
/// of the limit is left for them and for the process itself (its code, the
/// model and its cached encodings, allocator slack), which is not counted.
/// Every reservation is released exactly once, by whoever made it (a
/// connection's `BudgetLease` releases whatever it holds when it closes).
public final class MemoryBudget: Sendable {
    public let limit: Int
    /// The most that requests still arriving may hold together.
    public let requestLimit: Int
    private let usedBytes = Atomic<Int>(0)

    public init(limit: Int) {
        self.limit = limit
        self.requestLimit = limit / 8 * 5
    }

    /// Bytes reserved now.
    public var used: Int { usedBytes.load(ordering: .relaxed) }

    /// Takes `bytes` from the budget; false (and nothing taken) if that would
    /// exceed the limit (for a request, `requestLimit`).
    public func reserve(_ bytes: Int, forRequest: Bool = false) -> Bool {
        if bytes <= 0 { return true }
        let ceiling = forRequest ? requestLimit : limit
        var current = usedBytes.load(ordering: .relaxed)
        while true {
            guard current + bytes <= ceiling else { return false }
            let (exchanged, original) = usedBytes.compareExchange(
                expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Gives back bytes taken by `reserve`.
    public func release(_ bytes: Int) {
        if bytes > 0 { usedBytes.subtract(bytes, ordering: .relaxed) }
    }
}

/// One connection's share of a `MemoryBudget` for requests: the bytes it
/// buffers for a request in progress, resized as the request grows or completes. Lives on
/// the connection's event loop; `close()` returns everything.
struct BudgetLease {
    let budget: MemoryBudget
    private(set) var held = 0

    init(budget: MemoryBudget) { self.budget = budget }

    /// Makes the lease hold exactly `bytes`; false if growing it would exceed the budget (then unchanged).
    mutating func resize(to bytes: Int) -> Bool {
        if bytes > held {
            guard budget.reserve(bytes - held, forRequest: true) else { return false }
        } else {
            budget.release(held - bytes)
        }
        held = bytes
        return true
    }

    mutating func close() { _ = resize(to: 0) }
}
