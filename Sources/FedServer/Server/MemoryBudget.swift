import Synchronization

/// Bytes the server holds on behalf of clients (requests still arriving,
/// answers not yet written to the socket), counted against one limit.
///
/// Invariant: `used <= limit` at all times; `reserve` never lets it pass.
/// Every reservation is released exactly once, by whoever made it (a
/// connection's `BudgetLease` releases whatever it holds when it closes).
public final class MemoryBudget: Sendable {
    public let limit: Int
    private let usedBytes = Atomic<Int>(0)

    public init(limit: Int) { self.limit = limit }

    /// Bytes reserved now.
    public var used: Int { usedBytes.load(ordering: .relaxed) }

    /// Takes `bytes` from the budget; false (and nothing taken) if that would exceed the limit.
    public func reserve(_ bytes: Int) -> Bool {
        if bytes <= 0 { return true }
        var current = usedBytes.load(ordering: .relaxed)
        while true {
            guard current + bytes <= limit else { return false }
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

/// One connection's share of a `MemoryBudget`: the bytes it buffers for a
/// request in progress, resized as the request grows or completes. Lives on
/// the connection's event loop; `close()` returns everything.
struct BudgetLease {
    let budget: MemoryBudget
    private(set) var held = 0

    init(budget: MemoryBudget) { self.budget = budget }

    /// Makes the lease hold exactly `bytes`; false if growing it would exceed the budget (then unchanged).
    mutating func resize(to bytes: Int) -> Bool {
        if bytes > held {
            guard budget.reserve(bytes - held) else { return false }
        } else {
            budget.release(held - bytes)
        }
        held = bytes
        return true
    }

    mutating func close() { _ = resize(to: 0) }
}
