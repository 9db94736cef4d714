import FedCodec

/// The server's step with a combined delta `d` (a pseudo-gradient pointing
/// where the clients moved), as in Reddi et al. 2021 ("Adaptive Federated
/// Optimization") and Flower's FedAvgM/FedAdam/FedYogi/FedAdagrad, without
/// bias correction. Moments live in `FederationState.tensors` ("m", "v").
public enum ServerOptimizer: Sendable, Equatable, CustomStringConvertible {
    /// `W += eta * d` (eta 1: FedAvg).
    case sgd(learningRate: Double)
    /// `m = beta * m + d; W += eta * m` (FedAvgM).
    case momentum(learningRate: Double, beta: Double)
    /// `m = b1 m + (1-b1) d; v = b2 v + (1-b2) d^2; W += eta m / (sqrt(v) + tau)`.
    case adam(learningRate: Double, beta1: Double, beta2: Double, tau: Double)
    /// As Adam with `v = v - (1-b2) d^2 sign(v - d^2)`.
    case yogi(learningRate: Double, beta1: Double, beta2: Double, tau: Double)
    /// As Adam with `v = v + d^2`.
    case adagrad(learningRate: Double, beta1: Double, tau: Double)

    /// Flower's defaults: FedAdam eta 0.1, beta1 0.9, beta2 0.99, tau 1e-3.
    public static let adamDefault = ServerOptimizer.adam(learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3)
    /// FedYogi eta 0.01 (Flower's default), beta1 0.9, beta2 0.99, tau 1e-3.
    public static let yogiDefault = ServerOptimizer.yogi(learningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3)
    /// FedAdagrad eta 0.1, beta1 0 (Flower's), tau 1e-3.
    public static let adagradDefault = ServerOptimizer.adagrad(learningRate: 0.1, beta1: 0, tau: 1e-3)

    public var description: String {
        switch self {
        case .sgd(let lr): "sgd:\(lr)"
        case .momentum(let lr, let b): "momentum:\(lr):\(b)"
        case .adam(let lr, let b1, let b2, let t): "adam:\(lr):\(b1):\(b2):\(t)"
        case .yogi(let lr, let b1, let b2, let t): "yogi:\(lr):\(b1):\(b2):\(t)"
        case .adagrad(let lr, let b1, let t): "adagrad:\(lr):\(b1):\(t)"
        }
    }

    func step(_ state: inout FederationState, delta d: [Tensor]) {
        switch self {
        case .sgd(let lr):
            let eta = Float(lr)
            for t in state.weights.indices {
                for i in state.weights[t].values.indices { state.weights[t].values[i] += eta * d[t].values[i] }
            }
        case .momentum(let lr, let beta):
            var m = state.tensors["m"] ?? d.map { Tensor(zeros: $0.shape) }
            let (eta, b) = (Float(lr), Float(beta))
            for t in state.weights.indices {
                for i in state.weights[t].values.indices {
                    m[t].values[i] = b * m[t].values[i] + d[t].values[i]
                    state.weights[t].values[i] += eta * m[t].values[i]
                }
            }
            state.tensors["m"] = m
        case .adam(let lr, let b1, let b2, let tau), .yogi(let lr, let b1, let b2, let tau):
            adaptive(&state, d, lr: lr, b1: b1, tau: tau) { v, g2 in
                if case .yogi = self {
                    let s: Float = v - g2 > 0 ? 1 : (v - g2 < 0 ? -1 : 0)
                    return v - (1 - Float(b2)) * g2 * s
                }
                return Float(b2) * v + (1 - Float(b2)) * g2
            }
        case .adagrad(let lr, let b1, let tau):
            adaptive(&state, d, lr: lr, b1: b1, tau: tau) { v, g2 in v + g2 }
        }
    }

    private func adaptive(
        _ state: inout FederationState, _ d: [Tensor], lr: Double, b1: Double, tau: Double,
        second: (Float, Float) -> Float
    ) {
        var m = state.tensors["m"] ?? d.map { Tensor(zeros: $0.shape) }
        var v = state.tensors["v"] ?? d.map { Tensor(zeros: $0.shape) }
        let (eta, beta1, t0) = (Float(lr), Float(b1), Float(tau))
        for t in state.weights.indices {
            for i in state.weights[t].values.indices {
                let g = d[t].values[i]
                m[t].values[i] = beta1 * m[t].values[i] + (1 - beta1) * g
                v[t].values[i] = second(v[t].values[i], g * g)
                state.weights[t].values[i] += eta * m[t].values[i] / (v[t].values[i].squareRoot() + t0)
            }
        }
        state.tensors["m"] = m
        state.tensors["v"] = v
    }
}
