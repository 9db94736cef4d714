import Crypto
import FedSecureAggregation
import FedTestSupport
import Testing

/// A cohort's size, its ring's width and a seed for the inputs.
struct CohortCase: Sendable, CustomTestStringConvertible {
    let participants: Int
    let bits: Int
    let seed: UInt64
    var testDescription: String { "\(participants) participants, \(bits)-bit ring, seed \(seed)" }
}

/// A cohort on a complete graph (k = n - 1), ids 1...n, with real keys.
struct Cohort {
    let round: UInt64 = 5
    let ids: [UInt32]
    let keys: [UInt32: ParticipantKeys]
    let selfSeeds: [UInt32: MaskSeed]

    init(participants: Int) {
        ids = (1...UInt32(participants)).map { $0 }
        keys = Dictionary(uniqueKeysWithValues: ids.map { ($0, ParticipantKeys()) })
        selfSeeds = Dictionary(uniqueKeysWithValues: ids.map { ($0, MaskSeed.random()) })
    }

    func pairwiseSeeds(of i: UInt32) throws -> [UInt32: MaskSeed] {
        var seeds: [UInt32: MaskSeed] = [:]
        for j in ids where j != i {
            seeds[j] = try PairwiseKeys.maskSeed(
                privateKey: keys[i]!.maskingKey, peerPublicKey: keys[j]!.publicKeys.masking, round: round,
                between: i, and: j)
        }
        return seeds
    }

    func maskedInput(_ input: [UInt32], of i: UInt32, ring: MaskRing) throws -> [UInt32] {
        try Masking.maskedInput(
            input, ring: ring, participant: i, selfMaskSeed: selfSeeds[i]!, pairwiseSeeds: pairwiseSeeds(of: i))
    }
}

