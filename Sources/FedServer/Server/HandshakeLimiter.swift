import Logging
import NIOCore
import NIOTLS
import Synchronization

/// Bounds on TLS handshakes, the costly part of a TLS connection for the
/// server (a key exchange and a signature, about 1 ms of CPU each, while a
/// client can replay one recorded ClientHello at no cost).
///
/// A connection over a bound is closed before its ClientHello is processed.
public struct TLSHandshakeLimits: Sendable, Equatable {
    /// Handshakes in progress at once, from all addresses; nil: no cap. Default 256.
    public var maxConcurrent: Int?
    /// Handshakes a second one address may start, on average; nil: no rate limit. Default 20.
    public var perAddressRate: Double?
    /// Handshakes one address may start at once after a quiet spell (the
    /// bucket's size). Default 40.
    public var perAddressBurst: Int
    /// Addresses whose rate is tracked at once (the table's bound; the
    /// entries idle longest are forgotten first). Default 4,096.
    public var trackedAddresses: Int

    public init(
        maxConcurrent: Int? = 256, perAddressRate: Double? = 20, perAddressBurst: Int = 40,
        trackedAddresses: Int = 4096
    ) {
        self.maxConcurrent = maxConcurrent
        self.perAddressRate = perAddressRate
        self.perAddressBurst = perAddressBurst
        self.trackedAddresses = trackedAddresses
    }

    /// No bounds at all.
    public static let unlimited = TLSHandshakeLimits(maxConcurrent: nil, perAddressRate: nil)
}

/// Token buckets per source address (IPv4 address, or IPv6 /64 prefix), in
/// a table of at most `capacity` entries: a bucket holds at most `burst`
/// tokens, refills at `rate` a second, and a handshake takes one. An address
/// not in the table has a full bucket, so forgetting one that is full changes
/// nothing; when the table is full, those are forgotten first, then the ones
/// touched longest ago, until a quarter of the table is free.
struct AddressRateTable {
    struct Bucket {
        var tokens: Double
        var updated: UInt64
    }

    let rate: Double
    let burst: Double
    let capacity: Int
    private(set) var buckets: [AddressKey: Bucket] = [:]

    init(rate: Double, burst: Int, capacity: Int) {
        self.rate = rate
        self.burst = Double(max(1, burst))
        self.capacity = max(1, capacity)
    }

    /// Takes a token for `key` at `now` (nanoseconds of a monotonic clock);
    /// false when its bucket is empty.
    mutating func take(_ key: AddressKey, now: UInt64) -> Bool {
        var bucket = buckets[key].map { refilled($0, now) } ?? Bucket(tokens: burst, updated: now)
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        if buckets[key] == nil && buckets.count >= capacity { evict(now) }
        buckets[key] = bucket
        return allowed
    }

    private func refilled(_ b: Bucket, _ now: UInt64) -> Bucket {
        let elapsed = Double(now &- min(now, b.updated)) / 1e9
        return Bucket(tokens: min(burst, b.tokens + elapsed * rate), updated: max(now, b.updated))
    }

    private mutating func evict(_ now: UInt64) {
        buckets = buckets.filter { refilled($0.value, now).tokens < burst }
        let target = capacity - capacity / 4
        guard buckets.count > target else { return }
        let oldest = buckets.sorted { $0.value.updated < $1.value.updated }.prefix(buckets.count - target)
        for (key, _) in oldest { buckets[key] = nil }
    }
}

/// The part of a peer's address one rate applies to: an IPv4 address (also
/// when it arrives IPv4-mapped, `::ffff:a.b.c.d`), or the /64 prefix of an
/// IPv6 address (one subscriber's usual allocation).
struct AddressKey: Hashable {
    var high: UInt64
    var low: UInt64

    init(high: UInt64, low: UInt64) {
        (self.high, self.low) = (high, low)
    }

    init(_ address: SocketAddress?) {
        switch address {
        case .v4(let a)?:
            self.init(high: 4, low: UInt64(UInt32(bigEndian: a.address.sin_addr.s_addr)))
        case .v6(let a)?:
            let bytes = withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                // An IPv4 client of a dual-stack socket (::ffff:a.b.c.d): limited as that IPv4 address.
                self.init(high: 4, low: bytes[12..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            } else {
                self.init(high: 6, low: bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            }
        default:
            self.init(high: 0, low: 0)
        }
    }
}

/// Admits TLS handshakes within `TLSHandshakeLimits`: a handshake holds a
/// slot from `admit` until its `release` (handshake completed, or the
/// connection closed), and takes a token from its address's bucket.
final class HandshakeLimiter: Sendable {
    enum Refusal: Equatable { case concurrency, rate }

    let limits: TLSHandshakeLimits
    private struct State {
        var inProgress = 0
        var rates: AddressRateTable?
        /// Refusals not yet reported in a log line, and when the last line was.
        var unreported: (rate: Int, concurrency: Int) = (0, 0)
        var reported: UInt64?
    }
    private let state: Mutex<State>

    init(limits: TLSHandshakeLimits) {
        self.limits = limits
        state = Mutex(
            State(
                rates: limits.perAddressRate.map {
                    AddressRateTable(rate: $0, burst: limits.perAddressBurst, capacity: limits.trackedAddresses)
                }))
    }

    /// Handshakes holding a slot now.
    var inProgress: Int { state.withLock { $0.inProgress } }

    /// Takes a slot and a token for a handshake from `key` at `now`
    /// (monotonic nanoseconds), or says which bound refuses it (taking
    /// neither). A refusal for the cap takes no token.
    func admit(_ key: AddressKey, now: UInt64) -> Refusal? {
        state.withLock { s in
            if let cap = limits.maxConcurrent, s.inProgress >= cap { return .concurrency }
            if s.rates != nil, !s.rates!.take(key, now: now) { return .rate }
            s.inProgress += 1
            return nil
        }
    }

    /// Gives back a slot `admit` took.
    func release() { state.withLock { $0.inProgress -= 1 } }

    /// Notes a refusal from `peer`; returns a log line about the refusals
    /// since the last one, at most one every 10 s (a flood must not flood the log).
    func noteRefusal(_ refusal: Refusal, peer: String, now: UInt64) -> String? {
        state.withLock { s in
            switch refusal {
            case .rate: s.unreported.rate += 1
            case .concurrency: s.unreported.concurrency += 1
            }
            if let last = s.reported, now &- last < 10_000_000_000 { return nil }
            s.reported = now
            defer { s.unreported = (0, 0) }
            let rate = limits.perAddressRate.map { "\($0)/s" } ?? "none"
            let cap = limits.maxConcurrent.map(String.init) ?? "none"
            return
                "refused \(s.unreported.rate) TLS handshakes over the per-address rate (\(rate), burst \(limits.perAddressBurst)) and \(s.unreported.concurrency) over the cap on handshakes in progress (\(cap)) since the last such line; the latest from \(peer)"
        }
    }
}

/// Sits after `NIOSSLServerHandler` and gives the connection's handshake
/// slot back once, when the handshake completes or the connection closes,
/// whichever comes first; then leaves the pipeline.
final class HandshakeSlot: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private var release: (() -> Void)?

    init(release: @escaping () -> Void) { self.release = release }

    /// Gives the slot back (once; later calls do nothing).
    func done() {
        release?()
        release = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            done()
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) { done() }
}
