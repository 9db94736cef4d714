import FedCodec

/// What local training adds to the loss and the step, for federated
/// algorithms that correct client drift.
///
/// - FedProx (Li et al. 2020): the loss gains `mu/2 ||w - base||^2`, so
///   every gradient gains `mu (w - base)`, `base` being the weights the
///   task started from.
/// - SCAFFOLD (Karimireddy et al. 2020): every step gains
///   `rate * (c - c_i)`, the server's control variate minus the client's
///   (`rate` is the local learning rate). With plain SGD that is the paper's
///   step on `g - c_i + c`; with Adam the correction joins Adam's step
///   direction, the quantity option II's `(x - y_i) / (K lr)` measures.
///
/// Tensors are in the model's order and shapes (`MLP.tensors()`);
/// `Trainer.setObjective(_:)` refuses other shapes.
public struct LocalObjective: Sendable {
    /// The proximal coefficient, at least 0 (0: no proximal term).
    public var mu: Float
    /// The weights training started from; needed when `mu > 0`.
    public var base: [Tensor]?
    /// `c - c_i`, the drift correction; nil: none.
    public var correction: [Tensor]?

    /// An objective of these parts.
    public init(mu: Float = 0, base: [Tensor]? = nil, correction: [Tensor]? = nil) {
        self.mu = mu
        self.base = base
        self.correction = correction
    }

    /// FedProx's objective around `base`.
    public static func proximal(mu: Float, base: [Tensor]) -> LocalObjective {
        LocalObjective(mu: mu, base: base)
    }
}
