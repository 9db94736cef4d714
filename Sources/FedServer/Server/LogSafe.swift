/// Client-supplied text made safe for a log line: control characters
/// (newlines included) and backslashes escaped, at most `limit` characters
/// kept (the rest counted), so a client can neither forge a log line nor
/// make one large.
enum LogSafe {
    static func text(_ s: some StringProtocol, limit: Int = 64) -> String {
        var out = ""
        var kept = 0
        var dropped = 0
        for scalar in s.unicodeScalars {
            if kept >= limit {
                dropped += 1
                continue
            }
            kept += 1
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _
            where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
                || scalar.value == 0x2028 || scalar.value == 0x2029:
                out += "\\u{\(String(scalar.value, radix: 16))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        if dropped > 0 { out += "...(+\(dropped) more)" }
        return out
    }
}
