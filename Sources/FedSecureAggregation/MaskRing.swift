/// The ring Z_(2^b), 1 <= b <= 32, whose elements are stored in `UInt32`s
/// holding values below 2^b. Masked inputs, masks and their sums live here.
///
/// Invariant of every vector this type returns: each element is below 2^b.
public struct MaskRing: Hashable, Sendable {
    /// b: elements are integers modulo 2^b.
    public let bits: Int

    /// The ring of integers modulo 2^bits.
    ///
    /// - Throws: ``SecureAggregationError/ringWidthOutOfRange(_:)`` unless 1 <= bits <= 32.
    public init(bits: Int) throws {
        guard (1...32).contains(bits) else { throw SecureAggregationError.ringWidthOutOfRange(bits) }
        self.bits = bits
    }

    /// 2^b - 1: the largest element, and the mask that reduces a `UInt32` modulo 2^b.
    public var mask: UInt32 { UInt32.max >> (32 - bits) }

    /// `value` modulo 2^b.
    public func reduce(_ value: UInt32) -> UInt32 { value & mask }

    /// `accumulator += addend` element-wise, modulo 2^b.
    ///
    /// - Throws: ``SecureAggregationError/lengthMismatch(expected:got:)`` for vectors of different lengths.
    public func add(_ addend: [UInt32], to accumulator: inout [UInt32]) throws {
        guard addend.count == accumulator.count else {
            throw SecureAggregationError.lengthMismatch(expected: accumulator.count, got: addend.count)
        }
        let mask = self.mask
        for index in accumulator.indices { accumulator[index] = (accumulator[index] &+ addend[index]) & mask }
    }

    /// `accumulator -= subtrahend` element-wise, modulo 2^b.
    ///
    /// - Throws: ``SecureAggregationError/lengthMismatch(expected:got:)`` for vectors of different lengths.
    public func subtract(_ subtrahend: [UInt32], from accumulator: inout [UInt32]) throws {
        guard subtrahend.count == accumulator.count else {
            throw SecureAggregationError.lengthMismatch(expected: accumulator.count, got: subtrahend.count)
        }
        let mask = self.mask
        for index in accumulator.indices { accumulator[index] = (accumulator[index] &- subtrahend[index]) & mask }
    }
}
