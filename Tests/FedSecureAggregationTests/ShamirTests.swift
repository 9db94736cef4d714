import FedSecureAggregation
import FedTestSupport
import Testing

@Suite("Prime field GF(2^127 - 1)")
struct PrimeFieldTests {
    @Test("Reduction: 2^127 is 1, 2^128 is 2, p is 0, (p - 1)^2 is 1")
    func reductionIdentities() {
        let p = Mersenne127.modulus
        #expect(Mersenne127(p) == .zero)
        #expect(Mersenne127(p + 1) == .one)
        #expect(Mersenne127(1 << 126) * Mersenne127(2) == .one)
        #expect(Mersenne127(1 << 64) * Mersenne127(1 << 64) == Mersenne127(2))
        #expect(Mersenne127(p - 1) * Mersenne127(p - 1) == .one)
        #expect(Mersenne127.zero - Mersenne127.one == Mersenne127(p - 1))
    }

    @Test("Field laws on random elements: inverse, distributivity, subtraction", arguments: 1...20)
    func fieldLaws(seed: UInt64) {
        var generator = SplitMix64(seed: seed)
        let a = Mersenne127.random(using: &generator)
        let b = Mersenne127.random(using: &generator)
        let c = Mersenne127.random(using: &generator)
        #expect(a.value < Mersenne127.modulus)
        if a != .zero { #expect(a * a.inverse == .one) }
        #expect(a * (b + c) == a * b + a * c)
        #expect((a - b) + b == a)
        #expect(a * b == b * a)
        // Multiplication by repeated doubling agrees with the full-width product.
        var doubled = a
        for _ in 0..<130 { doubled = doubled + doubled }
        #expect(doubled == a * Mersenne127(2).power(130))
    }
}

/// A sharing: threshold t of n holders, and the seed of the secret and of the subsets tried.
struct SharingCase: Sendable, CustomTestStringConvertible {
    let threshold: Int
    let holders: Int
    let seed: UInt64
    var testDescription: String { "t \(threshold) of n \(holders), seed \(seed)" }
}

@Suite("Shamir secret sharing")
struct ShamirTests {
    static let cases: [SharingCase] =
        [(1, 1), (1, 4), (2, 3), (3, 5), (5, 10), (10, 20), (33, 100)].flatMap { t, n in
            (1...3).map { SharingCase(threshold: t, holders: n, seed: UInt64(t * 1000 + n) * 10 + $0) }
        }

    @Test("Any t shares (random subsets, random order) recover a 32-byte secret", arguments: cases)
    func anyThresholdSubsetRecovers(_ sharing: SharingCase) throws {
        var generator = SplitMix64(seed: sharing.seed)
        let secret = randomBytes(32, using: &generator)
        let xs = (1...UInt32(sharing.holders)).map { $0 * 7 }  // any distinct non-zero coordinates
        let shares = try SecretShare.split(secret, threshold: sharing.threshold, at: xs)
        #expect(shares.map(\.x) == xs)
        for _ in 0..<5 {
            let subset = Array(shares.shuffled(using: &generator).prefix(sharing.threshold))
            #expect(try SecretShare.recover(subset, threshold: sharing.threshold) == secret)
        }
        // More than t shares: the extra ones are checked, and they agree.
        #expect(try SecretShare.recover(shares.shuffled(using: &generator), threshold: sharing.threshold) == secret)
    }

    @Test("Secrets of every length from 1 to 47 bytes round-trip", arguments: 1...47)
    func everyLength(length: Int) throws {
        var generator = SplitMix64(seed: UInt64(length))
        let secret = randomBytes(length, using: &generator)
        let shares = try SecretShare.split(secret, threshold: 3, at: [1, 2, 3, 4], using: &generator)
        #expect(try SecretShare.recover([shares[3], shares[1], shares[0]], threshold: 3) == secret)
        for share in shares { #expect(try SecretShare(encoded: share.encoded) == share) }
    }

    @Test(
        "t - 1 shares reveal nothing: over GF(13), every secret gives the t - 1 shares the same (uniform) distribution",
        arguments: [[1], [5], [1, 2], [3, 9], [12, 4], [1, 2, 3], [2, 7, 11]])
    func thresholdMinusOneSharesAreIndependentOfTheSecret(subset: [Int]) throws {
        let threshold = subset.count + 1
        let xs = (1...12).map { GF13(UInt128($0)) }
        let positions = subset.map { $0 - 1 }
        let polynomialCount = Int(pow13(threshold - 1))
        let extra = (0..<12).first { !positions.contains($0) }!
        var distributions: [[[UInt128]: Int]] = []
        var secretOfFullShares: [[UInt128]: Set<UInt128>] = [:]
        for secret in 0..<UInt128(13) {
            var counts: [[UInt128]: Int] = [:]
            // Every coefficient vector c1 ... c(t-1) once: the uniform distribution, enumerated.
            for index in 0..<polynomialCount {
                let coefficients = (0..<threshold - 1).map { GF13(UInt128(index / Int(pow13($0)) % 13)) }
                let shares = try Shamir.split(GF13(secret), coefficients: coefficients, at: xs)
                counts[positions.map { shares[$0].y.value }, default: 0] += 1
                let full = positions + [extra]
                secretOfFullShares[full.map { shares[$0].y.value }, default: []].insert(secret)
            }
            distributions.append(counts)
        }
        // For each secret, each of the 13^(t-1) possible share tuples arises from exactly one polynomial.
        for counts in distributions {
            #expect(counts.count == polynomialCount)
            #expect(counts.values.allSatisfy { $0 == 1 })
        }
        #expect(Set(distributions).count == 1)
        // Whereas t shares (the subset plus one more holder) always pin the secret down.
        #expect(secretOfFullShares.values.allSatisfy { $0.count == 1 })
    }

    private func pow13(_ exponent: Int) -> UInt128 { (0..<exponent).reduce(1) { acc, _ in acc * 13 } }

    @Test("Repeated x-coordinates are refused when sharing and when recovering")
    func duplicateCoordinates() throws {
        #expect(throws: SecretSharingError.duplicateXCoordinate(3)) {
            try SecretShare.split(randomBytes32(), threshold: 2, at: [1, 3, 3])
        }
        let shares = try SecretShare.split(randomBytes32(), threshold: 2, at: [1, 2, 3])
        #expect(throws: SecretSharingError.duplicateXCoordinate(2)) {
            try SecretShare.recover([shares[1], shares[1]], threshold: 2)
        }
    }

