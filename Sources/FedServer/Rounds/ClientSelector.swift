import FedCodec

/// A client checked in and waiting for a task, as a selector sees it.
public struct Candidate: Sendable {
    public var clientID: String
    /// What the client said of itself at check-in.
    public var properties: [String: String]
    public var abilities: CheckIn.Abilities
}

/// Chooses a round's cohort among the clients checked in: the extension
/// point for sampling (uniform by default; a privacy accountant needs
/// Poisson sampling, a deployment may target clients by their properties).
public protocol ClientSelector: Sendable {
    /// The indices into `candidates` of at most `count` distinct clients.
    /// Candidates are distinct client ids, in check-in order.
    func select(from candidates: [Candidate], count: Int, using random: inout any RandomNumberGenerator) -> [Int]
}

/// Every candidate equally likely; optionally only those whose properties
/// include `required` (`region = eu`).
public struct UniformSelector: ClientSelector {
    public var required: [String: String]

    public init(required: [String: String] = [:]) { self.required = required }

    public func select(from candidates: [Candidate], count: Int, using random: inout any RandomNumberGenerator)
        -> [Int]
    {
        var eligible = candidates.indices.filter { i in
            required.allSatisfy { candidates[i].properties[$0.key] == $0.value }
        }
        eligible.shuffle(using: &random)
        return Array(eligible.prefix(max(0, count)))
    }
}
