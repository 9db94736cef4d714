import Foundation

/// Adam, as Keras implements it (keras.optimizers.Adam, Keras 3).
///
/// For step `t` (from 1), gradient `g`, moments `m`, `v` (from 0):
/// ```
/// alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
/// m    += (g - m) * (1 - beta1)
/// v    += (g*g - v) * (1 - beta2)
/// w    -= alpha * m / (sqrt(v) + epsilon)
/// ```
/// Epsilon is added to the uncorrected `sqrt(v)` (Keras's form, not the
/// paper's). Defaults are Keras's: lr 0.001, beta1 0.9, beta2 0.999, epsilon 1e-7.
///
/// With ``plainSGD`` the step is plain SGD instead, `w -= lr * g`, and the
/// moments stay untouched: SCAFFOLD's local optimizer in the paper.
public struct Adam: Sendable {
    public var learningRate: Float
    /// Plain SGD (`w -= learningRate * g`) instead of Adam; false: Adam.
    public var plainSGD = false
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Steps taken so far.
    public private(set) var step = 0
    var m: [AlignedFloats]
    var v: [AlignedFloats]

    public init(
        shapes counts: [Int], learningRate: Float = 0.001, beta1: Float = 0.9, beta2: Float = 0.999,
        epsilon: Float = 1e-7
    ) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        m = counts.map { AlignedFloats(repeating: 0, count: $0) }
        v = counts.map { AlignedFloats(repeating: 0, count: $0) }
    }

    /// Forgets the moments and the step count (after adopting new weights).
    public mutating func reset() {
        step = 0
        for i in m.indices {
            m[i].setAll(to: 0)
            v[i].setAll(to: 0)
        }
    }

    /// Applies one step to every parameter array, with its gradient. Arrays of
    /// `parallelThreshold` elements or more are split into ranges for up to
    /// `threads` threads (`WorkerPool`); each element's update is the same
    /// whichever thread makes it, so the result does not depend on `threads`.
    /// Invariant: `parameters[i].count == gradients[i].count`, a multiple of 16.
    public mutating func update(_ parameters: inout [AlignedFloats], gradients: [AlignedFloats], threads: Int = 1) {
        let constants = beginStep()
        for i in parameters.indices {
            let n = parameters[i].count
            precondition(n % 16 == 0 && gradients[i].count == n)
            parameters[i].withUnsafeMutableBufferPointer { w in
                m[i].withUnsafeMutableBufferPointer { mb in
                    v[i].withUnsafeMutableBufferPointer { vb in
                        gradients[i].withUnsafeBufferPointer { gb in
                            let arrays = Arrays(
                                w: w.baseAddress!, m: mb.baseAddress!, v: vb.baseAddress!, g: gb.baseAddress!)
                            let parts = n >= Self.parallelThreshold ? max(1, min(threads, 8)) : 1
                            if parts == 1 {
                                Self.kernel(arrays, 0..<n, constants)
                                return
                            }
                            let vectors = n / 16
                            WorkerPool.shared.run(parts: parts) { part in
                                let range = (part * vectors / parts * 16)..<((part + 1) * vectors / parts * 16)
                                Self.kernel(arrays, range, constants)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Counts a step and returns its constants (the bias corrections of step
    /// `step`, hoisted out of the per-weight loop), for `kernel`.
    mutating func beginStep() -> Constants {
        step += 1
        if plainSGD { return Constants(alpha: learningRate, epsilon: epsilon, k1: 0, k2: 0, sgd: true) }
        let t = Float(step)
        return Constants(
            alpha: learningRate * (1 - powf(beta2, t)).squareRoot() / (1 - powf(beta1, t)), epsilon: epsilon,
            k1: 1 - beta1, k2: 1 - beta2)
    }

    /// Calls `body` with parameter array `i`'s first and second moments, to change in place.
    mutating func withMoments<R>(
        _ i: Int, _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> R
    ) -> R {
        m[i].withUnsafeMutableBufferPointer { mb in
            v[i].withUnsafeMutableBufferPointer { vb in body(mb.baseAddress!, vb.baseAddress!) }
        }
    }

    /// Arrays this size or larger are updated by several threads.
    static let parallelThreshold = 16_384

    struct Constants {
        /// Adam's bias-corrected rate; with ``sgd``, the learning rate.
        var alpha: Float, epsilon: Float, k1: Float, k2: Float
        /// Plain SGD: `w -= alpha * g`, the moments untouched (``Adam/plainSGD``).
        var sgd = false
        /// The proximal coefficient (FedProx's mu); used where ``Arrays/base`` is set.
        var mu: Float = 0
        /// The learning rate that scales ``Arrays/correction`` (SCAFFOLD's drift correction).
        var correctionRate: Float = 0
    }

    /// Pointers to one parameter array, its moments and its gradient; the
    /// caller keeps them valid until every range is done.
    /// Sendable by argument: the pointers cross to WorkerPool helpers, which
    /// each write a disjoint range, and `WorkerPool.run` returns only after
    /// every range is done, so no two threads touch one element.
    struct Arrays: @unchecked Sendable {
        var w: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
        var g: UnsafePointer<Float>
        /// The weights training started from (FedProx): the gradient gains `mu (w - base)`.
        var base: UnsafePointer<Float>? = nil
        /// `c - c_i` (SCAFFOLD): the step gains `correctionRate * correction`.
        var correction: UnsafePointer<Float>? = nil

        /// The same arrays from element `offset` on.
        func advanced(by offset: Int, gradient: UnsafePointer<Float>) -> Arrays {
            Arrays(
                w: w + offset, m: m + offset, v: v + offset, g: gradient, base: base.map { $0 + offset },
                correction: correction.map { $0 + offset })
        }
    }

    /// One Adam step on the elements in `range` (bounds multiples of 16).
    ///
    /// With `p.base` (FedProx) the gradient is `g + mu (w - base)`; with
    /// `p.correction` (SCAFFOLD) the step is Adam's plus
    /// `correctionRate * correction`, where `correction = c - c_i`: the drift
    /// correction joins the optimizer's step direction, which for plain SGD
    /// is the gradient (`g - c_i + c`). Padded elements stay zero: their
    /// `w`, `base`, `g` and `correction` are zero. With `c.sgd` the step is
    /// plain SGD's, `w -= alpha * g` (proximal term and correction included).
    @inline(__always)
    static func kernel(_ p: Arrays, _ range: Range<Int>, _ c: Constants) {
        if c.sgd {
            sgd(p, range, c)
            return
        }
        if p.base != nil || p.correction != nil {
            corrected(p, range, c)
            return
        }
        let a = Vec(repeating: c.alpha), e = Vec(repeating: c.epsilon)
        let k1 = Vec(repeating: c.k1), k2 = Vec(repeating: c.k2)
        var j = range.lowerBound
        while j < range.upperBound {
            let g = load(p.g + j)
            var mj = load(p.m + j)
            var vj = load(p.v + j)
            mj += (g - mj) * k1
            vj += (g * g - vj) * k2
            let wj = load(p.w + j) - a * mj / (vectorSquareRoot(vj) + e)
            store(mj, p.m + j)
            store(vj, p.v + j)
            store(wj, p.w + j)
            j += 16
        }
    }

    /// Plain SGD on the elements in `range`: `w -= alpha * (g + mu (w - base))`,
    /// then `w -= correctionRate * correction`: with `correctionRate == alpha`
    /// the paper's SCAFFOLD step on `g - c_i + c`. The moments are untouched.
    static func sgd(_ p: Arrays, _ range: Range<Int>, _ c: Constants) {
        let a = Vec(repeating: c.alpha)
        let mu = Vec(repeating: c.mu), rate = Vec(repeating: c.correctionRate)
        var j = range.lowerBound
        while j < range.upperBound {
            let w = load(p.w + j)
            var g = load(p.g + j)
            if let base = p.base { g += mu * (w - load(base + j)) }
            var wj = w - a * g
            if let correction = p.correction { wj -= rate * load(correction + j) }
            store(wj, p.w + j)
            j += 16
        }
    }

    /// ``kernel(_:_:_:)`` with the proximal term and the drift correction.
    static func corrected(_ p: Arrays, _ range: Range<Int>, _ c: Constants) {
        let a = Vec(repeating: c.alpha), e = Vec(repeating: c.epsilon)
        let k1 = Vec(repeating: c.k1), k2 = Vec(repeating: c.k2)
        let mu = Vec(repeating: c.mu), rate = Vec(repeating: c.correctionRate)
        var j = range.lowerBound
        while j < range.upperBound {
            let w = load(p.w + j)
            var g = load(p.g + j)
            if let base = p.base { g += mu * (w - load(base + j)) }
            var mj = load(p.m + j)
            var vj = load(p.v + j)
            mj += (g - mj) * k1
            vj += (g * g - vj) * k2
            var wj = w - a * mj / (vectorSquareRoot(vj) + e)
            if let correction = p.correction { wj -= rate * load(correction + j) }
            store(mj, p.m + j)
            store(vj, p.v + j)
            store(wj, p.w + j)
            j += 16
        }
    }
}

/// Square roots of 16 non-negative floats, in vector instructions.
///
/// `SIMD16<Float>.squareRoot()` compiles to sixteen calls of libm's `sqrtf`
/// on Linux (errno semantics), which made Adam the slowest phase of training.
/// This computes `v * rsqrt(v)` with the classic bit-level estimate of
/// `rsqrt` refined by three Newton steps: within 2 ulp of the true root for
/// normal inputs, and exactly 0 for 0 (what Adam's second moment holds).
@inline(__always)
func vectorSquareRoot(_ v: Vec) -> Vec {
    let bits = SIMD16<UInt32>(truncatingIfNeeded: unsafeBitCast(v, to: SIMD16<Int32>.self))
    var y = unsafeBitCast(SIMD16<UInt32>(repeating: 0x5F37_5A86) &- (bits &>> 1), to: Vec.self)
    let half = v * 0.5
    y = y * (1.5 - half * y * y)
    y = y * (1.5 - half * y * y)
    y = y * (1.5 - half * y * y)
    return v * y
}
