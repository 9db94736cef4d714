/// Single-precision matrix products on row-major matrices, in pure Swift.
///
/// Any shapes work; the fast paths want the dimension the vectors run along
/// (`n`: columns of `C` for `nn` and `tn`, the shared dimension for `nt`) to
/// be a multiple of 16, so `MLP` pads its layers with zeros; other widths take
/// scalar tails. Row strides equal the column counts (dense matrices), and `c`
/// does not alias `a` or `b`.
///
/// Register blocking: each micro-kernel keeps a 4 x 64 tile of `C` (16
/// vectors) in registers while it walks the shared dimension, so every load
/// of `B` feeds four rows. Cache blocking: `B` is taken in 64-column strips cut
/// into depth blocks of 128 rows (32 KiB, one L1 data cache), and every row
/// tile of `A` passes over a block while it is in L1. Each element of `C` is
/// still one chain of multiply-adds in depth order (partial sums are stored
/// and reloaded as they are), so blocking does not change its bits. Work is split by column panels (`nn`, `tn`) or row
/// blocks (`nt`) across `threads` (on `WorkerPool.shared`, for products of
/// `parallelThreshold` flops or more); each element of `C` is computed by one
/// thread in one fixed order, so the result is bit-identical whatever the
/// thread count.
public enum GEMM {
    static let tileRows = 4
    static let tileCols = 64
    /// Depth of one block of B: 128 x 64 floats = 32 KiB, one L1 data cache.
    static let depthBlock = 128

    /// `C[m x n] = A[m x k] * B[k x n]`, plus `C` when `accumulate`.
    public static func nn(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
        accumulate: Bool = false, threads: Int = 1
    ) {
        // A's row r is read at a + r * k + p: stride k along rows, 1 along the depth k.
        product(
            rows: m, n: n, depth: k, a: a, aRowStride: k, aDepthStride: 1, b: b, c: c, accumulate: accumulate,
            threads: threads)
    }

    /// `C[k x n] = A[m x k]^T * B[m x n]`, plus `C` when `accumulate` (weight gradients).
    public static func tn(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
        accumulate: Bool = false, threads: Int = 1
    ) {
        // Row r of A^T is column r of A: stride 1 along rows, k along the depth m.
        product(
            rows: k, n: n, depth: m, a: a, aRowStride: 1, aDepthStride: k, b: b, c: c, accumulate: accumulate,
            threads: threads)
    }

    /// `C[rows x n] = A' * B[depth x n]` (plus `C`), where row `r` of `A'` at depth
    /// `p` is `a[r * aRowStride + p * aDepthStride]`: `nn` and `tn` differ only there.
    /// Column panels go to threads; 4 x 64 tiles within a panel.
    static func product(
        rows: Int, n: Int, depth: Int, a: UnsafePointer<Float>, aRowStride: Int, aDepthStride: Int,
        b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, accumulate: Bool, threads: Int
    ) {
        parallelPanels(n: n, threads: threads, work: 2 * rows * n * depth) { j0, j1 in
            var j = j0
            while j < j1 {
                let cols = min(tileCols, j1 - j)
                // Depth blocks of B's 64-column strip small enough for L1, reused by every row tile.
                var p = 0
                repeat {
                    let block = min(depthBlock, depth - p)
                    var i = 0
                    while i < rows {
                        let tileRowCount = min(tileRows, rows - i)
                        tile(
                            rows: tileRowCount, cols: cols, depth: block,
                            aRow: a + i * aRowStride + p * aDepthStride, aRowStride: aRowStride,
                            aDepthStride: aDepthStride, b: b + p * n + j, bStride: n, c: c + i * n + j, cStride: n,
                            accumulate: accumulate || p > 0)
                        i += tileRowCount
                    }
                    p += block
                } while p < depth
                j += cols
            }
        }
    }

    /// Up to this shared dimension, `nt` transposes `B` and runs the tiled product.
    static let shortDotProduct = 32