@Suite("Masks")
struct MaskingTests {
    @Test("The mask is ChaCha20's keystream: RFC 8439 appendix A.1, test vector 1 (zero key, nonce and counter)")
    func chaCha20KnownAnswer() throws {
        let keystream: [UInt8] = [
            0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86, 0xbd, 0x28,
        ]
        let expected = stride(from: 0, to: 16, by: 4).map { offset in
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(keystream[offset + $1]) << (8 * $1) }
        }
        let mask = MaskExpansion.expand(
            try MaskSeed(bytes: [UInt8](repeating: 0, count: 32)), count: 4, ring: try MaskRing(bits: 32))
        #expect(mask == expected)
        let narrow = MaskExpansion.expand(
            try MaskSeed(bytes: [UInt8](repeating: 0, count: 32)), count: 4, ring: try MaskRing(bits: 12))
        #expect(narrow == expected.map { $0 & 0xFFF })
    }

    @Test("Flipping any one of the seed's 256 bits changes the mask", arguments: 0..<256)
    func everySeedBitMatters(bit: Int) throws {
        var generator = SplitMix64(seed: 77)
        let seed = MaskSeed.random(using: &generator)
        var flipped = seed.bytes
        flipped[bit / 8] ^= 1 << (bit % 8)
        let ring = try MaskRing(bits: 32)
        let mask = MaskExpansion.expand(seed, count: 16, ring: ring)
        #expect(MaskExpansion.expand(seed, count: 16, ring: ring) == mask)
        #expect(MaskExpansion.expand(try MaskSeed(bytes: flipped), count: 16, ring: ring) != mask)
    }

    @Test(
        "Masks stay in the ring and fill it: mean of 2^16 elements of Z_(2^b) within 4 standard errors of (2^b - 1)/2",
        arguments: [1, 8, 16, 31, 32])
    func masksAreInTheRing(bits: Int) throws {
        let ring = try MaskRing(bits: bits)
        let mask = MaskExpansion.expand(MaskSeed.random(), count: 1 << 16, ring: ring)
        #expect(mask.allSatisfy { $0 <= ring.mask })
        let size = Double(ring.mask) + 1
        let mean = mask.reduce(0.0) { $0 + Double($1) } / Double(mask.count)
        let standardError = (size * size - 1).squareRoot() / 12.0.squareRoot() / Double(mask.count).squareRoot()
        #expect(abs(mean - (size - 1) / 2) < 4 * standardError)
    }

    @Test("Ring widths outside 1...32 are refused", arguments: [0, 33, -1])
    func ringWidths(bits: Int) {
        #expect(throws: SecureAggregationError.ringWidthOutOfRange(bits)) { try MaskRing(bits: bits) }
    }

    static let cohorts = [
        CohortCase(participants: 2, bits: 32, seed: 1), CohortCase(participants: 3, bits: 32, seed: 2),
        CohortCase(participants: 5, bits: 16, seed: 3), CohortCase(participants: 10, bits: 8, seed: 4),
        CohortCase(participants: 10, bits: 32, seed: 5),
    ]

    @Test(
        "The sum of a cohort's masked inputs, less the self-masks, is the sum of the inputs mod 2^b", arguments: cohorts
    )
    func cohortSumUnmasks(_ cohortCase: CohortCase) throws {
        let ring = try MaskRing(bits: cohortCase.bits)
        var generator = SplitMix64(seed: cohortCase.seed)
        let dimension = 1000
        let cohort = Cohort(participants: cohortCase.participants)
        var expected = [UInt32](repeating: 0, count: dimension)
        var sum = MaskedSum(ring: ring, count: dimension)
        for i in cohort.ids {
            let input = (0..<dimension).map { _ in UInt32.random(in: 0...ring.mask, using: &generator) }
            try ring.add(input, to: &expected)
            let masked = try cohort.maskedInput(input, of: i, ring: ring)
            #expect(masked != input)
            try sum.add(maskedInput: masked, from: i)
        }
        #expect(sum.total != expected)
        for i in cohort.ids { try sum.removeSelfMask(seed: cohort.selfSeeds[i]!, of: i) }
        #expect(sum.total == expected)
    }

    @Test(
        "A participant that drops after sharing keys: its masking key, rebuilt from t shares, removes its masks",
        arguments: [(6, 3, [UInt32(4)]), (8, 4, [1, 8]), (5, 2, [2, 5])])
    func droppedParticipantsMasksRemoved(participants: Int, threshold: Int, dropped: [UInt32]) throws {
        let ring = try MaskRing(bits: 32)
        var generator = SplitMix64(seed: UInt64(participants))
        let dimension = 500
        let cohort = Cohort(participants: participants)
        // Share keys: each participant shares s_i and b_i among all the others (k = n - 1).
        var received: [UInt32: [UInt32: ShareBundle]] = [:]  // holder -> sender -> bundle
        for i in cohort.ids {
            let others = cohort.ids.filter { $0 != i }
            let keyShares = try SecretShare.split(
                [UInt8](cohort.keys[i]!.maskingKey.rawRepresentation), threshold: threshold, at: others)
            let seedShares = try SecretShare.split(cohort.selfSeeds[i]!.bytes, threshold: threshold, at: others)
            for (index, j) in others.enumerated() {
                let bundle = try ShareBundle(maskingKeyShare: keyShares[index], selfMaskSeedShare: seedShares[index])
                let sealed = try ShareEncryption.seal(
                    bundle, key: shareKey(cohort, i, j), round: cohort.round, sender: i)
                received[j, default: [:]][i] = try ShareEncryption.open(
                    sealed, key: shareKey(cohort, j, i), round: cohort.round, sender: i, recipient: j)
            }
        }
        // Masked input: the dropped participants send nothing.
        let survivors = cohort.ids.filter { !dropped.contains($0) }
        var expected = [UInt32](repeating: 0, count: dimension)
        var sum = MaskedSum(ring: ring, count: dimension)
        for i in survivors {
            let input = (0..<dimension).map { _ in UInt32.random(in: 0...ring.mask, using: &generator) }
            try ring.add(input, to: &expected)
            try sum.add(maskedInput: cohort.maskedInput(input, of: i, ring: ring), from: i)
        }
        // Unmask: for each dropped participant, t survivors reveal their shares of its masking
        // key; for each survivor, t other survivors reveal their shares of its self-mask seed.
        for d in dropped {
            let holders = survivors.shuffled(using: &generator).prefix(threshold)
            let shares = holders.map { received[$0]![d]!.maskingKeyShare }
            let maskingKey = try Curve25519.KeyAgreement.PrivateKey(
                rawRepresentation: SecretShare.recover(shares, threshold: threshold))
            let neighbourKeys = Dictionary(
                uniqueKeysWithValues: survivors.map { ($0, cohort.keys[$0]!.publicKeys.masking) })
            try sum.removePairwiseMasks(
                ofDropped: d, maskingKey: maskingKey, neighbourMaskingKeys: neighbourKeys, round: cohort.round)
        }
        for u in survivors {
            let holders = survivors.filter { $0 != u }.shuffled(using: &generator).prefix(threshold)
            let shares = holders.map { received[$0]![u]!.selfMaskSeedShare }
            try sum.removeSelfMask(seed: MaskSeed(bytes: SecretShare.recover(shares, threshold: threshold)), of: u)
        }
        #expect(sum.total == expected)
    }

    @Test("The server's sum refuses to remove both masks of one participant, or to add inputs after unmasking began")
    func neverBothMasks() throws {
        let ring = try MaskRing(bits: 32)
        var sum = MaskedSum(ring: ring, count: 4)
        try sum.add(maskedInput: [1, 2, 3, 4], from: 1)
        try sum.add(maskedInput: [5, 6, 7, 8], from: 3)
        #expect(throws: SecureAggregationError.invalidParticipant(1)) {
            try sum.add(maskedInput: [1, 2, 3, 4], from: 1)
        }
        // 2 sent nothing: its self-mask is never removed; 1 sent: its pairwise masks are never removed.
        #expect(throws: SecureAggregationError.invalidParticipant(2)) { try sum.removeSelfMask(seed: .random(), of: 2) }
        #expect(throws: SecureAggregationError.invalidParticipant(1)) {
            try sum.removePairwiseMask(seed: .random(), survivor: 3, dropped: 1)
        }
        // A pairwise mask is removed once only.
        try sum.removePairwiseMask(seed: .random(), survivor: 3, dropped: 2)
        #expect(throws: SecureAggregationError.invalidParticipant(2)) {
            try sum.removePairwiseMask(seed: .random(), survivor: 3, dropped: 2)
        }
        try sum.removeSelfMask(seed: .random(), of: 1)
        #expect(throws: SecureAggregationError.invalidParticipant(1)) { try sum.removeSelfMask(seed: .random(), of: 1) }
        #expect(throws: SecureAggregationError.invalidParticipant(4)) {
            try sum.add(maskedInput: [0, 0, 0, 0], from: 4)
        }
        #expect(throws: SecureAggregationError.lengthMismatch(expected: 4, got: 3)) {
            var other = MaskedSum(ring: ring, count: 4)
            try other.add(maskedInput: [1, 2, 3], from: 1)
        }
    }

    private func shareKey(_ cohort: Cohort, _ i: UInt32, _ j: UInt32) throws -> SymmetricKey {
        try PairwiseKeys.shareKey(
            privateKey: cohort.keys[i]!.encryptionKey, peerPublicKey: cohort.keys[j]!.publicKeys.encryption,
            round: cohort.round, between: i, and: j)
    }
}

