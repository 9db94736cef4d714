/// Parses `application/x-www-form-urlencoded` text (a POST body or a URL's
/// query): `key=value` pairs joined by `&`, `+` for space, `%XX` escapes.
/// Malformed escapes are kept literally, as browsers and Flask do.
enum FormFields {
    static func parse<C: Collection>(_ bytes: C) -> [String: [UInt8]] where C.Element == UInt8 {
        var fields: [String: [UInt8]] = [:]
        for pair in bytes.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(decoding: decode(parts[0]), as: UTF8.self)
            fields[key] = parts.count > 1 ? decode(parts[1]) : []
        }
        return fields
    }

    static func decode<C: Collection>(_ raw: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i != raw.endIndex {
            let b = raw[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
            } else if b == UInt8(ascii: "%"), let h1 = raw.index(i, offsetBy: 1, limitedBy: raw.endIndex),
                h1 != raw.endIndex, let h2 = raw.index(h1, offsetBy: 1, limitedBy: raw.endIndex), h2 != raw.endIndex,
                let hi = hex(raw[h1]), let lo = hex(raw[h2])
            {
                out.append(hi << 4 | lo)
                i = h2
            } else {
                out.append(b)
            }
            i = raw.index(after: i)
        }
        return out
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