    /// `C[m x k] = A[m x n] * B[k x n]^T` (input gradients).
    public static func nt(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
        threads: Int = 1
    ) {
        if n <= shortDotProduct && k >= 16 {
            // Dot products of one or two vectors spend more on their horizontal sums
            // than on multiplying: transpose B (k x n, small) and take the tiled A * B^T.
            // On the stack when small (the MLP's last layer: 13 KiB), aligned as the kernels want.
            withUnsafeTemporaryAllocation(byteCount: n * k * MemoryLayout<Float>.stride, alignment: 64) { raw in
                let t = raw.baseAddress!.bindMemory(to: Float.self, capacity: n * k)
                for j in 0..<k {
                    for p in 0..<n { t[p * k + j] = b[j * n + p] }
                }
                product(
                    rows: m, n: k, depth: n, a: a, aRowStride: n, aDepthStride: 1, b: UnsafePointer(t), c: c,
                    accumulate: false, threads: threads)
            }
            return
        }
        let blocks = (m + tileRows - 1) / tileRows
        parallelRanges(count: blocks, threads: threads, work: 2 * m * n * k) { b0, b1 in
            for block in b0..<b1 {
                let i = block * tileRows
                let rows = min(tileRows, m - i)
                var j = 0
                while j < k {
                    let cols = min(4, k - j)
                    dotTile(rows: rows, cols: cols, n: n, a: a + i * n, b: b + j * n, c: c + i * k + j, cStride: k)
                    j += cols
                }
            }
        }
    }

    // MARK: - Micro-kernels

    /// One tile of up to 4 rows x 64 columns of `C += A' * B` over `depth`,
    /// where row `r` of `A'` at depth `p` is `aRow[r * aRowStride + p * aDepthStride]`.
    @inline(__always)
    static func tile(
        rows: Int, cols: Int, depth: Int, aRow: UnsafePointer<Float>, aRowStride: Int, aDepthStride: Int,
        b: UnsafePointer<Float>, bStride: Int, c: UnsafeMutablePointer<Float>, cStride: Int, accumulate: Bool
    ) {
        if rows == 4 && cols == 64 {
            tile4x64(
                depth: depth, a: aRow, aRowStride: aRowStride, aDepthStride: aDepthStride, b: b, bStride: bStride,
                c: c, cStride: cStride, accumulate: accumulate)
            return
        }
        // Edge tiles. Four rows: 4 x 16 blocks (four independent chains, not one), then
        // each row's scalar tail. Every element is still one chain over the depth in
        // order, so it gets the same bits whichever kernel computes it (whatever the
        // column split between threads).
        var first = 0
        if rows == 4 {
            while first + 16 <= cols {
                tile4x16(
                    depth: depth, a: aRow, aRowStride: aRowStride, aDepthStride: aDepthStride, b: b + first,
                    bStride: bStride, c: c + first, cStride: cStride, accumulate: accumulate)
                first += 16
            }
        }
        // Fewer rows: one row and one 16-column vector at a time, then scalars.
        for r in 0..<rows {
            var v = first
            while v + 16 <= cols {
                var acc = accumulate ? load(c + r * cStride + v) : Vec()
                var ap = aRow + r * aRowStride
                var bp = b + v
                for _ in 0..<depth {
                    acc = fmadd(acc, Vec(repeating: ap.pointee), load(bp))
                    ap += aDepthStride
                    bp += bStride
                }
                store(acc, c + r * cStride + v)
                v += 16
            }
            while v < cols {
                var acc: Float = accumulate ? c[r * cStride + v] : 0
                var ap = aRow + r * aRowStride
                var bp = b + v
                for _ in 0..<depth {
                    acc += ap.pointee * bp.pointee
                    ap += aDepthStride
                    bp += bStride
                }
                c[r * cStride + v] = acc
                v += 1
            }
        }
    }