@Suite("Keystream generator")
struct KeystreamGeneratorTests {
    @Test("Its first refill is the mask expansion of its seed; later refills differ; the same seed repeats")
    func keystream() throws {
        var source = SplitMix64(seed: 5)
        let seed = MaskSeed.random(using: &source)
        var generator = KeystreamGenerator(seed: seed)
        let draws = (0..<5000).map { _ in generator.next() }
        let mask = MaskExpansion.expand(seed, count: 16, ring: try MaskRing(bits: 32))
        let expected = (0..<8).map { UInt64(mask[2 * $0]) | UInt64(mask[2 * $0 + 1]) << 32 }
        #expect(Array(draws.prefix(8)) == expected)
        // 2,048 draws to a refill: the next refill's stream is under another nonce.
        #expect(Array(draws[2048..<2056]) != expected)
        #expect(Set(draws).count == draws.count)
        var again = KeystreamGenerator(seed: seed)
        #expect((0..<5000).map { _ in again.next() } == draws)
        var fresh = KeystreamGenerator()
        #expect((0..<8).map { _ in fresh.next() } != expected)
    }

    @Test("Uniform doubles from it: the mean of 100,000 within 5 standard errors of 1/2")
    func uniform() {
        var generator = KeystreamGenerator()
        let count = 100_000
        let mean =
            (0..<count).reduce(0.0) { total, _ in total + Double.random(in: 0..<1, using: &generator) } / Double(count)
        #expect(abs(mean - 0.5) < 5 * (1.0 / 12 / Double(count)).squareRoot())
    }
}
