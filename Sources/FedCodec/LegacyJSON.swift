/// The original demo's JSON for weights: six nested lists of numbers.
///
/// The original sent `weights.tolist()` of float32 arrays through Python's
/// json, which prints each value as the shortest decimal that round-trips the
/// float64 the float32 widens to. This writer prints exactly that
/// (`Double(value).description`), so sizes match the original's.
public enum LegacyJSON {
    public static func modelAnswer(serverID: String, datasets: UInt64, tensors: [Tensor]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(tensors.reduce(0) { $0 + $1.count } * 22 + 64)
        out += Array("{\"id\": ".utf8)
        appendString(serverID, to: &out)
        out += Array(", \"datasets\": \(datasets), \"weights\": ".utf8)
        appendWeights(tensors, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Reads a fetch answer `{"id": ..., "datasets": N, "weights": [...]}` (keys
    /// in any order). Only `datasets` and `weights` are read.
    public static func parseModelAnswer(_ text: [UInt8]) throws(WeightsJSONParser.Failure) -> (
        datasets: UInt64, tensors: [Tensor]
    ) {
        func find(_ key: String) -> Int? {
            let k = Array("\"\(key)\"".utf8)
            guard text.count >= k.count else { return nil }
            for i in 0...(text.count - k.count) where text[i] == k[0] && Array(text[i..<i + k.count]) == k {
                var j = i + k.count
                while j < text.count, text[j] == 0x20 || text[j] == 0x0A || text[j] == 0x09 || text[j] == 0x0D {
                    j += 1
                }
                guard j < text.count, text[j] == UInt8(ascii: ":") else { continue }
                return j + 1
            }
            return nil
        }
        guard let d = find("datasets") else { throw .init(description: "answer has no \"datasets\"") }
        var j = d
        while j < text.count, text[j] == 0x20 { j += 1 }
        var datasets: UInt64 = 0
        var digits = 0
        while j < text.count, text[j] >= UInt8(ascii: "0"), text[j] <= UInt8(ascii: "9"), digits < 19 {
            datasets = datasets * 10 + UInt64(text[j] - UInt8(ascii: "0"))
            j += 1
            digits += 1
        }
        guard digits > 0 else { throw .init(description: "\"datasets\" is not a non-negative integer") }
        guard let w = find("weights") else { throw .init(description: "answer has no \"weights\"") }
        let (tensors, _) = try WeightsJSONParser.parse(text, from: w)
        return (datasets, tensors)
    }

    /// `[t1, t2, ...]`, each tensor as nested lists by its shape.
    public static func appendWeights(_ tensors: [Tensor], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (i, t) in tensors.enumerated() {
            if i > 0 { out += [UInt8(ascii: ","), UInt8(ascii: " ")] }
            var index = 0
            appendNested(t.values, shape: t.shape[...], index: &index, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    private static func appendNested(_ v: [Float], shape: ArraySlice<Int>, index: inout Int, to out: inout [UInt8]) {
        guard let n = shape.first else {
            out += Array(Double(v[index]).description.utf8)
            index += 1
            return
        }
        out.append(UInt8(ascii: "["))
        for i in 0..<n {
            if i > 0 { out += [UInt8(ascii: ","), UInt8(ascii: " ")] }
            appendNested(v, shape: shape.dropFirst(), index: &index, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    public static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += Array("\\\"".utf8)
            case "\\": out += Array("\\\\".utf8)
            case _ where u.value < 0x20: out += Array(String(format: u.value).utf8)
            default: out += Array(String(u).utf8)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension String {
    fileprivate init(format value: UInt32) {
        let hex = String(value, radix: 16)
        self = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}
