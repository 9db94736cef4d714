/// The graph of SecAgg+ (Bell et al. 2020): each participant shares its
/// secrets with, and masks against, only its neighbours. Built as their
/// Harary graph H(k, n) on a uniformly random ordering of the participants:
/// place them on a ring in random order and join each to the floor(k/2)
/// nearest on either side; for odd k also join it to the one opposite
/// (n/2 places on). Every participant has degree k, except that odd k with
/// odd n gives degree k + 1. k = n - 1 is the complete graph: the original
/// SecAgg (Bonawitz et al. 2017).
///
/// Invariant: symmetric, no self-loops, neighbour lists sorted.
public struct NeighbourGraph: Hashable, Sendable {
    /// `neighbours[i]`: the participants adjacent to participant i, in increasing order.
    public let neighbours: [[Int]]

    /// The number of participants.
    public var count: Int { neighbours.count }

    /// A Harary graph on `participants` nodes of degree `degree`, ordered by `generator`.
    /// Precondition: 1 <= degree <= participants - 1.
    public static func harary<G: RandomNumberGenerator>(
        participants n: Int, degree k: Int, using generator: inout G
    ) -> NeighbourGraph {
        precondition(n >= 2 && k >= 1 && k <= n - 1, "degree \(k) is impossible for \(n) participants")
        let order = Array(0..<n).shuffled(using: &generator)
        // Ring offsets of a position's neighbours, symmetric (o and n - o) and without 0.
        var offsets = Set(stride(from: 1, through: k / 2, by: 1).flatMap { [$0, n - $0] })
        if k % 2 == 1 { offsets.formUnion([n / 2, (n - n / 2) % n]) }
        offsets.remove(0)
        var lists = [[Int]](repeating: [], count: n)
        for position in 0..<n {
            lists[order[position]] = offsets.map { order[(position + $0) % n] }.sorted()
        }
        return NeighbourGraph(neighbours: lists)
    }
}
