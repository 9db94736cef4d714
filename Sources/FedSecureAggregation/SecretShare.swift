/// One holder's share of a byte string (a 32-byte key or seed), shared with
/// ``Shamir`` over ``Mersenne127``: the secret is cut into 15-byte chunks,
/// each chunk (a number below 2^120 < p) shared with its own polynomial, all
/// evaluated at the holder's x-coordinate.
///
/// Invariants: `x` is not zero; `values` has one element per chunk,
/// ceil(secretByteCount / 15) of them.
public struct SecretShare: Hashable, Sendable {
    /// Bytes to a field element: 15 (120 bits), below the 127-bit prime.
    public static let chunkByteCount = 15
    /// The longest secret shared: 65,535 bytes (the length is encoded on two bytes).
    public static let maximumSecretByteCount = Int(UInt16.max)
    /// Bytes of ``encoded`` for a secret of `secretByteCount` bytes: x (4), the
    /// secret's length (2), and 16 bytes (big-endian) per chunk.
    public static func encodedByteCount(secretByteCount: Int) -> Int {
        6 + 16 * chunkCount(secretByteCount)
    }

    /// The holder's x-coordinate (not zero).
    public let x: UInt32
    /// The shared secret's length in bytes.
    public let secretByteCount: Int
    /// The share of each 15-byte chunk, in order.
    public let values: [Mersenne127]

    static func chunkCount(_ byteCount: Int) -> Int { (byteCount + chunkByteCount - 1) / chunkByteCount }

    /// Shares `secret` among holders at `xs` so that any `threshold` of them
    /// recover it and fewer learn nothing (see ``Shamir``).
    ///
    /// - Throws: ``SecretSharingError/secretLengthOutOfRange(_:)``,
    ///   ``SecretSharingError/thresholdOutOfRange(threshold:shareCount:)``,
    ///   ``SecretSharingError/zeroXCoordinate``, ``SecretSharingError/duplicateXCoordinate(_:)``.
    public static func split<G: RandomNumberGenerator>(
        _ secret: [UInt8], threshold: Int, at xs: [UInt32], using generator: inout G
    ) throws -> [SecretShare] {
        guard (1...maximumSecretByteCount).contains(secret.count) else {
            throw SecretSharingError.secretLengthOutOfRange(secret.count)
        }
        let fieldXs = xs.map { Mersenne127(UInt128($0)) }
        let perChunk = try stride(from: 0, to: secret.count, by: chunkByteCount).map { start in
            let chunk = secret[start..<min(start + chunkByteCount, secret.count)]
            let value = chunk.reduce(UInt128(0)) { $0 << 8 | UInt128($1) }
            return try Shamir.split(Mersenne127(value), threshold: threshold, at: fieldXs, using: &generator)
        }
        return xs.indices.map { holder in
            SecretShare(unchecked: xs[holder], secretByteCount: secret.count, values: perChunk.map { $0[holder].y })
        }
    }

    /// Shares `secret` with a CSPRNG (`SystemRandomNumberGenerator`).
    public static func split(_ secret: [UInt8], threshold: Int, at xs: [UInt32]) throws -> [SecretShare] {
        var generator = SystemRandomNumberGenerator()
        return try split(secret, threshold: threshold, at: xs, using: &generator)
    }

