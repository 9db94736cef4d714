import Testing

@testable import FedModel

/// Naive triple loops in Double: the reference every kernel is checked against.
enum Naive {
    static func nn(_ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ b: [Float]) -> [Float] {
        (0..<m * n).map { idx in
            let (i, j) = (idx / n, idx % n)
            return Float((0..<k).reduce(0.0) { $0 + Double(a[i * k + $1]) * Double(b[$1 * n + j]) })
        }
    }

    /// A[m x k]^T * B[m x n] -> [k x n]
    static func tn(_ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ b: [Float]) -> [Float] {
        (0..<k * n).map { idx in
            let (i, j) = (idx / n, idx % n)
            return Float((0..<m).reduce(0.0) { $0 + Double(a[$1 * k + i]) * Double(b[$1 * n + j]) })
        }
    }

    /// A[m x n] * B[k x n]^T -> [m x k]
    static func nt(_ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ b: [Float]) -> [Float] {
        (0..<m * k).map { idx in
            let (i, j) = (idx / k, idx % k)
            return Float((0..<n).reduce(0.0) { $0 + Double(a[i * n + $1]) * Double(b[j * n + $1]) })
        }
    }
}

func randomMatrix(_ count: Int, _ rng: inout SeededGenerator) -> [Float] {
    (0..<count).map { _ in rng.uniform(1) }
}

func expectClose(_ got: [Float], _ want: [Float], depth: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(got.count == want.count, sourceLocation: sourceLocation)
    // Float32 accumulation error grows with the depth of the sum.
    let tolerance = Float(depth) * 1e-6 + 1e-5
    var worst: Float = 0
    for (g, w) in zip(got, want) { worst = max(worst, abs(g - w)) }
    #expect(worst <= tolerance, "max error \(worst) > \(tolerance)", sourceLocation: sourceLocation)
}

/// (m, k, n): odd shapes, and the MLP's own.
let shapes: [(Int, Int, Int)] = [
    (1, 1, 1), (3, 5, 7), (33, 785, 201), (4, 3, 64), (5, 17, 65), (32, 784, 208), (32, 208, 16), (7, 0, 16),
    (8, 9, 112), (9, 11, 40), (5, 40, 24), (6, 17, 1),
]

@Suite("GEMM kernels")
struct GEMMTests {
    @Test("A*B matches the naive product", arguments: shapes, [1, 2])
    func nn(shape: (Int, Int, Int), threads: Int) {
        let (m, k, n) = shape
        var rng = SeededGenerator(seed: UInt64(m * 1000 + k * 10 + n))
        let a = randomMatrix(m * k, &rng), b = randomMatrix(k * n, &rng)
        var c = [Float](repeating: .nan, count: m * n)
        GEMM.nn(m: m, n: n, k: k, a: a, b: b, c: &c, threads: threads)
        expectClose(c, Naive.nn(m, n, k, a, b), depth: k)
        // accumulate adds to what is there
        let bias = randomMatrix(m * n, &rng)
        var c2 = bias
        GEMM.nn(m: m, n: n, k: k, a: a, b: b, c: &c2, accumulate: true, threads: threads)
        expectClose(c2, zip(Naive.nn(m, n, k, a, b), bias).map { $0 + $1 }, depth: k)
    }

    @Test("A^T*B matches the naive product", arguments: shapes, [1, 2])
    func tn(shape: (Int, Int, Int), threads: Int) {
        let (m, k, n) = shape
        var rng = SeededGenerator(seed: UInt64(m * 1000 + k * 10 + n + 1))
        let a = randomMatrix(m * k, &rng), b = randomMatrix(m * n, &rng)
        var c = [Float](repeating: .nan, count: k * n)
        GEMM.tn(m: m, n: n, k: k, a: a, b: b, c: &c, threads: threads)
        expectClose(c, Naive.tn(m, n, k, a, b), depth: m)
    }

    @Test("A*B^T matches the naive product", arguments: shapes, [1, 2])
    func nt(shape: (Int, Int, Int), threads: Int) {
        let (m, k, n) = shape
        var rng = SeededGenerator(seed: UInt64(m * 1000 + k * 10 + n + 2))
        let a = randomMatrix(m * n, &rng), b = randomMatrix(k * n, &rng)
        var c = [Float](repeating: .nan, count: m * k)
        GEMM.nt(m: m, n: n, k: k, a: a, b: b, c: &c, threads: threads)
        expectClose(c, Naive.nt(m, n, k, a, b), depth: n)
    }

