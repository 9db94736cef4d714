import Crypto
import CryptoExtras
import Foundation

/// A cryptographically secure generator for bulk randomness (the stochastic
/// rounding of ``FixedPointEncoding``, one draw per weight): the ChaCha20
/// keystream under a 256-bit key, read 16 KiB at a time, each refill under
/// its own nonce (the refill's number, little-endian, in the nonce's first 8
/// bytes). `SystemRandomNumberGenerator` makes a system call per draw, which
/// for 200,000 weights costs more than the rest of a client's cryptography.
///
/// Keyed from the system's CSPRNG by ``init()``; ``init(seed:)`` gives a
/// reproducible stream (tests, golden vectors). Up to 2^64 refills.
public struct KeystreamGenerator: RandomNumberGenerator {
    private static let refillByteCount = 16 * 1024
    private let key: SymmetricKey
    private var refills: UInt64 = 0
    private var buffer: [UInt64] = []
    private var position = 0

    /// A generator keyed from the system's CSPRNG.
    public init() {
        self.key = SymmetricKey(size: .bits256)
    }

    /// The generator whose key is `seed`: the same seed gives the same stream.
    public init(seed: MaskSeed) {
        self.key = SymmetricKey(data: seed.bytes)
    }

    public mutating func next() -> UInt64 {
        if position == buffer.count { refill() }
        defer { position += 1 }
        return buffer[position]
    }

    private mutating func refill() {
        var nonce = [UInt8](repeating: 0, count: 12)
        for byte in 0..<8 { nonce[byte] = UInt8(truncatingIfNeeded: refills >> (8 * byte)) }
        precondition(refills < .max, "keystream exhausted")
        refills += 1
        // A 32-byte key and a 12-byte nonce: the call cannot fail.
        let keystream = try! Insecure.ChaCha20CTR.encrypt(
            Data(count: Self.refillByteCount), using: key, nonce: Insecure.ChaCha20CTR.Nonce(data: nonce))
        buffer = keystream.withUnsafeBytes { raw in
            (0..<Self.refillByteCount / 8).map {
                UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))
            }
        }
        position = 0
    }
}
