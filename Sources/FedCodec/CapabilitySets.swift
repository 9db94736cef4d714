/// A set of compression modes: the `compressions` byte of HELLO and WELCOME,
/// bit `1 << mode` for each mode (`Compression.bit`).
public struct CompressionSet: OptionSet, Sendable, Hashable, CustomStringConvertible {
    /// The wire byte.
    public var rawValue: UInt8

    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The set of one mode.
    public init(_ mode: Compression) { rawValue = mode.bit }

    /// Uncompressed Float32 bytes (`Compression.none`), which every peer accepts.
    public static let uncompressed = CompressionSet(.none)
    public static let zlib = CompressionSet(.zlib)
    public static let shuffleZlib = CompressionSet(.shuffleZlib)
    /// Every mode this codec knows.
    public static let all: CompressionSet = [.uncompressed, .zlib, .shuffleZlib]

    public func contains(_ mode: Compression) -> Bool { rawValue & mode.bit != 0 }

    /// The modes in the set, in wire order.
    public var modes: [Compression] { Compression.allCases.filter(contains) }

    public var description: String { "[" + modes.map(\.description).joined(separator: ", ") + "]" }
}

/// A set of value encodings: the `encodings` byte of WELCOME and the
/// `delta_dtypes` byte of FETCH, bit `1 << (dtype - 1)` for each
/// (`ValueEncoding.bit`).
public struct ValueEncodingSet: OptionSet, Sendable, Hashable, CustomStringConvertible {
    /// The wire byte.
    public var rawValue: UInt8

    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The set of one encoding.
    public init(_ encoding: ValueEncoding) { rawValue = encoding.bit }

    public static let float32 = ValueEncodingSet(.float32)
    public static let float16 = ValueEncodingSet(.float16)
    public static let int8 = ValueEncodingSet(.int8)
    public static let int4 = ValueEncodingSet(.int4)
    public static let int2 = ValueEncodingSet(.int2)
    /// Every encoding this codec knows.
    public static let all: ValueEncodingSet = [.float32, .float16, .int8, .int4, .int2]

    /// The encodings named in a comma-separated list (`fp32,int8`); nil if a
    /// name is not an encoding's (`ValueEncoding.description`).
    public init?(names: String) {
        self = []
        for name in names.split(separator: ",") {
            guard let e = ValueEncoding(name: String(name)) else { return nil }
            insert(ValueEncodingSet(e))
        }
    }

    public func contains(_ encoding: ValueEncoding) -> Bool { rawValue & encoding.bit != 0 }

    /// The encodings in the set, in dtype order.
    public var encodings: [ValueEncoding] { ValueEncoding.allCases.filter(contains) }

    public var description: String { "[" + encodings.map(\.description).joined(separator: ", ") + "]" }
}
