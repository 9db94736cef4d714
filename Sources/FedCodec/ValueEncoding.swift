/// How one tensor's values are stored in a blob: the blob's per-tensor
/// `dtype` (`Protocol/SPEC.md` section 6.3). Float32 is lossless; the others
/// travel only in version-3 frames, negotiated per connection.
///
/// - `fp16`: IEEE binary16, rounded to nearest even; decoded exactly to Float32.
/// - `int8`, `int4`, `int2`: affine quantization in blocks of `blockSize`
///   values. Per block, little-endian Float32 `lo` and `step`; each value is a
///   code `q` in `0 ..< 2^bits`, decoded as `lo + Float32(q) * step` (two
///   Float32 roundings, in that order, so every decoder gets the same bits).
///   A tensor's data is its block headers, then its codes packed low bits
///   first, `8 / bits` codes per byte.
public enum ValueEncoding: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case float32 = 1
    case float16 = 2
    case int8 = 3
    case int4 = 4
    case int2 = 5

    /// Values per quantization block.
    public static let blockSize = 256

    /// The encoding's bit in `WELCOME.dtypes` and `FETCH.delta_dtypes`.
    public var bit: UInt8 { 1 << (rawValue - 1) }

    public var description: String {
        switch self {
        case .float32: "fp32"
        case .float16: "fp16"
        case .int8: "int8"
        case .int4: "int4"
        case .int2: "int2"
        }
    }

    public init?(name: String) {
        guard let e = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = e
    }

    /// Bits per code of the block encodings; nil for the float ones.
    public var codeBits: Int? {
        switch self {
        case .float32, .float16: nil
        case .int8: 8
        case .int4: 4
        case .int2: 2
        }
    }

    /// Bytes per value of the float encodings (the byte-shuffle width); nil for blocks.
    public var width: Int? {
        switch self {
        case .float32: 4
        case .float16: 2
        default: nil
        }
    }

    public var isLossless: Bool { self == .float32 }

    /// Bytes of data for `count` values (before compression). `count` is at
    /// most a blob's element limit, so this cannot overflow.
    public func encodedSize(count n: Int) -> Int {
        if let w = width { return w * n }
        let bits = codeBits!
        let blocks = (n + Self.blockSize - 1) / Self.blockSize
        return 8 * blocks + (n * bits + 7) / 8
    }

    /// How a quantizer rounds: to the nearest code, or stochastically (up
    /// with probability equal to the fraction), which keeps the expected
    /// decoded value equal to the input.
    public enum Rounding: Hashable, Sendable {
        case nearest
        case stochastic(seed: UInt64)

        /// The rounding of tensor `index` of a blob: a stream of its own per tensor.
        public func forTensor(_ index: Int) -> Rounding {
            guard case .stochastic(let seed) = self else { return self }
            return .stochastic(seed: seed &+ UInt64(index) &* 0x5851_F42D)
        }
    }

    /// Appends `values` encoded. Never traps: for the block encodings any
    /// finite input is encoded (ranges are computed in binary64, so extremes
    /// such as ±3e38 in one block cannot overflow); a block's decoded values
    /// are within one step of the input, and may round to ±infinity only when
    /// the block spans more than binary32's range. Non-finite input codes as
    /// the block's `lo` and is refused by receivers. An fp16 value beyond its
    /// range becomes infinite (and is refused by the receiver's finite-value check).
    public func encode(_ values: [Float], rounding: Rounding = .nearest, into w: inout ByteWriter) {
        switch self {
        case .float32:
            #if _endian(little)
                values.withUnsafeBytes { w.append($0) }
            #else
                for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { w.append($0) } }
            #endif
        case .float16:
            var out = [UInt8](repeating: 0, count: 2 * values.count)
            for (i, v) in values.enumerated() {
                let h = Float16(v).bitPattern
                out[2 * i] = UInt8(truncatingIfNeeded: h)
                out[2 * i + 1] = UInt8(truncatingIfNeeded: h >> 8)
            }
            w.append(out)
        case .int8, .int4, .int2:
            encodeBlocks(values, bits: codeBits!, rounding: rounding, into: &w)
        }
    }

    private func encodeBlocks(_ values: [Float], bits: Int, rounding: Rounding, into w: inout ByteWriter) {
        let n = values.count
        let blocks = (n + Self.blockSize - 1) / Self.blockSize
        let maxCode = Float((1 << bits) - 1)
        var headers = [UInt8](repeating: 0, count: 8 * blocks)
        var codes = [UInt8](repeating: 0, count: (n * bits + 7) / 8)
        var random: UInt64 = 0
        if case .stochastic(let seed) = rounding { random = seed }
        let perByte = 8 / bits
        for b in 0..<blocks {
            let range = (b * Self.blockSize)..<min(n, (b + 1) * Self.blockSize)
            var lo = Float.infinity
            var hi = -Float.infinity
            for i in range {
                lo = min(lo, values[i])
                hi = max(hi, values[i])
            }
            // `hi - lo` of two finite Float32 values overflows binary32 when
            // they span more than ±1.7e38: such a block is quantized in
            // binary64 (the same codes the binary32 path would pick, had it
            // the range). A step that rounds to zero (a subnormal range) or
            // is not finite (non-finite input, which callers refuse before)
            // codes every value as `lo`.
            let wide = !(hi - lo).isFinite
            let step = hi > lo ? (wide ? Float((Double(hi) - Double(lo)) / Double(maxCode)) : (hi - lo) / maxCode) : 0
            putLE(lo.bitPattern, &headers, 8 * b)
            putLE(step.bitPattern, &headers, 8 * b + 4)
            guard step > 0, step.isFinite else { continue }  // every code 0
            for i in range {
                let x: Float =
                    wide ? Float((Double(values[i]) - Double(lo)) / Double(step)) : (values[i] - lo) / step
                var q: Float
                switch rounding {
                case .nearest: q = (x + 0.5).rounded(.down)
                case .stochastic:
                    q = (x + Self.unitFloat(&random)).rounded(.down)
                }
                // `!(q >= 0)` also catches NaN, so the conversion below cannot trap.
                if !(q >= 0) { q = 0 }
                if q > maxCode { q = maxCode }
                codes[i / perByte] |= UInt8(q) << UInt8((i % perByte) * bits)
            }
        }
        w.append(headers)
        w.append(codes)
    }

    /// Decodes `count` values from exactly `encodedSize(count:)` bytes.
    public func decode(_ data: UnsafeRawBufferPointer, count n: Int) -> [Float] {
        precondition(data.count == encodedSize(count: n))
        let bytes = data.bindMemory(to: UInt8.self)
        switch self {
        case .float32:
            return [Float](unsafeUninitializedCapacity: n) { buf, c in
                if n > 0 { UnsafeMutableRawBufferPointer(buf).copyMemory(from: data) }
                #if _endian(big)
                    for i in 0..<n { buf[i] = Float(bitPattern: UInt32(littleEndian: buf[i].bitPattern)) }
                #endif
                c = n
            }
        case .float16:
            return [Float](unsafeUninitializedCapacity: n) { buf, c in
                for i in 0..<n {
                    buf[i] = Float(Float16(bitPattern: UInt16(bytes[2 * i]) | UInt16(bytes[2 * i + 1]) << 8))
                }
                c = n
            }
        case .int8, .int4, .int2:
            let bits = codeBits!
            let perByte = 8 / bits
            let mask = UInt8((1 << bits) - 1)
            let blocks = (n + Self.blockSize - 1) / Self.blockSize
            let codes = 8 * blocks
            return [Float](unsafeUninitializedCapacity: n) { buf, c in
                for b in 0..<blocks {
                    let lo = Float(bitPattern: Self.getLE(bytes, 8 * b))
                    let step = Float(bitPattern: Self.getLE(bytes, 8 * b + 4))
                    for i in (b * Self.blockSize)..<min(n, (b + 1) * Self.blockSize) {
                        let q = (bytes[codes + i / perByte] >> UInt8((i % perByte) * bits)) & mask
                        let scaled: Float = Float(q) * step
                        buf[i] = lo + scaled
                    }
                }
                c = n
            }
        }
    }

    /// Encodes and decodes `values` as a receiver will see them.
    public func roundTrip(_ values: [Float], rounding: Rounding = .nearest) -> [Float] {
        var w = ByteWriter(capacity: encodedSize(count: values.count))
        encode(values, rounding: rounding, into: &w)
        return w.bytes.withUnsafeBytes { decode($0, count: values.count) }
    }

    private func putLE(_ v: UInt32, _ a: inout [UInt8], _ at: Int) {
        a[at] = UInt8(truncatingIfNeeded: v)
        a[at + 1] = UInt8(truncatingIfNeeded: v >> 8)
        a[at + 2] = UInt8(truncatingIfNeeded: v >> 16)
        a[at + 3] = UInt8(truncatingIfNeeded: v >> 24)
    }

    private static func getLE(_ b: UnsafeBufferPointer<UInt8>, _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }

    /// A uniform Float in [0, 1) from SplitMix64 (the sender's choice; not on the wire).
    private static func unitFloat(_ state: inout UInt64) -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) * (1.0 / Float(1 << 24))
    }
}
