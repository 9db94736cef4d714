/// The consistency check's configuration (`--secagg consistency=on` with
/// `--secagg-identities FILE`; `Protocol/SPEC.md` section 12.11).
extension SecureAggregation {
    /// Whether client `name` can be selected for a secure round: any client
    /// without the check; with it, only one whose public key is trusted.
    public func admits(_ name: String) -> Bool { !consistency || identities?.contains(name) == true }

    /// Why the consistency check cannot run with cohorts of at most `n`, or nil.
    func consistencyProblem(cohort n: Int) -> String? {
        guard consistency else { return nil }
        guard let identities, !identities.keys.isEmpty else {
            return
                "consistency=on needs the clients' identities: give the file of their Ed25519 public keys (fed server --secagg-identities FILE; fed secagg-identities makes one)"
        }
        if identities.keys.count < 3 {
            return "consistency=on: \(identities.keys.count) trusted clients, fewer than a cohort's 3"
        }
        let t = threshold(cohort: n)
        if 2 * t <= n {
            return
                "consistency=on needs 2t > n, or a server could gather t signatures on two different survivor sets (t = \(t), n = \(n))"
        }
        return nil
    }
}
