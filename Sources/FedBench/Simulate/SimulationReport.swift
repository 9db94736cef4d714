import Foundation

/// Tables and files of `fed simulate`.
enum SimulationReport {
    /// One row per (strategy, scenario): mean final accuracy over seeds and its range.
    static func table(_ results: [SimulationResult], centralized: [Double]) -> String {
        var groups: [(key: String, runs: [SimulationResult])] = []
        for r in results {
            let key = "\(r.strategy)|\(r.scenario)"
            if let i = groups.firstIndex(where: { $0.key == key }) {
                groups[i].runs.append(r)
            } else {
                groups.append((key, [r]))
            }
        }
        var rows: [[String]] = []
        for g in groups {
            let accs = g.runs.map(\.finalAccuracy)
            let mean = accs.reduce(0, +) / Double(accs.count)
            let sd = (accs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(1, accs.count - 1))).squareRoot()
            let avg = { (f: (SimulationResult) -> Double) in g.runs.map(f).reduce(0, +) / Double(g.runs.count) }
            rows.append([
                g.runs[0].strategy, g.runs[0].scenario, String(format: "%.4f", mean),
                accs.count > 1 ? String(format: "%.4f", sd) : "-",
                String(format: "%.4f-%.4f", accs.min()!, accs.max()!),
                String(format: "%.0f", avg { $0.virtualSeconds }),
                String(format: "%.0f", avg { Double($0.bytes) } / 1e6),
                String(format: "%.0f", avg { Double($0.versions) }),
                String(format: "%.0f", avg { Double($0.rejected) }),
                String(format: "%.1f", avg { $0.wallSeconds }),
            ])
        }
        var text = Table.render(
            header: [
                "strategy", "scenario", "accuracy", "sd", "range", "virtual s", "MB", "versions", "rejected", "wall s",
            ], rows: rows)
        if !centralized.isEmpty {
            let mean = centralized.reduce(0, +) / Double(centralized.count)
            text += String(
                format: "\ncentralized, same budget: %.4f (%.4f-%.4f over %d seeds)", mean, centralized.min()!,
                centralized.max()!, centralized.count)
        }
        return text
    }

    static func write(_ results: [SimulationResult], centralized: [Double], to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let summary: [String: Any] = [
            "centralized_accuracy": centralized.isEmpty
                ? NSNull() : centralized.reduce(0, +) / Double(centralized.count),
            "centralized_accuracies": centralized,
            "runs": results.map {
                [
                    "strategy": $0.strategy, "scenario": $0.scenario, "seed": $0.seed,
                    "final_accuracy": $0.finalAccuracy, "virtual_seconds": $0.virtualSeconds, "bytes": $0.bytes,
                    "pushes": $0.pushes, "rejected": $0.rejected, "versions": $0.versions,
                    "wall_seconds": $0.wallSeconds,
                ] as [String: Any]
            },
        ]
        let json = try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
        try json.write(to: URL(fileURLWithPath: dir + "/summary.json"))
        var csv = "strategy,scenario,seed,virtual_seconds,bytes,samples,accuracy\n"
        for r in results {
            for p in r.curve {
                csv +=
                    "\"\(r.strategy)\",\"\(r.scenario)\",\(r.seed),\(p.virtualSeconds),\(p.bytes),\(p.samples),\(p.accuracy)\n"
            }
        }
        try csv.write(toFile: dir + "/curve.csv", atomically: true, encoding: .utf8)
        try svg(results).write(toFile: dir + "/curves.svg", atomically: true, encoding: .utf8)
    }

    /// Accuracy against virtual time (left) and against bytes (right), one line per strategy and scenario (first seed).
    static func svg(_ results: [SimulationResult]) -> String {
        var seen = Set<String>()
        let lines = results.filter { seen.insert("\($0.strategy)|\($0.scenario)").inserted }
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
        let (w, h, pad) = (420.0, 300.0, 50.0)
        var out =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(2 * w + 70))\" height=\"\(Int(h + 40 + 16 * Double(lines.count)))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        for (panel, (title, x)) in [
            ("accuracy vs virtual seconds", { (p: CurvePoint) in p.virtualSeconds }),
            ("accuracy vs bytes", { (p: CurvePoint) in Double(p.bytes) }),
        ].enumerated() {
            let ox = Double(panel) * (w + 40)
            let maxX = max(1, lines.flatMap { $0.curve.map(x) }.max() ?? 1)
            out += "<text x=\"\(ox + pad)\" y=\"14\">\(title)</text>\n"
            out +=
                "<rect x=\"\(ox + pad)\" y=\"20\" width=\"\(w - pad)\" height=\"\(h - pad)\" fill=\"none\" stroke=\"#999\"/>\n"
            out += "<text x=\"\(ox + 5)\" y=\"24\">1.0</text><text x=\"\(ox + 5)\" y=\"\(h - pad + 20)\">0.0</text>\n"
            out += "<text x=\"\(ox + w - 60)\" y=\"\(h - pad + 34)\">\(String(format: "%.3g", maxX))</text>\n"
            for (i, r) in lines.enumerated() {
                let points = r.curve.map { p in
                    String(format: "%.1f,%.1f", ox + pad + (w - pad) * x(p) / maxX, 20 + (h - pad) * (1 - p.accuracy))
                }.joined(separator: " ")
                out +=
                    "<polyline fill=\"none\" stroke=\"\(colors[i % colors.count])\" stroke-width=\"2\" points=\"\(points)\"/>\n"
            }
        }
        for (i, r) in lines.enumerated() {
            let y = h + 20 + 16 * Double(i)
            out += "<rect x=\"10\" y=\"\(y - 9)\" width=\"12\" height=\"4\" fill=\"\(colors[i % colors.count])\"/>"
            out += "<text x=\"28\" y=\"\(y)\">\(r.strategy) | \(r.scenario)</text>\n"
        }
        return out + "</svg>\n"
    }
}
