import FedSecureAggregation
import FedTestSupport
import Testing

/// A whole SecAgg+ round in memory: `n` participants with real keys, their
/// shares relayed as the server relays them, some dropping after sharing
/// and some after sending their masked input; the server unmasks with
/// `CohortUnmasking`.
private struct InMemoryCohort {
    let n: Int
    let k: Int
    let t: Int
    let ring: MaskRing
    let round: UInt64 = 7
    var participants: [UInt32: Participant] = [:]
    var graph: [UInt32: [UInt32]] = [:]
    var random: SplitMix64

    init(n: Int, k: Int, t: Int, bits: Int, seed: UInt64) throws {
        self.n = n
        self.k = k
        self.t = t
        self.ring = try MaskRing(bits: bits)
        self.random = SplitMix64(seed: seed)
        let g = NeighbourGraph.harary(participants: n, degree: k, using: &random)
        for (i, adjacent) in g.neighbours.enumerated() { graph[UInt32(i + 1)] = adjacent.map { UInt32($0 + 1) } }
        for id in 1...UInt32(n) { participants[id] = try Participant(round: round, threshold: t) }
    }

    /// Runs the round: `goneAfterShares` share keys and then never send an
    /// input; `goneAfterInput` send their input and never reveal. Returns
    /// the unmasked sum and the inputs that went into it.
    mutating func run(
        inputs: [UInt32: [UInt32]], goneAfterShares: Set<UInt32>, goneAfterInput: Set<UInt32>
    ) throws -> (sum: [UInt32], contributors: Set<UInt32>) {
        let keys = participants.mapValues(\.publicKeys)
        // Shares: every participant seals a bundle to each neighbour.
        var sealed: [UInt32: [UInt32: [UInt8]]] = [:]
        for id in participants.keys.sorted() {
            var roster: [UInt32: ParticipantPublicKeys] = [:]
            for j in graph[id]! { roster[j] = keys[j]! }
            for (recipient, box) in try participants[id]!.share(as: id, with: roster, using: &random) {
                sealed[id, default: [:]][recipient] = box
            }
        }
        for id in participants.keys {
            try participants[id]!.open(graph[id]!.map { ($0, sealed[$0]![id]!) })
        }
        var sum = MaskedSum(ring: ring, count: inputs.first!.value.count)
        for id in participants.keys.sorted() where !goneAfterShares.contains(id) {
            try sum.add(maskedInput: participants[id]!.mask(inputs[id]!, ring: ring), from: id)
        }
        let contributors = sum.contributors
        var seedShares: [UInt32: [SecretShare]] = [:]
        var keyShares: [UInt32: [SecretShare]] = [:]
        for id in contributors.sorted() where !goneAfterInput.contains(id) {
            let survivors = Set(graph[id]!.filter(contributors.contains))
            for r in try participants[id]!.reveal(survivors: survivors, contributors: contributors.count) {
                if r.selfMaskSeed {
                    seedShares[r.owner, default: []].append(r.share)
                } else {
                    keyShares[r.owner, default: []].append(r.share)
                }
            }
        }
        let unmasking = CohortUnmasking(
            round: round, threshold: t, maskingKeys: keys.mapValues(\.masking), maskingNeighbours: graph)
        let complete = unmasking.isComplete(
            contributors: contributors, selfMaskSeedShares: seedShares, maskingKeyShares: keyShares)
        #expect(complete)
        try unmasking.unmask(&sum, selfMaskSeedShares: seedShares, maskingKeyShares: keyShares)
        // Never both kinds of share of one participant.
        #expect(Set(seedShares.keys).isDisjoint(with: keyShares.keys))
        return (sum.total, contributors)
    }
}

@Suite("SecAgg+ rounds in memory (Participant, CohortUnmasking)")
struct ProtocolTests {
    @Test(
        "The unmasked sum equals the sum of the contributors' inputs exactly, with drop-outs after sharing and after the input",
        arguments: [
            (n: 3, k: 2, t: 2, bits: 32, afterShares: 0, afterInput: 0),
            (n: 10, k: 9, t: 5, bits: 32, afterShares: 2, afterInput: 1),
            (n: 25, k: 12, t: 5, bits: 16, afterShares: 3, afterInput: 1),
            (n: 100, k: 99, t: 34, bits: 32, afterShares: 30, afterInput: 5),
        ])
    func exactSum(n: Int, k: Int, t: Int, bits: Int, afterShares: Int, afterInput: Int) throws {
        var cohort = try InMemoryCohort(n: n, k: k, t: t, bits: bits, seed: UInt64(n))
        var random = SplitMix64(seed: 99)
        let dimension = 24
        var inputs: [UInt32: [UInt32]] = [:]
        for id in 1...UInt32(n) {
            inputs[id] = (0..<dimension).map { _ in UInt32.random(in: 0...cohort.ring.mask, using: &random) }
        }
        var order = Array(1...UInt32(n))
        order.shuffle(using: &random)
        let goneAfterShares = Set(order.prefix(afterShares))
        let goneAfterInput = Set(order.dropFirst(afterShares).prefix(afterInput))
        let (sum, contributors) = try cohort.run(
            inputs: inputs, goneAfterShares: goneAfterShares, goneAfterInput: goneAfterInput)
        #expect(contributors.count == n - afterShares)
        var expected = [UInt32](repeating: 0, count: dimension)
        for id in contributors { try cohort.ring.add(inputs[id]!, to: &expected) }
        #expect(sum == expected)
    }

    @Test("A participant reveals once: a server asking again (say, for the other kind of share) is refused")
    func revealsOnce() throws {
        var cohort = try InMemoryCohort(n: 4, k: 3, t: 2, bits: 32, seed: 5)
        let inputs = Dictionary(uniqueKeysWithValues: (1...UInt32(4)).map { ($0, [UInt32](repeating: 1, count: 4)) })
        _ = try cohort.run(inputs: inputs, goneAfterShares: [4], goneAfterInput: [])
        // Participant 1 revealed seeds of 2, 3 and the key of 4; now the server claims 2, 3, 4 all survived.
        #expect(throws: SecureAggregationError.self) {
            try cohort.participants[1]!.reveal(survivors: [2, 3, 4], contributors: 4)
        }
    }

    @Test("A participant refuses to reveal when fewer than t inputs are in the sum, or a survivor it never masked with")
    func refusesUnsafeReveal() throws {
        var cohort = try InMemoryCohort(n: 5, k: 2, t: 2, bits: 32, seed: 3)
        let keys = cohort.participants.mapValues(\.publicKeys)
        var p = cohort.participants[1]!
        var roster: [UInt32: ParticipantPublicKeys] = [:]
        for j in cohort.graph[1]! { roster[j] = keys[j]! }
        _ = try p.share(as: 1, with: roster, using: &cohort.random)
        try p.open([])
        _ = try p.mask([1, 2, 3], ring: cohort.ring)
        #expect(throws: SecureAggregationError.self) { try p.reveal(survivors: [], contributors: 1) }
        let stranger = (2...5).first { !cohort.graph[1]!.contains(UInt32($0)) }!
        #expect(throws: SecureAggregationError.self) {
            try p.reveal(survivors: [UInt32(stranger)], contributors: 5)
        }
    }

    @Test("Sharing needs at least t neighbours")
    func shareNeedsThreshold() throws {
        var p = try Participant(round: 1, threshold: 3)
        let other = try Participant(round: 1, threshold: 3)
        #expect(throws: SecureAggregationError.self) { try p.share(as: 1, with: [2: other.publicKeys]) }
    }
}
