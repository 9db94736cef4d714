import FedModel
import FedSecureAggregation
import Foundation

/// The CPU one SecAgg+ client spends on its cryptography for one update of
/// `dimension` weights, measured step by step, and the server's cost per
/// mask it removes.
struct SecAggCost {
    let dimension: Int
    let participants: Int
    let neighbours: Int
    let threshold: Int
    let dropout: Double

    private static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        try body()
        let elapsed = clock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    func run() throws {
        let ring = try MaskRing(bits: 32)
        let encoding = try FixedPointEncoding(
            bits: 32, clipping: .l2Norm(10), maximumSummands: participants, maximumWeight: 1 << 16)
        var weights = SeededGenerator(seed: 7)
        let update = (0..<dimension).map { _ in weights.uniform(0.05) }
        let me: UInt32 = 1
        let peers = (2...UInt32(neighbours + 1)).map { $0 }
        let peerKeys = Dictionary(uniqueKeysWithValues: peers.map { ($0, ParticipantKeys().publicKeys) })
        let round: UInt64 = 1

        var encoded: [UInt32] = []
        let encode = try Self.seconds { encoded = try encoding.encode(update, weight: 600).values }
        let keys = ParticipantKeys()
        var seeds: [UInt32: MaskSeed] = [:]
        var sealed: [[UInt8]] = []
        let agree = try Self.seconds {
            for (peer, publicKeys) in peerKeys {
                seeds[peer] = try PairwiseKeys.maskSeed(
                    privateKey: keys.maskingKey, peerPublicKey: publicKeys.masking, round: round, between: me, and: peer
                )
            }
        }
        let share = try Self.seconds {
            let selfSeed = MaskSeed.random()
            let keyShares = try SecretShare.split(
                [UInt8](keys.maskingKey.rawRepresentation), threshold: threshold, at: peers)
            let seedShares = try SecretShare.split(selfSeed.bytes, threshold: threshold, at: peers)
            for (index, peer) in peers.enumerated() {
                let key = try PairwiseKeys.shareKey(
                    privateKey: keys.encryptionKey, peerPublicKey: peerKeys[peer]!.encryption, round: round,
                    between: me, and: peer)
                let bundle = try ShareBundle(maskingKeyShare: keyShares[index], selfMaskSeedShare: seedShares[index])
                sealed.append(try ShareEncryption.seal(bundle, key: key, round: round, sender: me))
            }
        }
        var masked: [UInt32] = []
        let mask = try Self.seconds {
            masked = try Masking.maskedInput(
                encoded, ring: ring, participant: me, selfMaskSeed: .random(), pairwiseSeeds: seeds)
        }
        let total = encode + agree + share + mask
        let keyBytes = 64 + sealed.reduce(0) { $0 + $1.count }
        print(
            "client cost, one update of \(dimension) weights (+\(encoding.weightLimbs) count), k \(neighbours), 32-bit ring:"
        )
        print(String(format: "  encode (clip, stochastic rounding, ChaCha20 CSPRNG):       %7.1f ms", encode * 1e3))
        print(
            String(
                format: "  %3d mask seeds (X25519 + HKDF-SHA256):                    %7.1f ms", neighbours, agree * 1e3)
        )
        print(
            String(
                format: "  shares of s and b for %3d neighbours, %3d sealed bundles:  %7.1f ms", neighbours, neighbours,
                share * 1e3))
        print(
            String(
                format: "  %3d masks expanded (ChaCha20) and applied:               %7.1f ms", neighbours + 1,
                mask * 1e3))
        print(String(format: "  total:                                                    %7.1f ms", total * 1e3))
        print(
            "  bytes sent: masked input \(4 * masked.count) (raw Float32: \(4 * dimension), "
                + String(format: "%.4fx", Double(4 * masked.count) / Double(4 * dimension))
                + "), key material \(keyBytes) (2 public keys, \(sealed.count) bundles)")

        // The server: one mask expanded and removed, and one key agreement, measured; counts expected.
        var sum = [UInt32](repeating: 0, count: masked.count)
        let perMask = (0..<5).map { _ in
            Self.seconds {
                MaskExpansion.apply(.random(), to: &sum, ring: ring, adding: false)
            }
        }.sorted()[2]
        let perAgreement =
            try Self.seconds {
                for (peer, publicKeys) in peerKeys {
                    _ = try PairwiseKeys.maskSeed(
                        privateKey: keys.maskingKey, peerPublicKey: publicKeys.masking, round: round, between: me,
                        and: peer)
                }
            } / Double(neighbours)
        let survivors = (1 - dropout) * Double(participants)
        let pairwise = dropout * Double(participants) * Double(neighbours) * (1 - dropout)
        let estimate = (survivors + pairwise) * perMask + pairwise * perAgreement
        print(
            String(
                format:
                    "server unmasking, estimated: %.0f self-masks + %.0f pairwise masks (%.0f key agreements) "
                    + "at %.2f ms a mask: %.2f s",
                survivors, pairwise, pairwise, perMask * 1e3, estimate))
    }
}
