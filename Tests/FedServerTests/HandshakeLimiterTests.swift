import NIOCore
import Testing

@testable import FedServer

/// The TLS handshake limiter's logic, on a clock the tests move by hand.
@Suite("TLS handshake limits")
struct HandshakeLimiterTests {
    static let second: UInt64 = 1_000_000_000
    static func key(_ n: UInt64) -> AddressKey { AddressKey(high: 4, low: n) }

    /// How many of `attempts` handshakes from `key` at `now` the table admits.
    static func admitted(_ table: inout AddressRateTable, _ key: AddressKey, at now: UInt64, _ attempts: Int = 1)
        -> Int
    {
        (0..<attempts).reduce(0) { n, _ in n + (table.take(key, now: now) ? 1 : 0) }
    }

    @Test("A bucket gives its burst at once, then its rate, and never more than its burst after a quiet spell")
    func bucket() {
        var table = AddressRateTable(rate: 2, burst: 3, capacity: 16)
        let a = Self.key(1)
        let t0: UInt64 = 1_000 * Self.second
        #expect(Self.admitted(&table, a, at: t0, 4) == 3)
        // Half a second at 2 a second: one more.
        #expect(Self.admitted(&table, a, at: t0 + Self.second / 2, 2) == 1)
        // An hour later: the burst again, not 7,200.
        let later = t0 + 3_600 * Self.second
        #expect(Self.admitted(&table, a, at: later, 10) == 3)
        // A refused attempt takes nothing: the next token still comes half a second after the last one.
        #expect(Self.admitted(&table, a, at: later + Self.second / 4) == 0)
        #expect(Self.admitted(&table, a, at: later + Self.second / 2) == 1)
    }

    @Test("Addresses have buckets of their own")
    func perAddress() {
        var table = AddressRateTable(rate: 1, burst: 2, capacity: 16)
        let t: UInt64 = 5 * Self.second
        #expect(Self.admitted(&table, Self.key(1), at: t, 3) == 2)
        #expect(Self.admitted(&table, Self.key(2), at: t, 3) == 2)
    }

    @Test("The table stays within its capacity, and an address still being limited outlives idle ones")
    func boundedTable() {
        var table = AddressRateTable(rate: 0.001, burst: 1, capacity: 64)
        let t: UInt64 = 10 * Self.second
        let limited = Self.key(999_999)
        #expect(Self.admitted(&table, limited, at: t, 2) == 1)
        var largest = 0
        var limitedAdmitted = 0
        for n in 0..<10_000 as Range<UInt64> {
            _ = table.take(Self.key(n), now: t + n * 1_000)
            largest = max(largest, table.buckets.count)
            // The limited address keeps being seen (a flood), so it is never the one idle longest.
            if n % 8 == 0 { limitedAdmitted += Self.admitted(&table, limited, at: t + n * 1_000) }
        }
        #expect(largest <= 64)
        #expect(limitedAdmitted == 0, "a flooding address was forgotten")
        // Entries refilled to their burst are forgotten first: after a long quiet spell, one new address
        // makes room by dropping every full bucket at once.
        let quiet = t + 100_000 * Self.second
        var fresh = 0
        while table.buckets.count < 64 {
            _ = table.take(Self.key(200_000 + UInt64(fresh)), now: quiet)
            fresh += 1
        }
        _ = table.take(Self.key(123_456_789), now: quiet)
        #expect(table.buckets.count == fresh + 1)
    }

    @Test("The cap on handshakes in progress refuses without taking a token, and a release frees a slot")
    func cap() {
        let limiter = HandshakeLimiter(
            limits: TLSHandshakeLimits(maxConcurrent: 2, perAddressRate: 1, perAddressBurst: 1))
        let t: UInt64 = 7 * Self.second
        #expect(limiter.admit(Self.key(1), now: t) == nil)
        #expect(limiter.admit(Self.key(2), now: t) == nil)
        #expect(limiter.admit(Self.key(3), now: t) == .concurrency)
        #expect(limiter.inProgress == 2)
        limiter.release()
        // Address 3's refused attempt took no token: its burst of 1 is still there.
        #expect(limiter.admit(Self.key(3), now: t) == nil)
        limiter.release()
        #expect(limiter.admit(Self.key(3), now: t) == .rate)
        #expect(limiter.inProgress == 1)
        limiter.release()
        #expect(limiter.inProgress == 0)
    }

    @Test("No limits: every handshake is admitted")
    func unlimited() {
        let limiter = HandshakeLimiter(limits: .unlimited)
        #expect((0..<10_000).allSatisfy { _ in limiter.admit(Self.key(1), now: 0) == nil })
    }

    @Test("IPv4 addresses are limited one by one, IPv6 ones by /64 prefix")
    func keys() throws {
        func key(_ ip: String) throws -> AddressKey { AddressKey(try SocketAddress(ipAddress: ip, port: 443)) }
        #expect(try key("127.0.0.2") == key("127.0.0.2"))
        #expect(try key("127.0.0.2") != key("127.0.0.1"))
        #expect(try key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9"))
        #expect(try key("2001:db8:1:2::1") != key("2001:db8:1:3::1"))
        #expect(try key("0.0.0.1") != key("::1"))
        // IPv4 clients of a dual-stack socket do not share one bucket (they all lie in ::/64).
        #expect(try key("::ffff:127.0.0.2") == key("127.0.0.2"))
        #expect(try key("::ffff:127.0.0.2") != key("::ffff:127.0.0.1"))
    }

    @Test("Refusals are logged at most once every 10 s, with their counts")
    func logLines() {
        let limiter = HandshakeLimiter(limits: TLSHandshakeLimits())
        let t: UInt64 = 3 * Self.second
        let first = limiter.noteRefusal(.rate, peer: "127.0.0.2", now: t)
        #expect(first?.contains("refused 1 TLS handshakes over the per-address rate") == true, "\(first ?? "nil")")
        #expect(
            (1..<500 as Range<UInt64>).allSatisfy {
                limiter.noteRefusal(.rate, peer: "127.0.0.2", now: t + $0 * 1_000_000) == nil
            })
        #expect(limiter.noteRefusal(.concurrency, peer: "127.0.0.3", now: t + 9 * Self.second) == nil)
        let next = limiter.noteRefusal(.rate, peer: "127.0.0.2", now: t + 10 * Self.second)
        #expect(next?.contains("refused 500 TLS handshakes") == true && next?.contains("and 1 over the cap") == true)
    }
}