    @Test("x = 0 is refused: it is where the secret sits")
    func zeroCoordinate() throws {
        #expect(throws: SecretSharingError.zeroXCoordinate) {
            try SecretShare.split(randomBytes32(), threshold: 2, at: [0, 1, 2])
        }
        let share = try SecretShare.split(randomBytes32(), threshold: 1, at: [1])[0]
        #expect(throws: SecretSharingError.zeroXCoordinate) {
            try SecretShare(x: 0, secretByteCount: 32, values: share.values)
        }
        var bytes = share.encoded
        bytes[0...3] = [0, 0, 0, 0]
        #expect(throws: SecretSharingError.zeroXCoordinate) { try SecretShare(encoded: bytes) }
    }

    @Test("Thresholds outside 1...n are refused, and fewer than t shares recover nothing")
    func thresholds() throws {
        #expect(throws: SecretSharingError.thresholdOutOfRange(threshold: 0, shareCount: 3)) {
            try SecretShare.split(randomBytes32(), threshold: 0, at: [1, 2, 3])
        }
        #expect(throws: SecretSharingError.thresholdOutOfRange(threshold: 4, shareCount: 3)) {
            try SecretShare.split(randomBytes32(), threshold: 4, at: [1, 2, 3])
        }
        let shares = try SecretShare.split(randomBytes32(), threshold: 3, at: [1, 2, 3, 4])
        #expect(throws: SecretSharingError.tooFewShares(have: 2, need: 3)) {
            try SecretShare.recover(Array(shares.prefix(2)), threshold: 3)
        }
    }

    @Test("A corrupt share beyond the threshold is detected; within it, the secret comes out wrong")
    func corruptShare() throws {
        let secret = randomBytes32()
        let shares = try SecretShare.split(secret, threshold: 2, at: [1, 2, 3])
        let corrupt = try SecretShare(
            x: 3, secretByteCount: 32, values: shares[2].values.map { $0 + .one })
        #expect(throws: SecretSharingError.inconsistentShares) {
            try SecretShare.recover([shares[0], shares[1], corrupt], threshold: 2)
        }
        // With exactly t shares nothing can be checked: only authenticated transport protects them.
        #expect((try? SecretShare.recover([shares[0], corrupt], threshold: 2)) != secret)
    }

    @Test("Shares of secrets of different lengths, and malformed encodings, are refused")
    func malformed() throws {
        let short = try SecretShare.split([1, 2, 3], threshold: 1, at: [1])[0]
        let long = try SecretShare.split(randomBytes32(), threshold: 1, at: [2])[0]
        #expect(throws: SecretSharingError.malformedShare("shares of secrets of different lengths")) {
            try SecretShare.recover([short, long], threshold: 1)
        }
        #expect(throws: SecretSharingError.secretLengthOutOfRange(0)) {
            try SecretShare.split([], threshold: 1, at: [1])
        }
        let encoded = long.encoded
        #expect(encoded.count == SecretShare.encodedByteCount(secretByteCount: 32))
        #expect(throws: SecretSharingError.self) { try SecretShare(encoded: encoded.dropLast()) }
        var tooLarge = encoded
        for index in 6..<22 { tooLarge[index] = 0xFF }  // the first value, 2^128 - 1 >= p
        #expect(throws: SecretSharingError.malformedShare("a value is not below p")) {
            try SecretShare(encoded: tooLarge)
        }
    }

    private func randomBytes32() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return randomBytes(32, using: &generator)
    }
}
