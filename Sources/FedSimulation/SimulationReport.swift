import Foundation

/// What a simulation measured, with the tables and files `fed simulate` prints and writes.
public struct SimulationReport: Sendable {
    /// Every run, in the order run: seed by seed, strategy by strategy, encoding by encoding.
    public var results: [SimulationResult]
    /// The centralized reference's accuracy on each seed; empty when
    /// ``SimulationConfiguration/centralized`` was false.
    public var centralized: [Double]

    /// A report of these runs.
    public init(results: [SimulationResult], centralized: [Double]) {
        self.results = results
        self.centralized = centralized
    }

    /// Everything `fed simulate` prints after the runs: ``table``, then
    /// ``roundsTable`` for runs through check-in, ``privacyTable`` for runs
    /// with differential privacy, then
    /// ``pairedDifferences`` when the runs compare encodings, then
    /// ``timeToReach`` and ``pairedStrategies`` when the runs compare
    /// strategies, then ``clientTable`` when clients held data out; blank
    /// lines between.
    public var summary: String {
        var text = table
        if let wall = wallTimeLine { text += "\n" + wall }
        let rounds = roundsTable
        if !rounds.isEmpty { text += "\n\n" + rounds }
        let privacy = privacyTable
        if !privacy.isEmpty { text += "\n\n" + privacy }
        if Set(results.map(\.encoding)).count > 1 { text += "\n\n" + pairedDifferences }
        let reach = timeToReach
        if !reach.isEmpty { text += "\n\n" + reach }
        let paired = pairedStrategies
        if !paired.isEmpty { text += "\n\n" + paired }
        let clients = clientTable
        if !clients.isEmpty { text += "\n\n" + clients }
        return text
    }

