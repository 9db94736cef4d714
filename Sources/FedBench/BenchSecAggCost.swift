import FedCodec
import FedModel
import FedSecureAggregation
import Foundation

/// The cost of one SecAgg+ round with the protocol's own code
/// (`Participant`, `CohortUnmasking`, `FixedPointEncoding`) and messages:
/// a cohort of n participants on a random Harary graph of degree k; the
/// client's steps timed for participant 1 on an update of `dimension`
/// weights; the server's unmasking timed on a sum of that length, with a
/// fraction `dropout` of the cohort gone after sharing their keys.
struct SecAggCost {
    let dimension: Int
    let participants: Int
    let neighbours: Int
    let threshold: Int
    let dropout: Double
    let bits: Int

    private static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        try body()
        let elapsed = clock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    private static func frameBytes(_ message: any ProtocolMessage) -> Int {
        var w = ByteWriter()
        message.write(into: &w, version: 4)
        return FrameHeader.size + w.bytes.count
    }

    func run() throws {
        let n = participants
        let encoding = try FixedPointEncoding(
            bits: bits, clipping: .l2Norm(10), maximumSummands: n, maximumWeight: 10_000)
        let ring = encoding.ring
        var random = SeededGenerator(seed: 7)
        let graph = NeighbourGraph.harary(participants: n, degree: neighbours, using: &random)
        let ids = (1...UInt32(n)).map { $0 }
        func adjacent(_ id: UInt32) -> [UInt32] { graph.neighbours[Int(id) - 1].map { UInt32($0 + 1) } }
        let round: UInt64 = 1
        var cohort = try ids.map { _ in try Participant(round: round, threshold: threshold) }
        let keys = cohort.map(\.publicKeys)
        let update = (0..<dimension).map { _ in random.uniform(0.05) }

        // Keys and shares: every participant (participant 1 timed).
        var sealed: [UInt32: [UInt32: [UInt8]]] = [:]
        var shareTime = 0.0
        for id in ids {
            var roster: [UInt32: ParticipantPublicKeys] = [:]
            for j in adjacent(id) { roster[j] = keys[Int(j) - 1] }
            var out: [(recipient: UInt32, sealed: [UInt8])] = []
            let t = try Self.seconds { out = try cohort[Int(id) - 1].share(as: id, with: roster) }
            if id == 1 { shareTime = t }
            for (recipient, box) in out { sealed[id, default: [:]][recipient] = box }
        }
        // The drop-outs: gone after sharing (participant 1 always stays).
        var order = Array(ids.dropFirst())
        order.shuffle(using: &random)
        let gone = Set(order.prefix(Int((dropout * Double(n)).rounded())))
        let contributors = ids.filter { !gone.contains($0) }
        var openTime = 0.0
        for id in ids {
            let inbox = adjacent(id).map { (sender: $0, sealed: sealed[$0]![id]!) }
            let t = try Self.seconds { try cohort[Int(id) - 1].open(inbox) }
            if id == 1 { openTime = t }
        }
        // Participant 1's input, encoded and masked at full length; the others' masks are not
        // timed (a one-element input moves them on), their inputs are random in the sum.
        var encoded: [UInt32] = []
        let encodeTime = try Self.seconds { encoded = try encoding.encode(update, weight: 600).values }
        var masked: [UInt32] = []
        let maskTime = try Self.seconds { masked = try cohort[0].mask(encoded, ring: ring) }
        var sum = MaskedSum(ring: ring, count: masked.count)
        try sum.add(maskedInput: masked, from: 1)
        for id in contributors.dropFirst() {
            _ = try cohort[Int(id) - 1].mask([0], ring: ring)
            try sum.add(
                maskedInput: (0..<masked.count).map { _ in UInt32.random(in: 0...ring.mask, using: &random) },
                from: id)
        }
        // Unmask: each contributor reveals what the survivors' list asks.
        let inSum = Set(contributors)
        var seedShares: [UInt32: [SecretShare]] = [:]
        var keyShares: [UInt32: [SecretShare]] = [:]
        var unmaskMessage = SecAggUnmask(taskID: 1, shares: [])
        var revealTime = 0.0
        for id in contributors {
            var revealed: [(owner: UInt32, selfMaskSeed: Bool, share: SecretShare)] = []
            let t = try Self.seconds {
                revealed = try cohort[Int(id) - 1].reveal(
                    survivors: Set(adjacent(id).filter(inSum.contains)), contributors: contributors.count)
            }
            for r in revealed {
                if r.selfMaskSeed {
                    seedShares[r.owner, default: []].append(r.share)
                } else {
                    keyShares[r.owner, default: []].append(r.share)
                }
            }
            if id == 1 {
                revealTime = t
                unmaskMessage.shares = revealed.map {
                    .init(owner: $0.owner, kind: $0.selfMaskSeed ? .selfMaskSeed : .maskingKey, share: $0.share.encoded)
                }
            }
        }
        var maskingNeighbours: [UInt32: [UInt32]] = [:]
        for id in ids { maskingNeighbours[id] = adjacent(id) }
        let unmasking = CohortUnmasking(
            round: round, threshold: threshold,
            maskingKeys: Dictionary(uniqueKeysWithValues: ids.map { ($0, keys[Int($0) - 1].masking) }),
            maskingNeighbours: maskingNeighbours)
        let pairwise = unmasking.dropped(inSum).reduce(0) { $0 + adjacent($1).filter(inSum.contains).count }
        let complete = unmasking.isComplete(
            contributors: inSum, selfMaskSeedShares: seedShares, maskingKeyShares: keyShares)
        var unmaskTime = 0.0
        var decodeTime = 0.0
        if complete {
            unmaskTime = try Self.seconds {
                try unmasking.unmask(&sum, selfMaskSeedShares: seedShares, maskingKeyShares: keyShares)
            }
            decodeTime = Self.seconds { _ = try? encoding.decode(sum.total, summands: contributors.count) }
        }

        // Participant 1's messages as they travel.
        let keysBytes = Self.frameBytes(
            SecAggKeys(taskID: 1, encryptionKey: keys[0].encryption, maskingKey: keys[0].masking))
        let sharesBytes = Self.frameBytes(
            SecAggShares(
                taskID: 1, bundles: adjacent(1).map { SealedShares(participant: $0, sealed: sealed[1]![$0]!) }))
        let inputBytes = Self.frameBytes(
            SecAggInput(taskID: 1, elementBytes: bits <= 16 ? 2 : 4, values: masked))
        let unmaskBytes = Self.frameBytes(unmaskMessage)
        let raw = 4 * dimension
        let total = shareTime + openTime + encodeTime + maskTime + revealTime
        let k = neighbours
        print(
            "client cost, the protocol's steps for participant 1 of \(n), an update of \(dimension) weights (+\(encoding.weightLimbs) count), k \(k), t \(threshold), \(bits)-bit ring:"
        )
        func line(_ what: String, _ seconds: Double) {
            print(
                "  " + what.padding(toLength: 66, withPad: " ", startingAt: 0)
                    + String(format: "%8.1f ms", seconds * 1e3))
        }
        line("share: \(2 * k) key agreements, 2 Shamir sharings, \(k) sealed bundles", shareTime)
        line("open the \(k) bundles of the inbox", openTime)
        line("encode (clip, stochastic rounding, ChaCha20 CSPRNG)", encodeTime)
        line("mask: \(k) mask seeds, \(k + 1) masks expanded (ChaCha20)", maskTime)
        line("reveal \(unmaskMessage.shares.count) shares", revealTime)
        line("total", total)
        let keyMaterial = keysBytes + sharesBytes + unmaskBytes
        print(
            "  bytes sent: SECAGG_INPUT frame \(inputBytes) = "
                + String(format: "%.4f", Double(inputBytes) / Double(raw))
                + "x a raw Float32 push of the weights (\(raw) B); key material \(keyMaterial) B (SECAGG_KEYS \(keysBytes), SECAGG_SHARES \(sharesBytes), SECAGG_UNMASK \(unmaskBytes)); in all "
                + String(format: "%.4f", Double(inputBytes + keyMaterial) / Double(raw)) + "x")
        guard complete else {
            print(
                "server unmasking: this draw of \(gone.count) of \(n) gone after sharing their keys leaves a client with fewer than t = \(threshold) answering neighbours: the round cannot be unmasked (it would be abandoned); not timed"
            )
            return
        }
        print(
            "server unmasking, measured: \(contributors.count) inputs summed, \(gone.count) of \(n) gone after sharing their keys; "
                + "\(contributors.count) self-mask seeds and \(unmasking.dropped(inSum).count) masking keys rebuilt, "
                + "\(contributors.count) self-masks and \(pairwise) pairwise masks removed: "
                + String(format: "%.2f s; decoding the sum %.1f ms", unmaskTime, decodeTime * 1e3))
    }
}
