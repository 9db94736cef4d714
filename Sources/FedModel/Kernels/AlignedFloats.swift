/// A fixed-size array of `Float` whose first element sits on a 64-byte
/// boundary (one cache line, one AVX-512 register), with value semantics
/// (copy on write).
///
/// Why: the kernels load 16 floats at a time. A Swift `Array`'s elements start
/// 32 bytes after a 16-byte-aligned allocation, so most of those loads span two
/// cache lines, which slows the kernels markedly (figures: README). Every
/// buffer the kernels stream (weights, activations, gradients, Adam's moments)
/// is one of these.
///
/// Sendable by argument: the storage is shared between copies only until one
/// of them writes (copy on write through `isKnownUniquelyReferenced`), so a
/// copy sent to another thread is never mutated in place by the sender.
public struct AlignedFloats: RandomAccessCollection, MutableCollection, Equatable, @unchecked Sendable {
    /// Alignment of the first element, in bytes.
    public static let alignment = 64

    private final class Storage {
        let base: UnsafeMutablePointer<Float>
        let count: Int

        init(count: Int) {
            self.count = count
            base = UnsafeMutableRawPointer.allocate(
                byteCount: Swift.max(count, 1) * MemoryLayout<Float>.stride, alignment: AlignedFloats.alignment
            ).bindMemory(to: Float.self, capacity: Swift.max(count, 1))
        }

        func copy() -> Storage {
            let other = Storage(count: count)
            other.base.initialize(from: base, count: count)
            return other
        }

        deinit { UnsafeMutableRawPointer(base).deallocate() }
    }

    private var storage: Storage

    /// `count` copies of `value`.
    public init(repeating value: Float, count: Int) {
        precondition(count >= 0)
        storage = Storage(count: count)
        storage.base.initialize(repeating: value, count: count)
    }

    /// The elements of `values`, in order.
    public init<C: Collection>(_ values: C) where C.Element == Float {
        storage = Storage(count: values.count)
        var p = storage.base
        for v in values {
            p.initialize(to: v)
            p += 1
        }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { storage.count }

    public subscript(position: Int) -> Float {
        get {
            precondition(position >= 0 && position < storage.count, "index out of range")
            return storage.base[position]
        }
        set {
            precondition(position >= 0 && position < storage.count, "index out of range")
            makeUnique()
            storage.base[position] = newValue
        }
    }

    /// Calls `body` with the elements (64-byte aligned).
    public func withUnsafeBufferPointer<R, E: Error>(
        _ body: (UnsafeBufferPointer<Float>) throws(E) -> R
    ) throws(E) -> R {
        try withExtendedLifetime(storage) { () throws(E) -> R in
            try body(UnsafeBufferPointer(start: storage.base, count: storage.count))
        }
    }

    /// Calls `body` with the elements to change in place (64-byte aligned);
    /// copies them first if another value shares them.
    public mutating func withUnsafeMutableBufferPointer<R, E: Error>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws(E) -> R
    ) throws(E) -> R {
        makeUnique()
        return try withExtendedLifetime(storage) { () throws(E) -> R in
            try body(UnsafeMutableBufferPointer(start: storage.base, count: storage.count))
        }
    }

    /// Sets every element to `value`: in place when no other value shares
    /// the elements, in new storage otherwise (the others keep theirs).
    public mutating func setAll(to value: Float) {
        if isKnownUniquelyReferenced(&storage) {
            storage.base.update(repeating: value, count: storage.count)
        } else {
            self = AlignedFloats(repeating: value, count: storage.count)
        }
    }

    public static func == (lhs: AlignedFloats, rhs: AlignedFloats) -> Bool {
        lhs.storage === rhs.storage || lhs.elementsEqual(rhs)
    }

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }
}
