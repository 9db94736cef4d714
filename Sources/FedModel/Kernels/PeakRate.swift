/// Measures this machine's peak multiply-add rate as the kernels see it: a
/// loop of independent `fmadd`s on `Vec`, compiled with the same flags as the
/// kernels. The baseline that kernel GFLOP/s figures are compared with.
public enum PeakRate {
    /// GFLOP/s of one thread (2 flops per lane per multiply-add).
    public static func singleThreadGFLOPs(iterations: Int = 20_000_000) -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        let sink = fmaLoop(iterations: iterations, seed: Float(iterations & 1))
        let elapsed = seconds(clock.now - start)
        blackHole(sink)
        return Double(iterations) * 12 * 16 * 2 / elapsed / 1e9
    }

    @inline(never)
    static func fmaLoop(iterations: Int, seed: Float) -> Float {
        let x = Vec(repeating: 0.999_99 + seed), y = Vec(repeating: 1e-6)
        // Distinct starting values, so the compiler cannot merge the twelve chains into one.
        func start(_ i: Float) -> Vec { Vec(repeating: 1 + i * 0.001 + seed) }
        var a0 = start(0), a1 = start(1), a2 = start(2), a3 = start(3), a4 = start(4), a5 = start(5)
        var a6 = start(6), a7 = start(7), a8 = start(8), a9 = start(9), a10 = start(10), a11 = start(11)
        for _ in 0..<iterations {
            a0 = fmadd(y, a0, x); a1 = fmadd(y, a1, x); a2 = fmadd(y, a2, x); a3 = fmadd(y, a3, x)
            a4 = fmadd(y, a4, x); a5 = fmadd(y, a5, x); a6 = fmadd(y, a6, x); a7 = fmadd(y, a7, x)
            a8 = fmadd(y, a8, x); a9 = fmadd(y, a9, x); a10 = fmadd(y, a10, x); a11 = fmadd(y, a11, x)
        }
        let s = (a0 + a1 + a2 + a3) + (a4 + a5 + a6 + a7) + (a8 + a9 + a10 + a11)
        return s.sum()
    }

    @inline(never)
    static func blackHole(_ x: Float) {
        if x == 42.4242 { print("") }
    }
}