    @Test("A*B^T with the ReLU's derivative as a mask matches the naive product, masked", arguments: shapes, [1, 2, 3])
    func ntMasked(shape: (Int, Int, Int), threads: Int) {
        let (m, k, n) = shape
        var rng = SeededGenerator(seed: UInt64(m * 1000 + k * 10 + n + 3))
        let a = randomMatrix(m * n, &rng), b = randomMatrix(k * n, &rng), mask = randomMatrix(m * k, &rng)
        var c = [Float](repeating: .nan, count: m * k)
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                mask.withUnsafeBufferPointer { mask in
                    c.withUnsafeMutableBufferPointer { c in
                        GEMM.nt(
                            m: m, n: n, k: k, a: a.baseAddress!, b: b.baseAddress!, c: c.baseAddress!, threads: threads,
                            mask: mask.baseAddress!)
                    }
                }
            }
        }
        let want = zip(Naive.nt(m, n, k, a, b), mask).map { $1 > 0 ? $0 : 0 }
        expectClose(c, want, depth: n)
        #expect(zip(c, mask).allSatisfy { $1 > 0 || $0 == 0 }, "masked entries are exactly zero")
    }

    @Test(
        "A forward product split into column strips and bands of rows gives the same bits for any thread count",
        arguments: [(32, 784, 208), (32, 208, 208), (17, 1001, 80), (45, 300, 272), (8, 2000, 208)])
    func bandsAgree(shape: (Int, Int, Int)) {
        let (m, k, n) = shape  // fewer rows than columns: the strips-and-bands split
        var rng = SeededGenerator(seed: UInt64(m + k + n))
        let a = randomMatrix(m * k, &rng), b = randomMatrix(k * n, &rng), bias = randomMatrix(m * n, &rng)
        func bits(_ threads: Int) -> [UInt32] {
            var c = bias
            GEMM.nn(m: m, n: n, k: k, a: a, b: b, c: &c, accumulate: true, threads: threads)
            return c.map(\.bitPattern)
        }
        let one = bits(1)
        for threads in [2, 3, 4] { #expect(bits(threads) == one, "threads \(threads)") }
        expectClose(one.map(Float.init(bitPattern:)), zip(Naive.nn(m, n, k, a, b), bias).map { $0 + $1 }, depth: k)
    }

    @Test(
        "The 4x64 and 6x16 tiles give bit-identical products, stored or handed over tile by tile",
        arguments: [(32, 784, 208), (33, 785, 201), (256, 130, 48), (5, 17, 65)])
    func tileShapesAgree(shape: (Int, Int, Int)) {
        let (m, k, n) = shape
        var rng = SeededGenerator(seed: 11)
        let a = randomMatrix(m * k, &rng), b = randomMatrix(k * n, &rng), bt = randomMatrix(m * n, &rng)
        // nn: A (m x k) * B (k x n); tn: A^T (k x m) * B' (m x n).
        func bits(wide: Bool, threads: Int) -> [[UInt32]] {
            var nn = [Float](repeating: .nan, count: m * n)
            var tn = [Float](repeating: .nan, count: k * n)
            var handed = [Float](repeating: .nan, count: k * n)
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    bt.withUnsafeBufferPointer { bt in
                        nn.withUnsafeMutableBufferPointer { c in
                            GEMM.product(
                                rows: m, n: n, depth: k, a: a.baseAddress!, aRowStride: k, aDepthStride: 1,
                                b: b.baseAddress!, c: c.baseAddress!, accumulate: false, threads: threads, wide: wide)
                        }
                        tn.withUnsafeMutableBufferPointer { c in
                            GEMM.product(
                                rows: k, n: n, depth: m, a: a.baseAddress!, aRowStride: 1, aDepthStride: k,
                                b: bt.baseAddress!, c: c.baseAddress!, accumulate: false, threads: threads, wide: wide)
                        }
                        handed.withUnsafeMutableBufferPointer { out in
                            nonisolated(unsafe) let target = out.baseAddress!
                            GEMM.product(
                                rows: k, n: n, depth: m, a: a.baseAddress!, aRowStride: 1, aDepthStride: k,
                                b: bt.baseAddress!, c: target, accumulate: false, threads: threads,
                                rowsDone: { r0, r1, rows in (target + r0 * n).update(from: rows, count: (r1 - r0) * n)
                                },
                                wide: wide)
                        }
                    }
                }
            }
            return [nn, tn, handed].map { $0.map(\.bitPattern) }
        }
        let narrow = bits(wide: false, threads: 1)
        #expect(narrow[2] == narrow[1])
        #expect(bits(wide: true, threads: 1) == narrow)
        #expect(bits(wide: true, threads: 2) == narrow)
        #expect(bits(wide: false, threads: 2) == narrow)
        expectClose(narrow[0].map(Float.init(bitPattern:)), Naive.nn(m, n, k, a, b), depth: k)
    }

    @Test(
        "One, two and three threads give bit-identical results",
        arguments: [(256, 784, 208), (32, 784, 208), (64, 300, 176), (100, 208, 200)])
    func threadsAgree(shape: (Int, Int, Int)) {
        var rng = SeededGenerator(seed: 9)
        let (m, k, n) = shape  // all above the threshold where helpers take part
        let a = randomMatrix(max(m * k, m * n), &rng), b = randomMatrix(max(k * n, m * n), &rng)
        func bits(_ threads: Int) -> [[UInt32]] {
            var nn = [Float](repeating: 0, count: m * n)
            var tn = [Float](repeating: 0, count: k * n)
            var nt = [Float](repeating: 0, count: m * k)
            GEMM.nn(m: m, n: n, k: k, a: a, b: b, c: &nn, threads: threads)
            GEMM.tn(m: m, n: n, k: k, a: a, b: b, c: &tn, threads: threads)
            GEMM.nt(m: m, n: n, k: k, a: a, b: b, c: &nt, threads: threads)
            return [nn, tn, nt].map { $0.map(\.bitPattern) }
        }
        let one = bits(1)
        #expect(bits(2) == one)
        #expect(bits(3) == one)
    }
}
