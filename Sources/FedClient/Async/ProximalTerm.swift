extension TrainingTask {
    /// The round parameter by which a server announces FedProx's proximal
    /// coefficient (`fed server --strategy fedprox/mu=0.01`).
    public static let proximalMuKey = "prox.mu"

    /// FedProx's mu for this task: the trainer adds `mu/2 ||w - weights||^2`
    /// to its loss, `weights` being this task's (the base). Nil when the
    /// server announced none, or a value that is not a finite number >= 0.
    public var proximalMu: Double? {
        guard let text = parameters[Self.proximalMuKey], let mu = Double(text), mu.isFinite, mu >= 0 else {
            return nil
        }
        return mu
    }
}