    @inline(__always)
    static func tile4x64(
        depth: Int, a: UnsafePointer<Float>, aRowStride: Int, aDepthStride: Int, b: UnsafePointer<Float>,
        bStride: Int, c: UnsafeMutablePointer<Float>, cStride: Int, accumulate: Bool
    ) {
        var c00 = Vec(), c01 = Vec(), c02 = Vec(), c03 = Vec()
        var c10 = Vec(), c11 = Vec(), c12 = Vec(), c13 = Vec()
        var c20 = Vec(), c21 = Vec(), c22 = Vec(), c23 = Vec()
        var c30 = Vec(), c31 = Vec(), c32 = Vec(), c33 = Vec()
        if accumulate {
            c00 = load(c); c01 = load(c + 16); c02 = load(c + 32); c03 = load(c + 48)
            let r1 = c + cStride, r2 = c + 2 * cStride, r3 = c + 3 * cStride
            c10 = load(r1); c11 = load(r1 + 16); c12 = load(r1 + 32); c13 = load(r1 + 48)
            c20 = load(r2); c21 = load(r2 + 16); c22 = load(r2 + 32); c23 = load(r2 + 48)
            c30 = load(r3); c31 = load(r3 + 16); c32 = load(r3 + 32); c33 = load(r3 + 48)
        }
        var ap = a
        var bp = b
        for _ in 0..<depth {
            let b0 = load(bp), b1 = load(bp + 16), b2 = load(bp + 32), b3 = load(bp + 48)
            let a0 = Vec(repeating: ap[0])
            c00 = fmadd(c00, a0, b0); c01 = fmadd(c01, a0, b1); c02 = fmadd(c02, a0, b2); c03 = fmadd(c03, a0, b3)
            let a1 = Vec(repeating: ap[aRowStride])
            c10 = fmadd(c10, a1, b0); c11 = fmadd(c11, a1, b1); c12 = fmadd(c12, a1, b2); c13 = fmadd(c13, a1, b3)
            let a2 = Vec(repeating: ap[2 * aRowStride])
            c20 = fmadd(c20, a2, b0); c21 = fmadd(c21, a2, b1); c22 = fmadd(c22, a2, b2); c23 = fmadd(c23, a2, b3)
            let a3 = Vec(repeating: ap[3 * aRowStride])
            c30 = fmadd(c30, a3, b0); c31 = fmadd(c31, a3, b1); c32 = fmadd(c32, a3, b2); c33 = fmadd(c33, a3, b3)
            ap += aDepthStride
            bp += bStride
        }
        store(c00, c); store(c01, c + 16); store(c02, c + 32); store(c03, c + 48)
        let r1 = c + cStride, r2 = c + 2 * cStride, r3 = c + 3 * cStride
        store(c10, r1); store(c11, r1 + 16); store(c12, r1 + 32); store(c13, r1 + 48)
        store(c20, r2); store(c21, r2 + 16); store(c22, r2 + 32); store(c23, r2 + 48)
        store(c30, r3); store(c31, r3 + 16); store(c32, r3 + 32); store(c33, r3 + 48)
    }

    /// A 4 x 16 tile: four accumulators, for the columns left of a 64-column tile.
    @inline(__always)
    static func tile4x16(
        depth: Int, a: UnsafePointer<Float>, aRowStride: Int, aDepthStride: Int, b: UnsafePointer<Float>,
        bStride: Int, c: UnsafeMutablePointer<Float>, cStride: Int, accumulate: Bool
    ) {
        let r1 = c + cStride, r2 = c + 2 * cStride, r3 = c + 3 * cStride
        var c0 = accumulate ? load(c) : Vec(), c1 = accumulate ? load(r1) : Vec()
        var c2 = accumulate ? load(r2) : Vec(), c3 = accumulate ? load(r3) : Vec()
        var ap = a
        var bp = b
        for _ in 0..<depth {
            let bv = load(bp)
            c0 = fmadd(c0, Vec(repeating: ap[0]), bv)
            c1 = fmadd(c1, Vec(repeating: ap[aRowStride]), bv)
            c2 = fmadd(c2, Vec(repeating: ap[2 * aRowStride]), bv)
            c3 = fmadd(c3, Vec(repeating: ap[3 * aRowStride]), bv)
            ap += aDepthStride
            bp += bStride
        }
        store(c0, c); store(c1, r1); store(c2, r2); store(c3, r3)
    }

    /// Writes the lane sums of `a`, `b`, `c`, `d` to `out[0...3]`, reducing the
    /// four vectors together (halves added pairwise, 3 shuffle-and-add levels for
    /// all four) instead of one horizontal sum each.
    @inline(__always)
    static func storeSums(_ a: Vec, _ b: Vec, _ c: Vec, _ d: Vec, _ out: UnsafeMutablePointer<Float>) {
        // 16 -> 8 lanes each; a and b share one vector, c and d another.
        let ab = SIMD16(lowHalf: a.lowHalf + a.highHalf, highHalf: b.lowHalf + b.highHalf)
        let cd = SIMD16(lowHalf: c.lowHalf + c.highHalf, highHalf: d.lowHalf + d.highHalf)
        // 8 -> 4 lanes each: [a a a a b b b b c c c c d d d d].
        let abcd = SIMD16(
            lowHalf: SIMD8(
                lowHalf: ab.lowHalf.lowHalf + ab.lowHalf.highHalf, highHalf: ab.highHalf.lowHalf + ab.highHalf.highHalf),
            highHalf: SIMD8(
                lowHalf: cd.lowHalf.lowHalf + cd.lowHalf.highHalf, highHalf: cd.highHalf.lowHalf + cd.highHalf.highHalf)
        )
        // 4 -> 2 -> 1 lane each: even and odd lanes, twice.
        let pairs = abcd.evenHalf + abcd.oddHalf  // [a a b b c c d d]
        let sums = pairs.evenHalf + pairs.oddHalf  // [a b c d]
        out[0] = sums[0]
        out[1] = sums[1]
        out[2] = sums[2]
        out[3] = sums[3]
    }

