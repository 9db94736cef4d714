import FedModel
import Foundation

/// How the training images are split among the simulated clients.
///
/// Written as text the way `fed simulate --partition` takes it: `iid`,
/// `dirichlet:ALPHA`, `shards:K` or `file:PATH`. Every client gets at least
/// one image: a client left empty by a skewed draw takes one from the largest
/// share.
public enum Partition: Equatable, Sendable, CustomStringConvertible {
    /// Shuffled, equal shares.
    case iid
    /// Label skew: each class's images are spread over clients by Dirichlet(alpha) proportions.
    case dirichlet(Double)
    /// The images sorted by label, cut into `k` shards per client, each client taking k random shards.
    case shards(Int)
    /// One JSON list of image indices per client, as written by another tool.
    case file(String)

    /// Parses `iid`, `dirichlet:ALPHA` (ALPHA > 0), `shards:K` (K >= 1) or
    /// `file:PATH`; nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        switch parts[0] {
        case "iid" where parts.count == 1: self = .iid
        case "dirichlet":
            guard parts.count == 2, let a = Double(parts[1]), a > 0 else { return nil }
            self = .dirichlet(a)
        case "shards":
            guard parts.count == 2, let k = Int(parts[1]), k >= 1 else { return nil }
            self = .shards(k)
        case "file":
            guard parts.count == 2 else { return nil }
            self = .file(parts[1])
        default: return nil
        }
    }

    /// The text ``init(_:)`` parses back into this partition.
    public var description: String {
        switch self {
        case .iid: "iid"
        case .dirichlet(let a): "dirichlet:\(a)"
        case .shards(let k): "shards:\(k)"
        case .file(let p): "file:\(p)"
        }
    }

    /// Image indices per client; every client gets at least one image.
    ///
    /// - Throws: ``SimulationError`` when a `file:` partition cannot be read,
    ///   holds another number of clients, or names an image that is not there.
    func split(labels: [UInt8], clients: Int, rng: inout SeededGenerator) throws -> [[Int]] {
        let n = labels.count
        var out: [[Int]]
        switch self {
        case .iid:
            var order = Array(0..<n)
            rng.shuffle(&order)
            out = (0..<clients).map { c in Array(order[(c * n / clients)..<((c + 1) * n / clients)]) }
        case .dirichlet(let alpha):
            out = Array(repeating: [], count: clients)
            for label in 0..<10 {
                var members = (0..<n).filter { labels[$0] == UInt8(label) }
                rng.shuffle(&members)
                let p = (0..<clients).map { _ in Self.gamma(alpha, &rng) }
                let total = p.reduce(0, +)
                var start = 0
                var cumulative = 0.0
                for c in 0..<clients {
                    cumulative += p[c] / total
                    let end =
                        c == clients - 1 ? members.count : min(members.count, Int(cumulative * Double(members.count)))
                    if end > start { out[c] += members[start..<end] }
                    start = max(start, end)
                }
            }
        case .shards(let k):
            let order = (0..<n).sorted { (labels[$0], $0) < (labels[$1], $1) }
            let count = clients * k
            var shardIDs = Array(0..<count)
            rng.shuffle(&shardIDs)
            out = (0..<clients).map { c in
                shardIDs[(c * k)..<((c + 1) * k)].flatMap { s in order[(s * n / count)..<((s + 1) * n / count)] }
            }
        case .file(let path):
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let lists = try JSONSerialization.jsonObject(with: data) as? [[Int]] else {
                throw SimulationError("\(path) is not a JSON list of lists of image indices")
            }
            guard lists.count == clients else {
                throw SimulationError("\(path) holds \(lists.count) clients; clients is \(clients)")
            }
            for list in lists where list.contains(where: { $0 < 0 || $0 >= n }) {
                throw SimulationError("\(path) names an image index outside 0..<\(n)")
            }
            out = lists
        }
        // A client left empty by a skewed draw takes one image from the largest.
        for c in out.indices where out[c].isEmpty {
            let largest = out.indices.max { out[$0].count < out[$1].count }!
            out[c].append(out[largest].removeLast())
        }
        return out
    }

    /// A Gamma(alpha, 1) draw (Marsaglia-Tsang; alpha < 1 by the boost u^(1/alpha)).
    static func gamma(_ alpha: Double, _ rng: inout SeededGenerator) -> Double {
        if alpha < 1 { return gamma(alpha + 1, &rng) * pow(uniform(&rng), 1 / alpha) }
        let d = alpha - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat {
                x = normal(&rng)
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = uniform(&rng)
            if u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)) { return d * v }
        }
    }

    static func uniform(_ rng: inout SeededGenerator) -> Double {
        (Double(rng.next() >> 11) + 0.5) / 9_007_199_254_740_992
    }
    static func normal(_ rng: inout SeededGenerator) -> Double {
        (-2 * log(uniform(&rng))).squareRoot() * cos(2 * .pi * uniform(&rng))
    }
}