    /// The secret behind `shares` (at least `threshold` of them; see ``Shamir/recover(_:threshold:)``).
    ///
    /// - Throws: ``SecretSharingError/malformedShare(_:)`` when the shares are of
    ///   secrets of different lengths, or a recovered chunk does not fit its
    ///   bytes (the shares are of no such secret), and the errors of ``Shamir/recover(_:threshold:)``.
    public static func recover(_ shares: [SecretShare], threshold: Int) throws -> [UInt8] {
        guard let first = shares.first else { throw SecretSharingError.tooFewShares(have: 0, need: threshold) }
        guard shares.allSatisfy({ $0.secretByteCount == first.secretByteCount }) else {
            throw SecretSharingError.malformedShare("shares of secrets of different lengths")
        }
        var secret: [UInt8] = []
        secret.reserveCapacity(first.secretByteCount)
        for chunk in 0..<chunkCount(first.secretByteCount) {
            let points = shares.map { FieldShare(x: Mersenne127(UInt128($0.x)), y: $0.values[chunk]) }
            let value = try Shamir.recover(points, threshold: threshold).value
            let byteCount = min(chunkByteCount, first.secretByteCount - chunk * chunkByteCount)
            guard value >> (8 * byteCount) == 0 else {
                throw SecretSharingError.malformedShare("a recovered chunk is wider than \(byteCount) bytes")
            }
            for byte in (0..<byteCount).reversed() { secret.append(UInt8(truncatingIfNeeded: value >> (8 * byte))) }
        }
        return secret
    }

    /// A share; `values.count` must be ceil(secretByteCount / 15) and `x` not zero.
    ///
    /// - Throws: ``SecretSharingError/zeroXCoordinate``, ``SecretSharingError/secretLengthOutOfRange(_:)``,
    ///   ``SecretSharingError/malformedShare(_:)``.
    public init(x: UInt32, secretByteCount: Int, values: [Mersenne127]) throws {
        guard x != 0 else { throw SecretSharingError.zeroXCoordinate }
        guard (1...Self.maximumSecretByteCount).contains(secretByteCount) else {
            throw SecretSharingError.secretLengthOutOfRange(secretByteCount)
        }
        guard values.count == Self.chunkCount(secretByteCount) else {
            throw SecretSharingError.malformedShare("\(values.count) values for a \(secretByteCount)-byte secret")
        }
        self.init(unchecked: x, secretByteCount: secretByteCount, values: values)
    }

    private init(unchecked x: UInt32, secretByteCount: Int, values: [Mersenne127]) {
        self.x = x
        self.secretByteCount = secretByteCount
        self.values = values
    }

    /// The share as bytes: x (UInt32), the secret's length (UInt16), then each
    /// value as 16 bytes, all big-endian.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.encodedByteCount(secretByteCount: secretByteCount))
        bytes.appendBigEndian(x)
        bytes.appendBigEndian(UInt16(secretByteCount))
        for value in values { bytes.appendBigEndian(value.value) }
        return bytes
    }

    /// The share that ``encoded`` wrote, from exactly those bytes.
    ///
    /// - Throws: ``SecretSharingError/malformedShare(_:)`` for a wrong length or a value
    ///   not below 2^127 - 1, and the errors of ``init(x:secretByteCount:values:)``.
    public init(encoded bytes: some Collection<UInt8>) throws {
        let bytes = Array(bytes)
        guard bytes.count >= 6 else { throw SecretSharingError.malformedShare("\(bytes.count) bytes, fewer than 6") }
        let x: UInt32 = bytes.readBigEndian(at: 0)
        let length = Int(bytes.readBigEndian(at: 4) as UInt16)
        guard bytes.count == Self.encodedByteCount(secretByteCount: length) else {
            throw SecretSharingError.malformedShare("\(bytes.count) bytes for a \(length)-byte secret")
        }
        let values = try stride(from: 6, to: bytes.count, by: 16).map { offset in
            let value: UInt128 = bytes.readBigEndian(at: offset)
            guard value < Mersenne127.modulus else { throw SecretSharingError.malformedShare("a value is not below p") }
            return Mersenne127(value)
        }
        try self.init(x: x, secretByteCount: length, values: values)
    }
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        for shift in stride(from: T.bitWidth - 8, through: 0, by: -8) {
            append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    /// The big-endian `T` at `offset`. Precondition: `offset + T.bitWidth / 8 <= count`.
    func readBigEndian<T: FixedWidthInteger>(at offset: Int) -> T {
        self[offset..<offset + T.bitWidth / 8].reduce(T.zero) { $0 << 8 | T($1) }
    }
}
