/// Single-precision matrix products on row-major matrices, in pure Swift.
///
/// Any shapes work; the fast paths want the dimension the vectors run along
/// (`n`: columns of `C` for `nn` and `tn`) to be a multiple of 16, so `MLP`
/// pads its layers with zeros; other widths take scalar tails. Row strides
/// equal the column counts (dense matrices), and `c` does not alias `a` or `b`.
///
/// Register blocking: a micro-kernel keeps a tile of `C` in registers while it
/// walks the shared dimension, so every load of `B` feeds several rows. The
/// tile fits the machine's vector registers (`Registers.wide`): 4 x 64 (16
/// vectors of 16 floats) with AVX-512's 32 registers of 16 floats; 6 x 16 (six
/// vectors: 12 of AVX2's 16 registers of 8 floats, 24 of NEON's 32 of 4)
/// otherwise. A tile that does not fit spills accumulators to memory on every
/// step (4 x 64 with AVX2 ran at a third of the machine's peak).
/// Cache blocking: `B` is taken in depth blocks of 128 rows, and the operand
/// that is larger stays where it is while the smaller one is swept: column
/// strips outer when `B` is larger (a forward product), row tiles outer when
/// `A` is (a weight gradient). Each element of `C` is one chain of
/// multiply-adds in depth order whichever kernel computes it (partial sums are
/// stored and reloaded as they are), so tiles and blocks do not change its
/// bits. Work is split by column strips or row tiles across `threads` (on
/// `WorkerPool.shared`, for products of `parallelThreshold` flops or more);
/// each element of `C` is computed by one thread in one fixed order, so the
/// result is bit-identical whatever the thread count or the split.
public enum GEMM {
    static let tileRows = 4
    static let tileCols = 64
    /// Depth of one block of B: a 64-column strip of it is 32 KiB, one L1 data cache.
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
        tn(m: m, n: n, k: k, a: a, b: b, c: c, accumulate: accumulate, threads: threads, rowsDone: nil)
    }

    /// `tn`; with `rowsDone`, `C` is not written, and each tile of its rows is
    /// handed to `rowsDone` from a scratch buffer instead (see `product`): the
    /// trainer applies Adam there while the gradient is in L1.
    static func tn(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
        accumulate: Bool, threads: Int, rowsDone: ((Int, Int, UnsafeMutablePointer<Float>) -> Void)?
    ) {
        // Row r of A^T is column r of A: stride 1 along rows, k along the depth m.
        product(
            rows: k, n: n, depth: m, a: a, aRowStride: 1, aDepthStride: k, b: b, c: c, accumulate: accumulate,
            threads: threads, rowsDone: rowsDone)
    }

    /// `C[rows x n] = A' * B[depth x n]` (plus `C`), where row `r` of `A'` at depth
    /// `p` is `a[r * aRowStride + p * aDepthStride]`: `nn` and `tn` differ only there.
    ///
    /// With `rowsDone`, `C` is not written: each tile of rows `r0..<r1` is
    /// computed into a scratch buffer that stays in L1 (row stride `n`, its
    /// first row at the pointer given), and `rowsDone(r0, r1, rows)` is called
    /// with it on the thread that computed it, before the buffer is reused.
    /// The tiles are disjoint and cover `0..<rows`; `accumulate` must be false.
    /// `wide` picks the tile shape (default: `Registers.wide`); both give the same bits.
    static func product(
        rows: Int, n: Int, depth: Int, a: UnsafePointer<Float>, aRowStride: Int, aDepthStride: Int,
        b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, accumulate: Bool, threads: Int,
        rowsDone: ((Int, Int, UnsafeMutablePointer<Float>) -> Void)? = nil, wide: Bool = Registers.wide
    ) {
        let tileHeight = wide ? tileRows : narrowRows
        let tileWidth = wide ? tileCols : 16
        // Rows of the next tile when `left` rows remain. Narrow: 8 rows as 4 + 4,
        // not 6 + 1 + 1 (single rows are the slowest kernel).
        func height(_ left: Int) -> Int {
            wide || left < narrowRows || left == 8 ? min(tileRows, left) : narrowRows
        }
        // Rows i..<i+h, columns j0..<j1, depth block p..<p+block of C, whose row i is at cRow.
        func rowTile(
            _ i: Int, _ h: Int, _ j0: Int, _ j1: Int, _ p: Int, _ block: Int, _ cRow: UnsafeMutablePointer<Float>,
            _ add: Bool
        ) {
            let aRow = a + i * aRowStride + p * aDepthStride
            var j = j0
            while j < j1 {
                let cols = min(tileWidth, j1 - j)
                if !wide && h == narrowRows && cols == 16 {
                    tile6x16(
                        depth: block, a: aRow, aRowStride: aRowStride, aDepthStride: aDepthStride,
                        b: b + p * n + j, bStride: n, c: cRow + j, cStride: n, accumulate: add)
                } else {
                    tile(
                        rows: h, cols: cols, depth: block, aRow: aRow, aRowStride: aRowStride,
                        aDepthStride: aDepthStride, b: b + p * n + j, bStride: n, c: cRow + j, cStride: n,
                        accumulate: add)
                }
                j += cols
            }
        }
        let work = 2 * rows * n * depth
        let tiles = (rows + tileHeight - 1) / tileHeight
        if let rowsDone {
            precondition(!accumulate)
            parallelRanges(count: tiles, threads: threads, work: work, align: 1) { t0, t1 in
                let r1 = min(t1 * tileHeight, rows)
                withUnsafeTemporaryAllocation(
                    byteCount: max(1, tileHeight * n) * MemoryLayout<Float>.stride, alignment: 64
                ) { raw in
                    let scratch = raw.baseAddress!.bindMemory(to: Float.self, capacity: max(1, tileHeight * n))
                    var i = t0 * tileHeight
                    while i < r1 {
                        let h = height(r1 - i)
                        var p = 0
                        repeat {
                            let block = min(depthBlock, depth - p)
                            rowTile(i, h, 0, n, p, block, scratch, p > 0)
                            p += block
                        } while p < depth
                        rowsDone(i, i + h, scratch)
                        i += h
                    }
                }
            }
            return
        }
        // Rows r0..<r1 and columns j0..<j1 of C, depth block after depth block.
        func block(_ r0: Int, _ r1: Int, _ j0: Int, _ j1: Int) {
            var p = 0
            repeat {
                let block = min(depthBlock, depth - p)
                var i = r0
                while i < r1 {
                    let h = height(r1 - i)
                    rowTile(i, h, j0, j1, p, block, c + i * n, accumulate || p > 0)
                    i += h
                }
                p += block
            } while p < depth
        }
        if rows >= n {
            // A' is the larger operand: row tiles to threads, each sweeping B's depth block.
            parallelRanges(count: tiles, threads: threads, work: work, align: 1) { t0, t1 in
                block(t0 * tileHeight, min(t1 * tileHeight, rows), 0, n)
            }
        } else {
            // B is the larger operand: column strips to threads, each sweeping A'. With
            // several threads each strip is also cut into as many bands of rows (a band
            // sweeps its strip of B once more): the few strips of a forward product (a
            // 208-column layer has 64 + 64 + 64 + 16) do not split evenly between threads,
            // strips x bands do. Every element is still computed by one unit, in one order.
            let strips = (n + tileWidth - 1) / tileWidth
            let bands = work >= parallelThreshold ? min(tiles, max(1, min(threads, WorkerPool.shared.helpers + 1))) : 1
            parallelRanges(count: strips * bands, threads: threads, work: work, align: 1) { u0, u1 in
                for u in u0..<u1 {
                    let (s, band) = (u / bands, u % bands)
                    let r0 = band * tiles / bands * tileHeight, r1 = min((band + 1) * tiles / bands * tileHeight, rows)
                    if r0 < r1 { block(r0, r1, s * tileWidth, min(s * tileWidth + tileWidth, n)) }
                }
            }
        }
    }

    /// Rows of the narrow micro-kernel's tile (`tile6x16`).
    static let narrowRows = 6

    /// `C[m x k] = A[m x n] * B[k x n]^T` (input gradients).
    ///
    /// Computed as `C^T = B * A^T`: `A` (a batch of gradients, small) is
    /// transposed into a scratch buffer with its rows padded to a multiple of
    /// 16, the tiled product runs with `B` as its left operand (each element a
    /// chain over `n` in order), and the result is transposed back into `C`.
    public static func nt(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
        threads: Int = 1
    ) {
        nt(m: m, n: n, k: k, a: a, b: b, c: c, threads: threads, mask: nil)
    }

    /// `nt`, then `C[i][j] = 0` wherever `mask[i * k + j] <= 0` (the ReLU's
    /// derivative, taken from its output `mask`, `m x k`), in the same pass.
    static func nt(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
        threads: Int, mask: UnsafePointer<Float>?
    ) {
        guard m > 0, k > 0 else { return }
        let mp = (m + 15) / 16 * 16
        let floats = n * mp + k * mp
        withUnsafeTemporaryAllocation(byteCount: max(floats, 1) * MemoryLayout<Float>.stride, alignment: 64) { raw in
            let at = raw.baseAddress!.bindMemory(to: Float.self, capacity: max(floats, 1))
            let ct = at + n * mp
            // A^T: n x mp, the padding columns zero; 16 rows of A at a time.
            let fullRows = m / 16 * 16
            for p in 0..<n {
                let row = at + p * mp
                var i = 0
                while i < fullRows {
                    store(gather16(a + i * n + p, stride: n), row + i)
                    i += 16
                }
                for i in fullRows..<m { row[i] = a[i * n + p] }
                for i in m..<mp { row[i] = 0 }
            }
            product(
                rows: k, n: mp, depth: n, a: b, aRowStride: n, aDepthStride: 1, b: UnsafePointer(at), c: ct,
                accumulate: false, threads: threads)
            // C = (C^T)^T, masked; 16 columns of C at a time.
            let fullCols = k / 16 * 16
            for i in 0..<m {
                let out = c + i * k
                var j = 0
                while j < fullCols {
                    let v = gather16(ct + j * mp + i, stride: mp)
                    store(mask.map { Vec().replacing(with: v, where: load($0 + i * k + j) .> Vec()) } ?? v, out + j)
                    j += 16
                }
                for j in fullCols..<k {
                    let v = ct[j * mp + i]
                    out[j] = mask.map { $0[i * k + j] > 0 ? v : 0 } ?? v
                }
            }
        }
    }

    // MARK: - Micro-kernels

    /// `p[0], p[stride], ..., p[15 * stride]`.
    @inline(__always)
    static func gather16(_ p: UnsafePointer<Float>, stride s: Int) -> Vec {
        Vec(
            p[0], p[s], p[2 * s], p[3 * s], p[4 * s], p[5 * s], p[6 * s], p[7 * s], p[8 * s], p[9 * s], p[10 * s],
            p[11 * s], p[12 * s], p[13 * s], p[14 * s], p[15 * s])
    }

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

    /// A 6 x 16 tile: six accumulators of 16 floats, twelve AVX2 registers.
    @inline(__always)
    static func tile6x16(
        depth: Int, a: UnsafePointer<Float>, aRowStride: Int, aDepthStride: Int, b: UnsafePointer<Float>,
        bStride: Int, c: UnsafeMutablePointer<Float>, cStride: Int, accumulate: Bool
    ) {
        let r1 = c + cStride, r2 = c + 2 * cStride, r3 = c + 3 * cStride, r4 = c + 4 * cStride, r5 = c + 5 * cStride
        var c0 = Vec(), c1 = Vec(), c2 = Vec(), c3 = Vec(), c4 = Vec(), c5 = Vec()
        if accumulate {
            c0 = load(c); c1 = load(r1); c2 = load(r2); c3 = load(r3); c4 = load(r4); c5 = load(r5)
        }
        let s2 = 2 * aRowStride, s3 = 3 * aRowStride, s4 = 4 * aRowStride, s5 = 5 * aRowStride
        var ap = a
        var bp = b
        for _ in 0..<depth {
            let bv = load(bp)
            c0 = fmadd(c0, Vec(repeating: ap[0]), bv)
            c1 = fmadd(c1, Vec(repeating: ap[aRowStride]), bv)
            c2 = fmadd(c2, Vec(repeating: ap[s2]), bv)
            c3 = fmadd(c3, Vec(repeating: ap[s3]), bv)
            c4 = fmadd(c4, Vec(repeating: ap[s4]), bv)
            c5 = fmadd(c5, Vec(repeating: ap[s5]), bv)
            ap += aDepthStride
            bp += bStride
        }
        store(c0, c); store(c1, r1); store(c2, r2); store(c3, r3); store(c4, r4); store(c5, r5)
    }

    // MARK: - Threads

    /// Below this many flops a product runs on the calling thread: handing
    /// part of it to a helper (`WorkerPool`) costs a few microseconds.
    static let parallelThreshold = 2_000_000

    /// Splits `0..<count` into up to `threads` ranges, run by `WorkerPool.shared`,
    /// with inner bounds at multiples of `align` where possible.
    static func parallelRanges(
        count: Int, threads: Int, work: Int, align: Int = 4, _ body: @escaping (Int, Int) -> Void
    ) {
        let threadsUsed = work >= parallelThreshold ? min(max(threads, 1), WorkerPool.shared.helpers + 1) : 1
        if threadsUsed <= 1 || count <= 1 {
            body(0, count)
            return
        }
        // Four parts a thread: a thread that is descheduled (another process
        // has its core) holds up at most the one part it claimed; the others
        // claim the rest.
        let parts = min(count, 4 * threadsUsed)
        // Each part writes a disjoint range of the output, so sharing the
        // (non-Sendable) closure and its pointers across threads is safe.
        WorkerPool.shared.run(parts: parts) { part in
            let lo = part * count / parts
            let hi = (part + 1) * count / parts
            let alignedLo = part == 0 ? 0 : min(count, (lo + align / 2) / align * align)
            let alignedHi = part == parts - 1 ? count : min(count, (hi + align / 2) / align * align)
            if alignedLo < alignedHi { body(alignedLo, alignedHi) }
        }
    }
}

/// What the machine's vector registers hold, for the kernels' tile shapes.
public enum Registers {
    /// True when the kernels were compiled for a CPU with FMA and run on one
    /// with 32 registers of 16 floats (x86-64 with AVX-512F): 4 x 64 tiles.
    /// False otherwise (AVX2, NEON, the portable baseline): 6 x 16 tiles.
    /// Either way each element of a product gets the same bits.
    public static let wide: Bool = {
        #if FED_FMA && arch(x86_64) && os(Linux)
            guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
                let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
            else { return false }
            return flags.split(separator: " ").contains("avx512f")
        #else
            return false
        #endif
    }()
}
