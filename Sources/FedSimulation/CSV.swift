/// Comma-separated values as RFC 4180 writes them: a field holding a comma,
/// a double quote, a carriage return or a line feed is enclosed in double
/// quotes, with each double quote inside it doubled; other fields are written
/// as they are. Records end with a line feed.
enum CSV {
    /// One field, quoted when it must be.
    static func field(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) else {
            return text
        }
        return "\"" + text.replacing("\"", with: "\"\"") + "\""
    }

    /// A whole file: the header record, then one record per row, each field
    /// described with `String(describing:)`.
    static func document(header: [String], rows: [[Any]]) -> String {
        ([header] + rows).map { fields in
            fields.map { field(String(describing: $0)) }.joined(separator: ",") + "\n"
        }.joined()
    }
}