    /// One row per (strategy, scenario): mean final accuracy over seeds, its
    /// standard deviation and range, and, with a centralized reference, the
    /// mean's distance to the reference's mean over the same seeds (points);
    /// then mean virtual seconds, megabytes, versions, refused pushes and wall seconds.
    public var table: String {
        let reference = centralized.isEmpty ? nil : centralized.reduce(0, +) / Double(centralized.count)
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
            var row = [
                g.runs[0].strategy, g.runs[0].scenario, String(format: "%.4f", mean),
                accs.count > 1 ? String(format: "%.4f", sd) : "-",
                String(format: "%.4f-%.4f", accs.min()!, accs.max()!),
            ]
            if let reference { row.append(String(format: "%+.2f", (mean - reference) * 100)) }
            rows.append(
                row + [
                    String(format: "%.0f", avg { $0.virtualSeconds }),
                    String(format: "%.0f", avg { Double($0.bytes) } / 1e6),
                    String(format: "%.0f", avg { Double($0.versions) }),
                    String(format: "%.0f", avg { Double($0.rejected) }),
                    String(format: "%.1f", avg { $0.wallSeconds }),
                ])
        }
        let header =
            ["strategy", "scenario", "accuracy", "sd", "range"] + (reference == nil ? [] : ["vs central"])
            + ["virtual s", "MB", "versions", "rejected", "wall s"]
        var text = TextTable.render(header: header, rows: rows)
        if let reference {
            text += String(
                format:
                    "\ncentralized, same budget: %.4f (%.4f-%.4f over %d seeds); vs central: a row's mean minus this, in points",
                reference, centralized.min()!, centralized.max()!, centralized.count)
        }
        return text
    }

    /// Where the runs' wall-clock seconds went (``SimulationResult/wallTime``),
    /// mean over runs: nil when no run measured it.
    public var wallTimeLine: String? {
        let measured = results.compactMap { r in r.wallTime.map { (r.wallSeconds, $0) } }
        guard !measured.isEmpty else { return nil }
        let n = Double(measured.count)
        let mean = { (f: (WallTime) -> Double) in measured.map { f($0.1) }.reduce(0, +) / n }
        let total = measured.map(\.0).reduce(0, +) / n
        let parts = [
            ("training", mean(\.training)), ("fetch", mean(\.fetch)), ("push", mean(\.push)),
            ("evaluation", mean(\.evaluation)), ("setup", mean(\.setup)),
        ]
        let other = total - parts.map(\.1).reduce(0, +)
        return "wall time per run: "
            + (parts + [("other", other)]).map { "\($0.0) " + String(format: "%.2f s", $0.1) }.joined(separator: ", ")
            + String(format: " (%.2f s)", total)
    }

    /// For runs through check-in (``SimulationResult/rounds``), one row per
    /// (strategy, scenario) and seed: rounds completed and abandoned, virtual
    /// seconds per closed round (mean and 90th percentile), the deadline,
    /// tasks trained, reports applied, late and dropped, and samples trained
    /// in all (the budget counts applied samples only). Empty without such runs.
    public var roundsTable: String {
        var rows: [[String]] = []
        for r in results {
            guard let f = r.rounds else { continue }
            rows.append([
                r.strategy, r.scenario, "\(r.seed)", String(format: "%.4f", r.finalAccuracy), "\(f.completed)",
                "\(f.abandoned)", String(format: "%.1f", f.meanSeconds), String(format: "%.1f", f.p90Seconds),
                String(format: "%.0f", f.deadlineSeconds), "\(f.tasks)", "\(f.applied)", "\(f.late)", "\(f.dropped)",
                "\(f.samplesTrained)",
            ])
        }
        guard !rows.isEmpty else { return "" }
        return
            "rounds through check-in, run by run (virtual seconds from selection to closing):\n"
            + TextTable.render(
                header: [
                    "strategy", "scenario", "seed", "accuracy", "rounds", "abandoned", "s/round", "p90 s", "deadline s",
                    "tasks", "applied", "late", "dropped", "samples trained",
                ],
                rows: rows)
    }

    /// For runs with differential privacy (``SimulationResult/privacy``), one
    /// row per scenario and seed: the final accuracy beside the epsilon the
    /// run's published versions spent (at its delta), the rounds accounted for
    /// and the last clipping norm; then, when several noise levels ran, the
    /// mean accuracy and epsilon of each (accuracy against epsilon). Empty
    /// without such runs.
    public var privacyTable: String {
        let runs = results.filter { $0.privacy != nil }
        guard !runs.isEmpty else { return "" }
        var text =
            "differential privacy, run by run (epsilon of the versions published):\n"
            + TextTable.render(
                header: ["strategy", "scenario", "seed", "accuracy", "epsilon", "delta", "rounds", "clip"],
                rows: runs.map { r in
                    let p = r.privacy!
                    return [
                        r.strategy, r.scenario, "\(r.seed)", String(format: "%.4f", r.finalAccuracy),
                        String(format: "%.3f", p.epsilon), "\(p.delta)", "\(p.rounds)", String(format: "%.4g", p.clip),
                    ]
                })
        let scenarios = Self.distinct(runs) { $0.scenario }
        if scenarios.count > 1 {
            let rows = scenarios.map { scenario -> [String] in
                let these = runs.filter { $0.scenario == scenario }
                let accuracies = these.map(\.finalAccuracy)
                let mean = accuracies.reduce(0, +) / Double(accuracies.count)
                let epsilon = these.map { $0.privacy!.epsilon }.reduce(0, +) / Double(these.count)
                return [
                    scenario, "\(these.count)", String(format: "%.3f", epsilon), String(format: "%.4f", mean),
                    String(format: "%.4f", accuracies.min()!), String(format: "%.4f", accuracies.max()!),
                ]
            }
            text +=
                "\n\naccuracy against epsilon (means over seeds):\n"
                + TextTable.render(
                    header: ["scenario", "seeds", "epsilon", "accuracy", "min", "max"], rows: rows)
        }
        return text
    }

    /// For each strategy, each encoding against the first one run with it,
    /// seed by seed: the mean difference of final accuracy (points) and its
    /// 95% interval (Student's t over the seeds), and bytes per push and fetch.
    /// Runs with a single encoding give one row per strategy with a difference of zero.
    public var pairedDifferences: String {
        var rows: [[String]] = []
        let base = { (r: SimulationResult) in r.strategy.components(separatedBy: " [").first ?? r.strategy }
        let strategies = Self.distinct(results, base)
        for strategy in strategies {
            let runs = results.filter { base($0) == strategy }
            guard let reference = runs.first?.encoding else { continue }
            let encodings = Self.distinct(runs) { $0.encoding }
            for e in encodings {
                let pairs: [(SimulationResult, SimulationResult)] = runs.filter { $0.encoding == e }.compactMap { r in
                    runs.first { $0.encoding == reference && $0.seed == r.seed }.map { ($0, r) }
                }
                let d = pairs.map { ($0.1.finalAccuracy - $0.0.finalAccuracy) * 100 }
                let n = Double(d.count)
                let mean = d.reduce(0, +) / max(n, 1)
                let sd = (d.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / max(n - 1, 1)).squareRoot()
                let half = d.count > 1 ? Self.tCritical95(d.count - 1) * sd / n.squareRoot() : .nan
                let mine = runs.filter { $0.encoding == e }
                let per = { (f: (SimulationResult) -> Double) in mine.map(f).reduce(0, +) / Double(max(mine.count, 1)) }
                rows.append([
                    strategy, e, "\(d.count)", String(format: "%+.2f", mean),
                    d.count > 1 ? String(format: "%+.2f..%+.2f", mean - half, mean + half) : "-",
                    String(format: "%.0f", per { Double($0.bytesSent) / Double(max($0.pushes, 1)) }),
                    String(format: "%.0f", per { Double($0.bytesReceived) / Double(max($0.pushes, 1)) }),
                    String(format: "%.0f", per { Double($0.deltaFetches) }),
                ])
            }
        }
        return
            "paired by seed, against the first encoding (accuracy points; bytes per push and per fetch, frames included):\n"
            + TextTable.render(
                header: [
                    "strategy", "encoding", "seeds", "mean diff", "95% interval", "sent B/push", "received B/fetch",
                    "delta fetches",
                ],
                rows: rows)
    }

    /// For each scenario run with several strategies, the first strategy is the
    /// baseline: for every other one and every seed, the first curve point at
    /// which it reaches the baseline's final accuracy, as a share of the
    /// baseline's virtual time (resolution: the curve's points), and the final
    /// difference in points. Empty when no scenario has two strategies.
    public var timeToReach: String {
        let scenarios = Self.distinct(results) { $0.scenario }
        var rows: [[String]] = []
        for scenario in scenarios {
            let runs = results.filter { $0.scenario == scenario }
            let strategies = Self.distinct(runs) { $0.strategy }
            guard let baseline = strategies.first, strategies.count > 1 else { continue }
            for strategy in strategies.dropFirst() {
                var shares: [String] = []
                var gains: [Double] = []
                for r in runs where r.strategy == strategy {
                    guard let b = runs.first(where: { $0.strategy == baseline && $0.seed == r.seed }),
                        let target = b.curve.last
                    else { continue }
                    gains.append((r.finalAccuracy - b.finalAccuracy) * 100)
                    if let hit = r.curve.first(where: { $0.accuracy >= target.accuracy }) {
                        shares.append(String(format: "%.0f%%", 100 * hit.virtualSeconds / target.virtualSeconds))
                    } else {
                        shares.append("never")
                    }
                }
                guard !gains.isEmpty else { continue }
                rows.append([
                    scenario, strategy, baseline, shares.joined(separator: " "),
                    String(format: "%+.2f", gains.reduce(0, +) / Double(gains.count)),
                ])
            }
        }
        guard !rows.isEmpty else { return "" }
        return
            "against the first strategy of each scenario, seed by seed: when its final accuracy is reached (share of its virtual time), and the final difference (points):\n"
            + TextTable.render(header: ["scenario", "strategy", "baseline", "reaches it at", "final diff"], rows: rows)
    }

    /// For each scenario run with several strategies, every strategy against
    /// the first, paired by seed on the mean of each run's last three curve
    /// points (``SimulationResult/lastThreeAccuracy``): both means, the mean
    /// difference (points) and its 95% interval (Student's t over the seeds),
    /// and each one's ``SimulationResult/spread`` (mean over the seeds of
    /// the mean change between consecutive points of a curve's second half).
    /// Empty when no scenario has two strategies.
    public var pairedStrategies: String {
        var rows: [[String]] = []
        for scenario in Self.distinct(results, { $0.scenario }) {
            let runs = results.filter { $0.scenario == scenario }
            let strategies = Self.distinct(runs) { $0.strategy }
            guard let baseline = strategies.first, strategies.count > 1 else { continue }
            for strategy in strategies.dropFirst() {
                let pairs: [(SimulationResult, SimulationResult)] = runs.filter { $0.strategy == strategy }.compactMap {
                    r in runs.first { $0.strategy == baseline && $0.seed == r.seed }.map { ($0, r) }
                }
                guard !pairs.isEmpty else { continue }
                let n = Double(pairs.count)
                let d = pairs.map { ($0.1.lastThreeAccuracy - $0.0.lastThreeAccuracy) * 100 }
                let mean = d.reduce(0, +) / n
                let sd = (d.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / max(n - 1, 1)).squareRoot()
                let half = d.count > 1 ? Self.tCritical95(d.count - 1) * sd / n.squareRoot() : .nan
                let avg = { (f: ((SimulationResult, SimulationResult)) -> Double) in pairs.map(f).reduce(0, +) / n }
                rows.append([
                    scenario, strategy, baseline, "\(pairs.count)",
                    String(format: "%.4f", avg { $0.1.lastThreeAccuracy }),
                    String(format: "%.4f", avg { $0.0.lastThreeAccuracy }), String(format: "%+.2f", mean),
                    d.count > 1 ? String(format: "%+.2f..%+.2f", mean - half, mean + half) : "-",
                    String(format: "%.2f", avg { $0.1.spread }), String(format: "%.2f", avg { $0.0.spread }),
                ])
            }
        }
        guard !rows.isEmpty else { return "" }
        return
            "against the first strategy of each scenario, paired by seed on the mean of each run's last three evaluation points (points; spread: mean change between consecutive points of the curve's second half, points):\n"
            + TextTable.render(
                header: [
                    "scenario", "strategy", "baseline", "seeds", "last 3", "baseline last 3", "mean diff",
                    "95% interval", "spread", "baseline spread",
                ], rows: rows)
    }

    /// For runs whose clients held data out
    /// (``SimulationResult/clientAccuracy``), one row per (strategy,
    /// scenario): the final model's accuracy on each client's held-out share
    /// as served, and the personalized models' (mean / 10th percentile /
    /// worst over clients, then averaged over seeds), and the clients
    /// measured. Empty without such runs.
    public var clientTable: String {
        var groups: [(key: String, runs: [SimulationResult])] = []
        for r in results where r.clientAccuracy != nil {
            let key = "\(r.strategy)|\(r.scenario)"
            if let i = groups.firstIndex(where: { $0.key == key }) {
                groups[i].runs.append(r)
            } else {
                groups.append((key, [r]))
            }
        }
        guard !groups.isEmpty else { return "" }
        func mean(_ ds: [AccuracyDistribution]) -> String {
            guard !ds.isEmpty else { return "-" }
            let n = Double(ds.count)
            return AccuracyDistribution(
                mean: ds.map(\.mean).reduce(0, +) / n, p10: ds.map(\.p10).reduce(0, +) / n,
                min: ds.map(\.min).reduce(0, +) / n, clients: ds[0].clients
            ).text
        }
        let rows = groups.map { g -> [String] in
            [
                g.runs[0].strategy, g.runs[0].scenario, "\(g.runs.count)", mean(g.runs.compactMap(\.clientAccuracy)),
                mean(g.runs.compactMap(\.personalizedAccuracy)), "\(g.runs[0].clientAccuracy!.clients)",
            ]
        }
        return
            "on each client's own held-out share (mean/p10/min over clients, averaged over seeds):\n"
            + TextTable.render(
                header: ["strategy", "scenario", "seeds", "global model", "personalized", "clients"], rows: rows)
    }

    /// The distinct values of `key` over `results`, in order of first appearance.
    static func distinct(_ results: [SimulationResult], _ key: (SimulationResult) -> String) -> [String] {
        var seen = Set<String>()
        return results.map(key).filter { seen.insert($0).inserted }
    }

    /// Student's t quantile 0.975 for `df` degrees of freedom.
    public static func tCritical95(_ df: Int) -> Double {
        let table: [Double] = [
            12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
            2.120, 2.110, 2.101, 2.093, 2.086,
        ]
        return df >= 1 && df <= table.count ? table[df - 1] : 1.96 + 2.4 / Double(max(df, 1))
    }

    /// Writes `summary.json` (``summaryJSON()``), `curve.csv` (``curveCSV``)
    /// and `curves.svg` (``svg``) into `folder`, creating it if needed; and
    /// `rounds.csv` (``roundsCSV``) when runs went through check-in.
    ///
    /// - Throws: the file system's error when the folder or a file cannot be written.
    public func write(to folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try summaryJSON().write(to: URL(fileURLWithPath: folder + "/summary.json"))
        try curveCSV.write(toFile: folder + "/curve.csv", atomically: true, encoding: .utf8)
        try svg.write(toFile: folder + "/curves.svg", atomically: true, encoding: .utf8)
        if results.contains(where: { $0.rounds != nil }) {
            try roundsCSV.write(toFile: folder + "/rounds.csv", atomically: true, encoding: .utf8)
        }
    }

    /// The runs' figures as pretty JSON with sorted keys: `centralized_accuracy`
    /// (the mean, or null), `centralized_accuracies`, and `runs`, one object
    /// per run with `strategy`, `scenario`, `seed`, `final_accuracy`,
    /// `virtual_seconds`, `bytes`, `pushes`, `rejected`, `versions` and
    /// `wall_seconds`, and for a run through check-in `rounds`: an object of
    /// `completed`, `abandoned`, `mean_seconds`, `p90_seconds`,
    /// `deadline_seconds`, `tasks`, `applied`, `late`, `dropped` and `samples_trained`;
    /// with differential privacy `privacy`: `epsilon`, `delta`, `rounds`, `clip`;
    /// `last_three_accuracy` and `spread` (``SimulationResult/spread``,
    /// points); with a client hold-out `client_accuracy`, and with
    /// personalization `personalized_accuracy`: each `mean`, `p10`, `min`, `clients`.
    ///
    /// - Throws: `JSONSerialization`'s error for a figure JSON cannot hold (NaN).
    public func summaryJSON() throws -> Data {
        let summary: [String: Any] = [
            "centralized_accuracy": centralized.isEmpty
                ? NSNull() : centralized.reduce(0, +) / Double(centralized.count),
            "centralized_accuracies": centralized,
            "runs": results.map { r -> [String: Any] in
                var run: [String: Any] = [
                    "strategy": r.strategy, "scenario": r.scenario, "seed": r.seed,
                    "final_accuracy": r.finalAccuracy, "virtual_seconds": r.virtualSeconds, "bytes": r.bytes,
                    "pushes": r.pushes, "rejected": r.rejected, "versions": r.versions,
                    "wall_seconds": r.wallSeconds,
                ]
                if let f = r.rounds {
                    run["rounds"] =
                        [
                            "completed": f.completed, "abandoned": f.abandoned, "mean_seconds": f.meanSeconds,
                            "p90_seconds": f.p90Seconds, "deadline_seconds": f.deadlineSeconds, "tasks": f.tasks,
                            "applied": f.applied, "late": f.late, "dropped": f.dropped,
                            "samples_trained": f.samplesTrained,
                        ] as [String: Any]
                }
                run["last_three_accuracy"] = r.lastThreeAccuracy
                run["spread"] = r.spread
                for (key, d) in [
                    ("client_accuracy", r.clientAccuracy), ("personalized_accuracy", r.personalizedAccuracy),
                ] {
                    if let d {
                        run[key] = ["mean": d.mean, "p10": d.p10, "min": d.min, "clients": d.clients] as [String: Any]
                    }
                }
                if let p = r.privacy {
                    run["privacy"] =
                        ["epsilon": p.epsilon, "delta": p.delta, "rounds": p.rounds, "clip": p.clip] as [String: Any]
                }
                return run
            },
        ]
        return try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
    }

    /// Every curve point of every run as RFC 4180 CSV: `strategy`, `scenario`,
    /// `seed`, `virtual_seconds`, `bytes`, `samples`, `accuracy`.
    public var curveCSV: String {
        CSV.document(
            header: ["strategy", "scenario", "seed", "virtual_seconds", "bytes", "samples", "accuracy"],
            rows: results.flatMap { r in
                r.curve.map { p -> [Any] in
                    [r.strategy, r.scenario, r.seed, p.virtualSeconds, p.bytes, p.samples, p.accuracy]
                }
            })
    }

    /// One row per run through check-in as RFC 4180 CSV: `strategy`,
    /// `scenario`, `seed`, `final_accuracy`, `rounds_completed`,
    /// `rounds_abandoned`, `mean_round_seconds`, `p90_round_seconds`,
    /// `deadline_seconds`, `tasks`, `reports_applied`, `reports_late`,
    /// `tasks_dropped`, `samples_trained`, `virtual_seconds`.
    public var roundsCSV: String {
        CSV.document(
            header: [
                "strategy", "scenario", "seed", "final_accuracy", "rounds_completed", "rounds_abandoned",
                "mean_round_seconds", "p90_round_seconds", "deadline_seconds", "tasks", "reports_applied",
                "reports_late", "tasks_dropped", "samples_trained", "virtual_seconds",
            ],
            rows: results.compactMap { r -> [Any]? in
                guard let f = r.rounds else { return nil }
                return [
                    r.strategy, r.scenario, r.seed, r.finalAccuracy, f.completed, f.abandoned, f.meanSeconds,
                    f.p90Seconds, f.deadlineSeconds, f.tasks, f.applied, f.late, f.dropped, f.samplesTrained,
                    r.virtualSeconds,
                ]
            })
    }

    /// An SVG chart: accuracy against virtual time (left) and against bytes
    /// (right), one line per strategy and scenario (its first seed), whose
    /// legend gives that run's client and personalized accuracy (mean/p10/min)
    /// when measured.
    public var svg: String {
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
            var label = "\(r.strategy) | \(r.scenario)"
            if let d = r.clientAccuracy { label += " | clients \(d.text)" }
            if let d = r.personalizedAccuracy { label += " | personalized \(d.text)" }
            out += "<text x=\"28\" y=\"\(y)\">\(label)</text>\n"
        }
        return out + "</svg>\n"
    }
}
