import Foundation

/// Measures this machine's peak multiply-add rate as the kernels see it: loops
/// of independent `fmadd`s on `Vec`, compiled with the same flags as the
/// kernels, with as many chains as the vector registers hold (`Registers`:
/// twelve vectors with 32 registers of 16 floats, six with 16 of 8 floats, so
/// no accumulator spills to memory and every multiply-add unit is busy). The
/// baseline that kernel GFLOP/s figures are compared with.
public enum PeakRate {
    /// GFLOP/s of one thread (2 flops per lane per multiply-add).
    public static func singleThreadGFLOPs(iterations: Int = 20_000_000) -> Double {
        gflops(threads: 1, iterations: iterations)
    }

    /// GFLOP/s of `threads` threads running the loop at the same time, summed.
    /// Each thread's rate is its flops over its own CPU time
    /// (`CLOCK_THREAD_CPUTIME_ID`), so time another process takes from the
    /// core while the loop runs does not count: on a shared machine this is
    /// still the rate the cores deliver when they run this process.
    public static func gflops(threads: Int, iterations: Int = 20_000_000) -> Double {
        let wide = Registers.wide
        let count = max(1, threads)
        let rates = UnsafeMutableBufferPointer<Double>.allocate(capacity: count)
        defer { rates.deallocate() }
        nonisolated(unsafe) let out = rates
        DispatchQueue.concurrentPerform(iterations: count) { part in
            let seed = Float((iterations + part) & 1)
            let start = threadCPUSeconds()
            blackHole(
                wide ? fmaLoop(iterations: iterations, seed: seed) : fmaLoop6(iterations: 2 * iterations, seed: seed))
            out[part] = Double(iterations) * 12 * 16 * 2 / max(threadCPUSeconds() - start, 1e-9) / 1e9
        }
        return rates.reduce(0, +)
    }

    /// CPU time of the calling thread, in seconds.
    static func threadCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// The median of `repetitions` measurements of `gflops(threads:)`: the
    /// fixed method of `fed bench train`.
    public static func medianGFLOPs(threads: Int, repetitions: Int = 5, iterations: Int = 20_000_000) -> Double {
        let runs = (0..<max(1, repetitions)).map { _ in gflops(threads: threads, iterations: iterations) }.sorted()
        return runs[runs.count / 2]
    }

    /// Twelve chains: 12 x 16 x 2 flops an iteration.
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

    /// Six chains (twelve registers of 8 floats): 6 x 16 x 2 flops an iteration.
    @inline(never)
    static func fmaLoop6(iterations: Int, seed: Float) -> Float {
        let x = Vec(repeating: 0.999_99 + seed), y = Vec(repeating: 1e-6)
        func start(_ i: Float) -> Vec { Vec(repeating: 1 + i * 0.001 + seed) }
        var a0 = start(0), a1 = start(1), a2 = start(2), a3 = start(3), a4 = start(4), a5 = start(5)
        for _ in 0..<iterations {
            a0 = fmadd(y, a0, x); a1 = fmadd(y, a1, x); a2 = fmadd(y, a2, x)
            a3 = fmadd(y, a3, x); a4 = fmadd(y, a4, x); a5 = fmadd(y, a5, x)
        }
        return ((a0 + a1 + a2) + (a3 + a4 + a5)).sum()
    }

    @inline(never)
    static func blackHole(_ x: Float) {
        if x == 42.4242 { print("") }
    }
}

/// The machine's name and processor count, as `lscpu` gives them: the CPU
/// model named in /proc/cpuinfo (Linux), or "unknown CPU".
public enum MachineName {
    public static var description: String {
        var model = "unknown CPU"
        #if os(Linux)
            if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
                let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
                let colon = line.firstIndex(of: ":")
            {
                model = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        #endif
        let cores = ProcessInfo.processInfo.activeProcessorCount
        return "\(model), \(cores) \(cores == 1 ? "core" : "cores")"
    }
}