    /// Up to 4 x 4 dot products of rows of `a` and rows of `b`, each of length `n`.
    @inline(__always)
    static func dotTile(
        rows: Int, cols: Int, n: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, cStride: Int
    ) {
        if rows == 4 && cols == 4 && n % 16 == 0 {
            var s00 = Vec(), s01 = Vec(), s02 = Vec(), s03 = Vec()
            var s10 = Vec(), s11 = Vec(), s12 = Vec(), s13 = Vec()
            var s20 = Vec(), s21 = Vec(), s22 = Vec(), s23 = Vec()
            var s30 = Vec(), s31 = Vec(), s32 = Vec(), s33 = Vec()
            var p = 0
            while p < n {
                let b0 = load(b + p), b1 = load(b + n + p), b2 = load(b + 2 * n + p), b3 = load(b + 3 * n + p)
                let a0 = load(a + p)
                s00 = fmadd(s00, a0, b0); s01 = fmadd(s01, a0, b1); s02 = fmadd(s02, a0, b2); s03 = fmadd(s03, a0, b3)
                let a1 = load(a + n + p)
                s10 = fmadd(s10, a1, b0); s11 = fmadd(s11, a1, b1); s12 = fmadd(s12, a1, b2); s13 = fmadd(s13, a1, b3)
                let a2 = load(a + 2 * n + p)
                s20 = fmadd(s20, a2, b0); s21 = fmadd(s21, a2, b1); s22 = fmadd(s22, a2, b2); s23 = fmadd(s23, a2, b3)
                let a3 = load(a + 3 * n + p)
                s30 = fmadd(s30, a3, b0); s31 = fmadd(s31, a3, b1); s32 = fmadd(s32, a3, b2); s33 = fmadd(s33, a3, b3)
                p += 16
            }
            storeSums(s00, s01, s02, s03, c)
            storeSums(s10, s11, s12, s13, c + cStride)
            storeSums(s20, s21, s22, s23, c + 2 * cStride)
            storeSums(s30, s31, s32, s33, c + 3 * cStride)
            return
        }
        for r in 0..<rows {
            for q in 0..<cols {
                var s = Vec()
                var p = 0
                while p + 16 <= n {
                    s = fmadd(s, load(a + r * n + p), load(b + q * n + p))
                    p += 16
                }
                var total = s.sum()
                while p < n {
                    total += a[r * n + p] * b[q * n + p]
                    p += 1
                }
                c[r * cStride + q] = total
            }
        }
    }

    // MARK: - Threads

    /// Below this many flops a product runs on the calling thread: handing
    /// part of it to a helper (`WorkerPool`) costs a few microseconds.
    static let parallelThreshold = 2_000_000

    /// Splits `0..<n` into column panels (multiples of 64, or of 16 at the
    /// end) for up to `threads` threads.
    static func parallelPanels(n: Int, threads: Int, work: Int, _ body: @escaping (Int, Int) -> Void) {
        let vectors = (n + 15) / 16
        parallelRanges(count: vectors, threads: threads, work: work) { v0, v1 in body(v0 * 16, min(v1 * 16, n)) }
    }

    /// Splits `0..<count` into up to `threads` ranges, run by `WorkerPool.shared`.
    static func parallelRanges(count: Int, threads: Int, work: Int, _ body: @escaping (Int, Int) -> Void) {
        let parts = work >= parallelThreshold ? min(max(threads, 1), count, WorkerPool.shared.helpers + 1) : 1
        if parts <= 1 {
            body(0, count)
            return
        }
        // Each part writes a disjoint range of the output, so sharing the
        // (non-Sendable) closure and its pointers across threads is safe.
        // Chunk boundaries are multiples of 4 vectors (one 64-column tile) where possible.
        WorkerPool.shared.run(parts: parts) { part in
            let lo = part * count / parts
            let hi = (part + 1) * count / parts
            let alignedLo = part == 0 ? 0 : min(count, (lo + 2) / 4 * 4)
            let alignedHi = part == parts - 1 ? count : min(count, (hi + 2) / 4 * 4)
            if alignedLo < alignedHi { body(alignedLo, alignedHi) }
        }
    }
}
