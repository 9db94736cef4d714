import Crypto
import CryptoExtras
import Foundation

/// The pseudorandom generator that expands a 256-bit ``MaskSeed`` into a mask
/// vector: the ChaCha20 keystream (RFC 8439's block function; swift-crypto's
/// `Insecure.ChaCha20CTR`) under the whole seed as key, nonce 0, counter from
/// 0, read as little-endian `UInt32`s, each reduced modulo 2^b.
///
/// Each element is uniform in Z_(2^b) to anyone without the seed (ChaCha20's
/// security), and the mask depends on all 256 bits of the seed. The nonce is
/// fixed because a seed expands one mask only: pairwise seeds are derived
/// afresh for each round and pair, self-mask seeds drawn afresh each round.
/// Up to 2^32 blocks of 64 bytes (2^36 elements) can be expanded.
public enum MaskExpansion {
    /// Largest vector expanded: 2^36 elements (ChaCha20's 32-bit block counter).
    public static let maximumCount = 1 << 36

    /// `count` elements of Z_(2^b) expanded from `seed`.
    /// Precondition: 0 <= count <= ``maximumCount``.
    public static func expand(_ seed: MaskSeed, count: Int, ring: MaskRing) -> [UInt32] {
        var mask = [UInt32](repeating: 0, count: count)
        apply(seed, to: &mask, ring: ring, adding: true)
        return mask
    }

    /// Adds (or, with `adding` false, subtracts) the mask of `seed` to
    /// `vector` in place, modulo 2^b: the same as combining with
    /// ``expand(_:count:ring:)`` of `vector.count` elements, without the
    /// intermediate vector. Precondition: `vector.count` <= ``maximumCount``.
    public static func apply(_ seed: MaskSeed, to vector: inout [UInt32], ring: MaskRing, adding: Bool) {
        let count = vector.count
        precondition(count <= maximumCount, "cannot expand \(count) elements")
        guard count > 0 else { return }
        // Encrypting zeros gives the keystream itself. The key is 32 bytes and the nonce 12,
        // so neither call can fail.
        let keystream = try! Insecure.ChaCha20CTR.encrypt(
            Data(count: 4 * count), using: SymmetricKey(data: seed.bytes),
            nonce: Insecure.ChaCha20CTR.Nonce(data: [UInt8](repeating: 0, count: 12)))
        let mask = ring.mask
        keystream.withUnsafeBytes { raw in
            vector.withUnsafeMutableBufferPointer { elements in
                for index in 0..<count {
                    let word = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self))
                    elements[index] = (adding ? elements[index] &+ word : elements[index] &- word) & mask
                }
            }
        }
    }
}
