/// A message added after version 3, described and coded in one place.
///
/// Conforming types state their `descriptor`, write their payload and read it
/// back; listing the type in `MessageRegistry.extensions` makes frames of
/// its type decode to `Message.other`. A payload, once published in SPEC.md,
/// never changes: a later need is a new message or a new feature bit.
public protocol ProtocolMessage: Hashable, Sendable {
    static var descriptor: MessageDescriptor { get }
    /// Writes the payload for a frame of protocol `version`.
    func write(into writer: inout ByteWriter, version: UInt8)
    /// Reads a payload written by `write`; throws a `CodecError` for any
    /// malformed payload. Bytes left over are refused by the caller.
    static func read(from reader: inout ByteReader, version: UInt8, limits: Limits) throws(CodecError) -> Self
}

/// A `ProtocolMessage` of any type, as `Message.other` holds it.
public struct AnyProtocolMessage: Hashable, Sendable {
    public let base: any ProtocolMessage

    public init(_ base: any ProtocolMessage) { self.base = base }

    public var type: MessageType { Swift.type(of: base).descriptor.type }

    /// The message as `M`, if it is one.
    public func `as`<M: ProtocolMessage>(_: M.Type) -> M? { base as? M }

    public static func == (a: AnyProtocolMessage, b: AnyProtocolMessage) -> Bool {
        AnyHashable(a.base) == AnyHashable(b.base)
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(AnyHashable(base)) }
}
