import Foundation

/// Timing for benchmarks: repeats a body until `seconds` have passed and
/// returns the median seconds per call over batches.
enum Timing {
    static func measure(seconds: Double, _ body: () -> Void) -> Double {
        body()  // warm up
        let clock = ContinuousClock()
        var samples: [Double] = []
        let deadline = clock.now + .milliseconds(Int(seconds * 1000))
        repeat {
            let start = clock.now
            body()
            let d = clock.now - start
            samples.append(Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
        } while clock.now < deadline || samples.count < 3
        samples.sort()
        return samples[samples.count / 2]
    }
}

/// Plain-text tables, columns right-aligned except the first.
enum Table {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = (0..<header.count).map { c in all.map { $0[c].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { c, s in
                let pad = String(repeating: " ", count: widths[c] - s.count)
                return c == 0 ? s + pad : pad + s
            }.joined(separator: "  ")
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
    }
}

/// A bar from an issue, checked against a measured ratio and printed.
enum Bar {
    static func check(_ name: String, _ value: Double, atLeast: Double) {
        let ok = value >= atLeast
        print(String(format: "  %@  %@: %.2f (need >= %.2f)", ok ? "PASS" : "MISS", name, value, atLeast))
    }

    /// A yes/no bar with what was measured; returns whether it passed.
    @discardableResult
    static func expect(_ name: String, _ ok: Bool, _ measured: String) -> Bool {
        print("  \(ok ? "PASS" : "MISS")  \(name): \(measured)")
        return ok
    }
}

/// Mean, sample standard deviation (n - 1), min, median and max of a non-empty sample.
struct SampleSummary {
    var mean: Double
    var standardDeviation: Double
    var min: Double
    var median: Double
    var max: Double

    /// - Precondition: `values` is not empty.
    init(_ values: [Double]) {
        precondition(!values.isEmpty, "SampleSummary needs at least one value")
        let sorted = values.sorted()
        let n = Double(values.count)
        mean = values.reduce(0, +) / n
        let m = mean
        standardDeviation =
            values.count > 1 ? (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / (n - 1)).squareRoot() : 0
        min = sorted[0]
        max = sorted[sorted.count - 1]
        let mid = sorted.count / 2
        median = sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }
}

/// Where benchmarks write their figures.
enum BenchOutput {
    /// `value` as pretty JSON at `path` (its folder created); NaN and
    /// infinities (a figure not measured, such as a remote server's CPU) as strings.
    static func json<T: Encodable>(_ value: T, to path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try encoder.encode(value).write(to: URL(fileURLWithPath: path))
    }
}
