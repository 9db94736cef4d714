/// Optional parts of protocol version 4, agreed at check-in (`Protocol/SPEC.md`
/// section 12.1): a client states the features it speaks in `CHECK_IN`, the
/// server answers the intersection with its own in `ASSIGNMENT`, and a message
/// or task kind gated on a feature is sent only once both agreed on it.
///
/// Bits are assigned in landing order by the features that need them; a
/// receiver ignores bits it does not know, so a peer built today keeps working
/// with one built later.
public struct Features: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 0: the server trains with client-level differential privacy
    /// (section 12.9): it clips each report and adds noise to their mean, and
    /// a train task's parameters state the clipping norm (`dp.clip`), the
    /// noise multiplier (`dp.noise`) and the epsilon spent so far (`dp.epsilon`).
    /// A client that does not agree on it is still selected: the clipping is
    /// the server's.
    public static let differentialPrivacy = Features(rawValue: 1 << 0)

    /// Bit 1: federated evaluation (section 12.10): evaluate tasks (`Assignment.Kind.evaluate`)
    /// and their `EVALUATION_REPORT`.
    public static let evaluation = Features(rawValue: 1 << 1)

    /// Bit 2: secure aggregation (section 12.11): secure-train tasks
    /// (`Assignment.Kind.secureTrain`) and the `SECAGG_*` messages. The server
    /// learns only the sum of a cohort's clipped, quantized updates.
    public static let secureAggregation = Features(rawValue: 1 << 2)
}

/// A list of short `key = value` strings carried by `CHECK_IN` (a client's
/// properties) and `ASSIGNMENT` (a round's parameters): at most 64 pairs,
/// keys 1-64 bytes, values at most 256 bytes, UTF-8, keys unique.
public enum KeyValues {
    public static let maxCount = 64
    public static let maxKeyBytes = 64
    public static let maxValueBytes = 256

    static func write(_ pairs: [(key: String, value: String)], into w: inout ByteWriter) {
        w.u16(UInt16(pairs.count))
        for (k, v) in pairs {
            w.string(k)
            w.string(v)
        }
    }

    static func read(_ r: inout ByteReader, _ what: String) throws(CodecError) -> [String: String] {
        let count = Int(try r.u16("\(what) count"))
        if count > maxCount { throw CodecError(.malformedPayload, "\(count) \(what), more than \(maxCount)") }
        var out: [String: String] = [:]
        for _ in 0..<count {
            let key = try r.string("\(what) key", maxBytes: maxKeyBytes)
            if key.isEmpty { throw CodecError(.invalidString, "an empty \(what) key") }
            let value = try r.string("\(what) value", maxBytes: maxValueBytes)
            if out.updateValue(value, forKey: key) != nil {
                throw CodecError(.malformedPayload, "\(what) key \"\(key)\" given twice")
            }
        }
        return out
    }

    /// `pairs` in key order, so a message encodes the same bytes every time.
    static func sorted(_ pairs: [String: String]) -> [(key: String, value: String)] {
        pairs.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
    }

    /// Whether `pairs` can be encoded: the limits above.
    public static func check(_ pairs: [String: String]) -> String? {
        if pairs.count > maxCount { return "\(pairs.count) pairs, more than \(maxCount)" }
        for (k, v) in pairs {
            if k.isEmpty || k.utf8.count > maxKeyBytes { return "key \"\(k)\" is not 1-\(maxKeyBytes) bytes" }
            if v.utf8.count > maxValueBytes { return "the value of \"\(k)\" is over \(maxValueBytes) bytes" }
        }
        return nil
    }
}
