/// The names and validators of the model's HTTP resources (Protocol/SPEC.md
/// section 10.1): one URL per version, and `If-None-Match` as RFC 9110 reads it.
enum ModelResource {
    /// The version a `/v1/model/N` path segment names, or nil when `text` is
    /// not N in canonical decimal: ASCII digits only (no sign, no space), no
    /// leading zero except for `0` itself, at most `UInt64.max`. So each
    /// version has exactly one URL.
    static func version(_ text: Substring) -> UInt64? {
        let digits = text.utf8
        guard let first = digits.first, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            first != UInt8(ascii: "0") || digits.count == 1
        else { return nil }
        return UInt64(text)
    }

    /// Whether the `If-None-Match` field lines `values` match the entity tag
    /// `etag` (with its quotes, such as `"v3"`) of the current representation,
    /// by the weak comparison RFC 9110 (13.1.2) prescribes for this field: `*`
    /// matches; otherwise the field is a comma-separated list of entity tags,
    /// each optionally `W/`-prefixed, and matches when one has the same opaque
    /// tag. Empty list elements are skipped (RFC 9110 5.6.1). A field that is
    /// not such a list matches nothing, so the request is answered in full.
    static func ifNoneMatch(_ values: [String], matches etag: String) -> Bool {
        guard !values.isEmpty else { return false }
        let field = Array(values.joined(separator: ",").utf8)
        let isWhitespace = { (c: UInt8) in c == 0x20 || c == 0x09 }
        let trimmed = field.drop(while: isWhitespace).reversed().drop(while: isWhitespace).reversed()
        if trimmed.elementsEqual("*".utf8) { return true }
        let wanted = Array(etag.utf8)
        var i = 0
        var matched = false
        while i < field.count {
            // Skip whitespace and empty elements.
            if isWhitespace(field[i]) || field[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            if field[i] == UInt8(ascii: "W"), i + 1 < field.count, field[i + 1] == UInt8(ascii: "/") { i += 2 }
            guard i < field.count, field[i] == UInt8(ascii: "\"") else { return false }
            let start = i
            i += 1
            // etagc = %x21 / %x23-7E / obs-text
            while i < field.count, field[i] == 0x21 || field[i] >= 0x23 && field[i] != 0x7F { i += 1 }
            guard i < field.count, field[i] == UInt8(ascii: "\"") else { return false }
            i += 1
            if field[start..<i].elementsEqual(wanted) { matched = true }
            while i < field.count, isWhitespace(field[i]) { i += 1 }
            guard i == field.count || field[i] == UInt8(ascii: ",") else { return false }
        }
        return matched
    }
}
