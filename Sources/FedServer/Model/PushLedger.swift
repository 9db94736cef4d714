import FedCodec

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The idempotency keys of recent pushes (`Protocol/SPEC.md` section 4.3),
/// each with the `ACK` it was given and when it was accepted.
///
/// Invariants:
/// - a key is remembered for at least `retention` after it was accepted,
///   whatever other clients send and under however many client ids: keys
///   leave only by age, never to make room;
/// - at most `capacity` keys are held; while that many are younger than
///   `retention`, a new keyed push is refused (`overloaded`, retryable)
///   instead of evicting one;
/// - lookups are by key (a hash table), not a scan.
///
/// Memory: at most `capacity` records of a client id (at most 256 bytes)
/// and four 64-bit numbers, plus the table's slot: about 40 MB at the limit
/// with 64-byte ids, under 10 MB for the 10,000-client fleet.
public struct PushLedger: Sendable, Equatable {
    /// How long a key is kept after its push was accepted: twice `fed client`'s
    /// default retry deadline of 60 s.
    public static let retentionMilliseconds: UInt64 = 120_000
    /// Most keys held at once.
    public static let capacity = 131_072

    /// Records oldest first from `head` on (earlier slots are expired).
    private var records: [PushRecord] = []
    private var head = 0
    private var index: [PushKey: Int] = [:]

    public init(_ records: [PushRecord] = []) {
        for r in records { insert(r) }
    }

    /// The keys held, oldest first (what the checkpoint stores).
    public var all: ArraySlice<PushRecord> { records[head...] }
    public var count: Int { records.count - head }
    public var isEmpty: Bool { count == 0 }

    public static func == (a: PushLedger, b: PushLedger) -> Bool { a.all.elementsEqual(b.all) }

    /// The record of a push with this key, if remembered.
    public func record(_ key: PushKey) -> PushRecord? { index[key].map { records[$0] } }

    /// Forgets keys accepted more than `retention` before `now` (milliseconds since 1970).
    ///
    /// After the wall clock stepped back, keys stamped later than `now` are
    /// taken as accepted `now`: kept another `retention`, never longer (a
    /// key's age is then unknown; forgetting it could apply a retry twice,
    /// keeping it until the clock caught up could fill the ledger).
    public mutating func expire(now: UInt64) {
        if let last = records.last, last.acceptedAt > now {
            for i in head..<records.count where records[i].acceptedAt > now { records[i].acceptedAt = now }
        }
        while head < records.count, records[head].acceptedAt &+ Self.retentionMilliseconds < now {
            index[PushKey(clientID: records[head].clientID, pushID: records[head].pushID)] = nil
            head += 1
        }
        if head > 1024 && head * 2 > records.count {
            records.removeFirst(head)
            head = 0
            for (i, r) in records.enumerated() { index[PushKey(clientID: r.clientID, pushID: r.pushID)] = i }
        }
    }

    /// Whether another key fits (after `expire`).
    public var hasRoom: Bool { count < Self.capacity }

    /// Remembers `record` (replacing an older record of the same key).
    public mutating func insert(_ record: PushRecord) {
        let key = PushKey(clientID: record.clientID, pushID: record.pushID)
        if let old = index[key] {
            records[old].acceptedAt = record.acceptedAt
            records[old].version = record.version
            records[old].datasets = record.datasets
            return
        }
        index[key] = records.count
        records.append(record)
    }

    /// Milliseconds since 1970 by the system's real-time clock (survives restarts, unlike a monotonic clock).
    public static func wallClock() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(max(0, ts.tv_sec)) * 1000 + UInt64(max(0, ts.tv_nsec)) / 1_000_000
    }
}
