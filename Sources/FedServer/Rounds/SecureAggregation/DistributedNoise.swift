/// Differential privacy's noise when the clients add it (distributed noise
/// under secure aggregation, `Protocol/SPEC.md` section 12.13).
///
/// Each of a round's n drawn clients clips its update to `clip`, weighs 1,
/// and adds N(0, `clientNoise`²) to each coordinate before encoding, with
/// `clientNoise` = z_value × C / sqrt(m): the sum of any m inputs (the
/// round's minimum) carries at least the noise of DP-FedAvg's central
/// mechanism. The server divides the unmasked sum by `expectedCohort`, as
/// ``PrivateMean`` does; it never sees an update, clipped or not.
///
/// With adaptive clipping each client appends one coordinate,
/// (b - 1/2) × `countScale` with b = 1 when its update was not clipped, noised
/// like the others: the sum of m of them, over `countScale`, is the centred
/// count of unclipped updates with noise of standard deviation σ_count,
/// since `countScale` = z_value × C / σ_count (Andrew et al. 2021's private
/// quantile, under secure aggregation).
struct DistributedNoise: Equatable, Sendable {
    /// C: the norm each client clips to.
    var clip: Double
    /// σ / sqrt(m): each client's noise on each coordinate.
    var clientNoise: Double
    /// The fixed denominator of the mean: the expected cohort size.
    var expectedCohort: Int
    /// With adaptive clipping: the count coordinate's scale; nil with a fixed clip.
    var countScale: Double?

    /// The largest magnitude of a coordinate before noise: C, or the count's half scale if larger.
    var bound: Double { max(clip, (countScale ?? 0) / 2) }

    /// R: the range each noised coordinate is clamped to, the bound plus
    /// 8 σ/sqrt(m) (a clamp happens with probability below 1.3e-15 per coordinate).
    var range: Double { bound + 8 * clientNoise }
}
