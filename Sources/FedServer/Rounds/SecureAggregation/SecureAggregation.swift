import FedCodec
import FedSecureAggregation

/// Secure aggregation of a round's updates (SecAgg+, `Protocol/SPEC.md`
/// section 12.11): the server learns only the sum of the cohort's clipped,
/// quantized updates, and who dropped.
///
/// A round's selected clients (the cohort, n of them) get secure-train tasks;
/// each is joined to `neighbours` others of the cohort (a random Harary
/// graph; n - 1: the complete graph of the original SecAgg) and shares its
/// secrets among them with threshold `threshold`. Each update is clipped to
/// L2 norm `clip`, weighted by its sample count over `maximumWeight`, and
/// rounded stochastically into Z_(2^bits) with headroom for n summands; its
/// count rides inside the masked vector. The round needs at least
/// `threshold` inputs (and the round's minimum of reports) to be unmasked.
///
/// Stages: keys and shares close when every expected client answered or
/// after `stageTimeout`; inputs at the round's deadline (or when every client
/// that shared has sent its input); unmasking as soon as the revealed shares
/// rebuild every secret the sum needs, or after `stageTimeout` (abandoned).
public struct SecureAggregation: Sendable, Equatable {
    /// t: shares that rebuild a secret; nil (default): floor(k / 2) + 1, so
    /// that an active server cannot collect both kinds of shares of one client
    /// (without the consistency check); with it, floor(n / 2) + 1, so that 2t > n.
    public var threshold: Int?
    /// k: neighbours per client; nil (default): n - 1 up to 99.
    public var neighbours: Int?
    /// b: the ring's width, 2 to 32 bits. Default 32; 16 halves the bytes
    /// of a masked input at a coarser resolution.
    public var bits: Int
    /// C: each update's L2 norm bound (clipped on the client). Default 10.
    public var clip: Double
    /// The longest each of the keys, shares and unmask stages waits. Default 10 s.
    public var stageTimeout: Duration
    /// W: the largest weight (sample count) an update carries; a client with
    /// more samples counts for W. nil (default): the server's cap on an
    /// update's samples (`maxUpdateSamples`). The encoding's resolution is
    /// C / (M · w / W) for a client of w samples: a W near the clients'
    /// typical count spends the ring on their updates, not on headroom.
    public var maximumWeight: Int?
    /// The consistency check with signatures (Bonawitz et al. 2017's
    /// active-security version; `SecureAggregation+Consistency.swift`). Off by default.
    public var consistency = false
    /// The clients' trusted Ed25519 public keys by client id; the consistency check needs them.
    public var identities: TrustedIdentities?

    public init(
        threshold: Int? = nil, neighbours: Int? = nil, bits: Int = 32, clip: Double = 10,
        stageTimeout: Duration = .seconds(10), maximumWeight: Int? = nil
    ) {
        self.maximumWeight = maximumWeight
        self.threshold = threshold
        self.neighbours = neighbours
        self.bits = bits
        self.clip = clip
        self.stageTimeout = stageTimeout
    }

    /// k for a cohort of `n`.
    public func neighbours(cohort n: Int) -> Int { max(1, min(neighbours ?? min(n - 1, 99), n - 1)) }

    /// t for a cohort of `n`.
    public func threshold(cohort n: Int) -> Int {
        threshold ?? (consistency ? n / 2 + 1 : neighbours(cohort: n) / 2 + 1)
    }

    /// The bytes of each element of a masked input.
    public var elementBytes: Int { bits <= 16 ? 2 : 4 }

    /// Why this configuration cannot run with cohorts of at most `n` clients, or nil.
    public func problem(cohort n: Int) -> String? {
        if !(2...32).contains(bits) { return "bits must be 2 to 32 (got \(bits))" }
        if !(clip.isFinite && clip > 0) { return "clip must be a positive number (got \(clip))" }
        if n < 3 { return "a cohort of \(n): secure aggregation needs at least 3 clients selected" }
        if n > SecureAggregationLimits.maxParticipants {
            return "a cohort of \(n), more than \(SecureAggregationLimits.maxParticipants)"
        }
        if (1 << (bits - 1)) - 1 < n {
            return "a \(bits)-bit ring has no headroom for \(n) summands"
        }
        if let w = maximumWeight, !(1...(1 << 48)).contains(w) { return "w must be 1 to 2^48 (got \(w))" }
        if let k = neighbours, !(1..<n).contains(k) { return "k must be 1 to n - 1 = \(n - 1) (got \(k))" }
        if let bad = consistencyProblem(cohort: n) { return bad }
        let k = neighbours(cohort: n)
        if let t = threshold, !(1...k).contains(t) { return "t must be 1 to k = \(k) (got \(t))" }
        if stageTimeout <= .zero || stageTimeout > .seconds(3_600) {
            return "the stage timeout must be between 0 and 1 h (got \(stageTimeout))"
        }
        return nil
    }
}
