/// Size limits a receiver enforces before it allocates (`Protocol/SPEC.md`, "Limits").
///
/// Every limit is checked against a length read from the wire *before* any
/// buffer of that length is allocated or any byte is inflated, so a peer that
/// declares 4 GiB costs nothing.
public struct Limits: Hashable, Sendable {
    /// Largest payload length accepted in a frame header. Default 16 MiB.
    public var maxPayloadBytes: Int
    /// Largest uncompressed size of a tensor blob's data. Default 64 MiB.
    public var maxDecompressedBytes: Int
    /// Most tensors in one blob. Default 64.
    public var maxTensors: Int
    /// Largest tensor rank. Default 8.
    public var maxRank: Int
    /// Value encodings (`ValueEncoding.bit`) a blob may use: float32 alone
    /// except in version-3 frames (section 6.3).
    public var valueEncodings: UInt8 = ValueEncoding.float32.bit
    /// Value encodings a blob in a version-3 frame may use, float32 always
    /// included: every dtype of section 6.3 by default; a server narrows it to
    /// the dtypes its `WELCOME.encodings` announces, so a blob using another
    /// one is refused from its header (`unsupported_d_type`).
    public var version3Encodings: UInt8 = 0b1_1111

    public init(
        maxPayloadBytes: Int = 16 << 20,
        maxDecompressedBytes: Int = 64 << 20,
        maxTensors: Int = 64,
        maxRank: Int = 8
    ) {
        self.maxPayloadBytes = maxPayloadBytes
        self.maxDecompressedBytes = maxDecompressedBytes
        self.maxTensors = maxTensors
        self.maxRank = maxRank
    }

    public static let `default` = Limits()

    /// Largest magnitude of a model weight (`Protocol/SPEC.md` section 7): a
    /// server refuses a pushed value beyond it (`non_finite_value`) and never
    /// publishes a model holding one. Chosen with headroom: differences of two
    /// weights, their squares summed over 10^8 values, and sample-weighted
    /// sums stay finite in binary32, and a quantized step's `lo + q * step`
    /// cannot overflow.
    public static let maxMagnitude: Float = 1e15

    /// The first value of `tensors` that is not finite or beyond
    /// `maxMagnitude`: (tensor index, value index, value); nil if none.
    public static func firstOutOfRange(_ tensors: [Tensor]) -> (tensor: Int, index: Int, value: Float)? {
        for (t, tensor) in tensors.enumerated() {
            // `!(|v| <= max)` is also true for NaN.
            if let i = tensor.values.firstIndex(where: { !($0.magnitude <= maxMagnitude) }) {
                return (t, i, tensor.values[i])
            }
        }
        return nil
    }
}
