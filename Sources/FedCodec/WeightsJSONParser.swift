#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Parses the original demo's weights: a JSON list of tensors, each a
/// rectangular nested list of numbers (or a bare number), into `Tensor`s.
///
/// Written for one job and for speed (a push is ~4.8 MB of text): numbers go
/// through `strtod`, shapes are inferred and checked rectangular, and any
/// other JSON (objects, strings, true, null) is an error naming the offset.
public enum WeightsJSONParser {
    /// Why a text is not weights JSON, with the byte offset where reading stopped.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The tensors of a JSON list of nested lists.
    public static func parse(_ text: [UInt8]) throws(Failure) -> [Tensor] {
        let (tensors, end) = try parse(text, from: 0)
        guard end == text.count else { throw Failure(description: "weights JSON: trailing characters at byte \(end)") }
        return tensors
    }

    /// The tensors of the list that starts at `offset` (after optional
    /// whitespace), and the offset just past its closing bracket.
    public static func parse(_ text: [UInt8], from offset: Int) throws(Failure) -> ([Tensor], Int) {
        var bytes = text
        bytes.append(0)  // strtod needs a terminator
        let result: Result<([Tensor], Int), Failure> = bytes.withUnsafeBufferPointer { buf in
            var p = Parser(base: buf.baseAddress!, count: text.count, i: offset)
            return Result { () throws(Failure) -> ([Tensor], Int) in
                let t = try p.document()
                return (t, p.i)
            }
        }
        return try result.get()
    }

    private struct Parser {
        /// RFC 8259's number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
        /// (so `01`, `1.`, `.5`, `+1` and `1e` are not numbers).
        static func isJSONNumber(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
            var k = 0
            func digits() -> Int {
                let from = k
                while k < b.count, b[k] >= UInt8(ascii: "0"), b[k] <= UInt8(ascii: "9") { k += 1 }
                return k - from
            }
            if k < b.count, b[k] == UInt8(ascii: "-") { k += 1 }
            if k < b.count, b[k] == UInt8(ascii: "0") {
                k += 1
            } else if digits() == 0 {
                return false
            }
            if k < b.count, b[k] == UInt8(ascii: ".") {
                k += 1
                if digits() == 0 { return false }
            }
            if k < b.count, b[k] == UInt8(ascii: "e") || b[k] == UInt8(ascii: "E") {
                k += 1
                if k < b.count, b[k] == UInt8(ascii: "+") || b[k] == UInt8(ascii: "-") { k += 1 }
                if digits() == 0 { return false }
            }
            return k == b.count
        }

        let base: UnsafePointer<UInt8>
        let count: Int
        var i = 0

        mutating func skipSpace() {
            while i < count, base[i] == 0x20 || base[i] == 0x0A || base[i] == 0x0D || base[i] == 0x09 { i += 1 }
        }

        func fail(_ what: String) -> Failure { Failure(description: "weights JSON: \(what) at byte \(i)") }

        mutating func expect(_ c: UInt8) throws(Failure) {
            skipSpace()
            guard i < count, base[i] == c else { throw fail("expected '\(Character(UnicodeScalar(c)))'") }
            i += 1
        }

        /// The elements of a list whose `[` has been consumed, each read by
        /// `element`, up to and including the closing `]`; returns their count.
        mutating func listElements(_ element: (inout Parser) throws(Failure) -> Void) throws(Failure) -> Int {
            skipSpace()
            if i < count, base[i] == UInt8(ascii: "]") {
                i += 1
                return 0
            }
            var n = 0
            while true {
                try element(&self)
                n += 1
                skipSpace()
                guard i < count else { throw fail("unterminated list") }
                if base[i] == UInt8(ascii: ",") {
                    i += 1
                    continue
                }
                try expect(UInt8(ascii: "]"))
                return n
            }
        }

        mutating func document() throws(Failure) -> [Tensor] {
            try expect(UInt8(ascii: "["))
            var tensors: [Tensor] = []
            _ = try listElements { (p) throws(Failure) in
                var values: [Float] = []
                var dims: [Int] = []
                var leafDepth: Int?
                try p.value(depth: 0, dims: &dims, leafDepth: &leafDepth, values: &values)
                let shape = Array(dims.prefix(leafDepth ?? dims.count))
                guard let t = try? Tensor(shape: shape, values: values) else { throw p.fail("ragged tensor") }
                tensors.append(t)
            }
            return tensors
        }

        /// A number or a nested list. `dims[d]` is the length of every list at
        /// depth `d` (-1 until the first one ends); every number must sit at
        /// the same depth, `leafDepth`, so the tensor is rectangular.
        mutating func value(depth: Int, dims: inout [Int], leafDepth: inout Int?, values: inout [Float])
            throws(Failure)
        {
            skipSpace()
            guard i < count else { throw fail("unexpected end") }
            guard depth <= 8 else { throw fail("nesting deeper than 8") }
            if base[i] == UInt8(ascii: "[") {
                if let leaf = leafDepth, depth >= leaf { throw fail("a list where a number was expected") }
                i += 1
                let n = try listElements { (p) throws(Failure) in
                    try p.value(depth: depth + 1, dims: &dims, leafDepth: &leafDepth, values: &values)
                }
                while dims.count <= depth { dims.append(-1) }
                if dims[depth] == -1 {
                    dims[depth] = n
                } else if dims[depth] != n {
                    throw fail("ragged nested list (\(n) elements where \(dims[depth]) were expected)")
                }
                return
            }
            if let leaf = leafDepth, leaf != depth { throw fail("a number where a list was expected") }
            leafDepth = depth
            let start = base + i
            var end: UnsafeMutablePointer<CChar>?
            let v = start.withMemoryRebound(to: CChar.self, capacity: 1) { s -> Double in strtod(s, &end) }
            let consumed = end.map { UnsafeRawPointer($0) - UnsafeRawPointer(start) } ?? 0
            guard consumed > 0 else { throw fail("expected a number") }
            // strtod also accepts hex and other spellings JSON does not. Python's
            // json writes NaN and Infinity, which pass here so that validation
            // can reject them as non-finite values, with that reason.
            let c = base[i]
            let pythonSpecial =
                c == UInt8(ascii: "N") || c == UInt8(ascii: "I")
                || (c == UInt8(ascii: "-") && i + 1 < count && base[i + 1] == UInt8(ascii: "I"))
            guard c == UInt8(ascii: "-") || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || pythonSpecial else {
                throw fail("not a JSON number")
            }
            if !pythonSpecial && !Self.isJSONNumber(UnsafeBufferPointer(start: start, count: consumed)) {
                throw fail("not a JSON number")
            }
            i += consumed
            values.append(Float(v))
        }
    }
}
