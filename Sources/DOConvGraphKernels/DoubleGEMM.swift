// This file is compiled into three modules (DOConvGraphKernelsAVX2 and
// DOConvGraphKernelsAVX512 hold symbolic links to it and define DOCONV_FMA, the latter also
// DOCONV_AVX512): each copy is compiled for its module's CPU target, with everything in one
// file so that it inlines without whole-module optimization (debug builds).
#if DOCONV_FMA
import DOConvGraphKernels
#endif

/// One vector register of doubles: 512 bits in the AVX-512 module, 256 in the others.
#if DOCONV_AVX512
typealias Lane = SIMD8<Double>
#else
typealias Lane = SIMD4<Double>
#endif

/// acc + a * b: one fused multiply-add in the AVX2 and AVX-512 modules, separate multiply
/// and add (which every CPU has) in the portable one. Every element of C is the same chain
/// of these in the same order whatever the lane width, so the AVX2 and AVX-512 builds give
/// the same bits.
@inline(__always)
func multiplyAdd(_ acc: Lane, _ a: Lane, _ b: Lane) -> Lane {
    #if DOCONV_FMA
    return acc.addingProduct(a, b)
    #else
    return acc + a * b
    #endif
}

/// One tile of C = A * B in float64, row-major with explicit row strides.
///
/// C's tile (rows `rows`, columns `columns`) is computed from the whole of K, in blocks of
/// `kc` taken in order, so every element's sum runs in the same order whatever the tiling
/// or the number of threads: results do not depend on the thread count. Each element is one
/// chain of multiply-adds over the whole of K, from zero (each K block's chain starts from C
/// as the last one left it), so a product that is exactly zero changes no sum wherever K's
/// blocks fall: a convolution may leave out taps that read only padding (LiveTaps). Inside a K block,
/// B is packed in panels of two lanes' columns (8, or 16 with AVX-512; one panel stays in L1
/// while every row of the tile passes over it); A is read in place, four rows at a time, each
/// a sequential stream. A 4 x (2 lanes) micro-kernel keeps its sums in eight registers.
enum DoubleGEMMTile {
    static let kc = 256
    static let panelRows = 4
    static let panelColumns = 2 * Lane.scalarCount
    static let laneBytes = MemoryLayout<Lane>.size

    /// C[rows, columns] (+)= A[rows, 0..<k] * B[0..<k, columns]; with `accumulate` false the
    /// tile is overwritten. `scratch` holds `TileMultiplier.scratchCount` doubles.
    static func multiply(_ operands: GEMMOperands, rows: Range<Int>, columns: Range<Int>, scratch: UnsafeMutablePointer<Double>) {
        let (k, a, lda, b, ldb, c, ldc) = (operands.k, operands.a, operands.lda, operands.b, operands.ldb, operands.c, operands.ldc)
        let (transposedB, accumulate) = (operands.transposedB, operands.accumulate)
        let columnPanels = (columns.count + panelColumns - 1) / panelColumns
        if k == 0 {
            for i in rows {
                for j in columns { c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0) + (operands.rowBias?[i] ?? 0) }
            }
            return
        }
        let block = rowBlock(k: k)
        var k0 = 0
        while k0 < k {
            let depth = min(kc, k - k0)
            if let view = operands.im2col {
                view.pack(k0: k0, depth: depth, columns: columns, panelColumns: panelColumns, blockRows: packRows, into: scratch)
            } else if transposedB {
                packTransposedB(b + columns.lowerBound * ldb + k0, ldb: ldb, depth: depth, width: columns.count, into: scratch)
            } else {
                packB(b + k0 * ldb + columns.lowerBound, ldb: ldb, depth: depth, width: columns.count, into: scratch)
            }
            let first = k0 == 0 && !accumulate // each sum's chain starts from zero, else from C
            // The bias joins each sum once it is complete, as a separate pass would add it.
            let bias = k0 + depth == k ? operands.rowBias : nil
            // The packed B serves every row of the tile, a block of rows at a time: the
            // block's A (read in place) stays in L2 while it passes over every panel.
            var r0 = rows.lowerBound
            while r0 < rows.upperBound {
                let r1 = min(rows.upperBound, r0 + block)
                for columnPanel in 0..<columnPanels {
                    let j0 = columns.lowerBound + columnPanel * panelColumns
                    let width = min(panelColumns, columns.upperBound - j0)
                    let pb = UnsafePointer(scratch + columnPanel * depth * panelColumns)
                    var i0 = r0
                    #if DOCONV_AVX512
                    // 32 vector registers: eight rows at a time, 16 sums in registers.
                    while i0 + 8 <= r1 {
                        microKernel8(depth: depth, a: a + i0 * lda + k0, lda: lda, b: pb, c: c + i0 * ldc + j0, ldc: ldc,
                                     width: width, overwrite: first, bias: bias.map { $0 + i0 })
                        i0 += 8
                    }
                    #elseif DOCONV_FMA
                    // 16 vector registers: six rows at a time, 12 sums in registers.
                    while i0 + 6 <= r1 {
                        microKernel6(depth: depth, a: a + i0 * lda + k0, lda: lda, b: pb, c: c + i0 * ldc + j0, ldc: ldc,
                                     width: width, overwrite: first, bias: bias.map { $0 + i0 })
                        i0 += 6
                    }
                    #endif
                    while i0 < r1 {
                        let height = min(panelRows, r1 - i0)
                        // Rows past the edge read row i0 again; their sums are not stored.
                        let a0 = a + i0 * lda + k0
                        microKernel(depth: depth, a0: a0, a1: height > 1 ? a0 + lda : a0, a2: height > 2 ? a0 + 2 * lda : a0,
                                    a3: height > 3 ? a0 + 3 * lda : a0, b: pb, c: c + i0 * ldc + j0, ldc: ldc, height: height,
                                    width: width, overwrite: first, bias: bias.map { $0 + i0 })
                        i0 += panelRows
                    }
                }
                r0 = r1
            }
            k0 += depth
        }
    }

    /// Rows of A per block of `multiply`: their K block (read in place, from L2, for every
    /// column panel) takes up to 192 KB, so a shallow K gives taller blocks; a multiple of 8
    /// (the widest micro-kernel's rows).
    static func rowBlock(k: Int) -> Int {
        max(64, min(256, 24_576 / max(1, min(k, kc)))) / 8 * 8
    }

    /// B[0..<depth, 0..<width] into panels [panel][p][panelColumns], zero beyond the last
    /// column; a block of `packRows` rows of B at a time, panel by panel, so that each panel
    /// takes a run of whole cache lines at once. (Row by row across all panels sent a dozen
    /// store streams 32 KB apart into the same L1 sets, 16% of DeepLabv3's verification;
    /// panel by panel over all rows did the same to the loads when B's rows are far apart.)
    @inline(__always)
    static func packB(_ b: UnsafePointer<Double>, ldb: Int, depth: Int, width: Int, into packed: UnsafeMutablePointer<Double>) {
        let fullPanels = width / panelColumns
        let rest = width - fullPanels * panelColumns
        let panelStride = depth * panelColumns
        var p0 = 0
        while p0 < depth {
            let rows = min(packRows, depth - p0)
            for panel in 0..<fullPanels {
                let out = UnsafeMutableRawPointer(packed + panel * panelStride + p0 * panelColumns)
                let source = UnsafeRawPointer(b + p0 * ldb + panel * panelColumns)
                for p in 0..<rows {
                    let row = source + p * ldb * MemoryLayout<Double>.stride
                    out.storeBytes(of: row.loadUnaligned(as: Lane.self), toByteOffset: p * 2 * laneBytes, as: Lane.self)
                    out.storeBytes(of: row.loadUnaligned(fromByteOffset: laneBytes, as: Lane.self), toByteOffset: p * 2 * laneBytes + laneBytes,
                                   as: Lane.self)
                }
            }
            p0 += rows
        }
        if rest > 0 {
            let out = packed + fullPanels * panelStride
            for p in 0..<depth {
                let values = b + p * ldb + fullPanels * panelColumns
                for q in 0..<panelColumns { out[p * panelColumns + q] = q < rest ? values[q] : 0 }
            }
        }
    }

    /// Rows of B that `packB` copies into every panel before it moves on.
    static let packRows = 16

    /// `packB` from B's transpose: each panel column is a row of `bt`. Eight values of each
    /// of the panel's rows at a time, so the block written (8 x panelColumns) stays in L1
    /// while every row is read in runs of a cache line (column by column down the whole
    /// depth, the compiler scattered every store: 16% of Faster R-CNN's verification).
    @inline(__always)
    static func packTransposedB(_ bt: UnsafePointer<Double>, ldb: Int, depth: Int, width: Int, into packed: UnsafeMutablePointer<Double>) {
        let panels = (width + panelColumns - 1) / panelColumns
        for panel in 0..<panels {
            let out = packed + panel * depth * panelColumns
            let columns = min(panelColumns, width - panel * panelColumns)
            var p0 = 0
            while p0 < depth {
                let rows = min(8, depth - p0)
                for q in 0..<columns {
                    let row = bt + (panel * panelColumns + q) * ldb + p0
                    for i in 0..<rows { out[(p0 + i) * panelColumns + q] = row[i] }
                }
                for q in columns..<panelColumns {
                    for i in 0..<rows { out[(p0 + i) * panelColumns + q] = 0 }
                }
                p0 += rows
            }
        }
    }

    /// A 4 x panelColumns block of C: rows a0...a3 of A (in place) times a packed panel of B.
    @inline(__always)
    static func microKernel(depth: Int, a0: UnsafePointer<Double>, a1: UnsafePointer<Double>, a2: UnsafePointer<Double>,
                            a3: UnsafePointer<Double>, b: UnsafePointer<Double>, c: UnsafeMutablePointer<Double>, ldc: Int,
                            height: Int, width: Int, overwrite: Bool, bias: UnsafePointer<Double>?) {
        let block = RowBlock(c: c, ldc: ldc, height: height, width: width, overwrite: overwrite, bias: bias)
        var (c00, c01) = block.load(0), (c10, c11) = block.load(1), (c20, c21) = block.load(2), (c30, c31) = block.load(3)
        var pb = UnsafeRawPointer(b)
        for p in 0..<depth {
            let b0 = pb.loadUnaligned(as: Lane.self)
            let b1 = pb.loadUnaligned(fromByteOffset: laneBytes, as: Lane.self)
            let r0 = Lane(repeating: a0[p]), r1 = Lane(repeating: a1[p])
            let r2 = Lane(repeating: a2[p]), r3 = Lane(repeating: a3[p])
            c00 = multiplyAdd(c00, r0, b0); c01 = multiplyAdd(c01, r0, b1)
            c10 = multiplyAdd(c10, r1, b0); c11 = multiplyAdd(c11, r1, b1)
            c20 = multiplyAdd(c20, r2, b0); c21 = multiplyAdd(c21, r2, b1)
            c30 = multiplyAdd(c30, r3, b0); c31 = multiplyAdd(c31, r3, b1)
            pb += 2 * laneBytes
        }
        block.store(0, c00, c01); block.store(1, c10, c11); block.store(2, c20, c21); block.store(3, c30, c31)
    }

    #if DOCONV_AVX512
    /// An 8 x panelColumns block of C: eight rows of A from `a` (row stride `lda`) times a
    /// packed panel of B. Each sum is the same chain of fused multiply-adds as in
    /// `microKernel` (and the AVX2 build's `microKernel6`), so the results are the same bits.
    @inline(__always)
    static func microKernel8(depth: Int, a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, c: UnsafeMutablePointer<Double>,
                             ldc: Int, width: Int, overwrite: Bool, bias: UnsafePointer<Double>?) {
        let (a0, a1, a2, a3) = (a, a + lda, a + 2 * lda, a + 3 * lda)
        let (a4, a5, a6, a7) = (a + 4 * lda, a + 5 * lda, a + 6 * lda, a + 7 * lda)
        let block = RowBlock(c: c, ldc: ldc, height: 8, width: width, overwrite: overwrite, bias: bias)
        var (c00, c01) = block.load(0), (c10, c11) = block.load(1), (c20, c21) = block.load(2), (c30, c31) = block.load(3)
        var (c40, c41) = block.load(4), (c50, c51) = block.load(5), (c60, c61) = block.load(6), (c70, c71) = block.load(7)
        var pb = UnsafeRawPointer(b)
        for p in 0..<depth {
            let b0 = pb.loadUnaligned(as: Lane.self)
            let b1 = pb.loadUnaligned(fromByteOffset: laneBytes, as: Lane.self)
            var r = Lane(repeating: a0[p]); c00 = multiplyAdd(c00, r, b0); c01 = multiplyAdd(c01, r, b1)
            r = Lane(repeating: a1[p]); c10 = multiplyAdd(c10, r, b0); c11 = multiplyAdd(c11, r, b1)
            r = Lane(repeating: a2[p]); c20 = multiplyAdd(c20, r, b0); c21 = multiplyAdd(c21, r, b1)
            r = Lane(repeating: a3[p]); c30 = multiplyAdd(c30, r, b0); c31 = multiplyAdd(c31, r, b1)
            r = Lane(repeating: a4[p]); c40 = multiplyAdd(c40, r, b0); c41 = multiplyAdd(c41, r, b1)
            r = Lane(repeating: a5[p]); c50 = multiplyAdd(c50, r, b0); c51 = multiplyAdd(c51, r, b1)
            r = Lane(repeating: a6[p]); c60 = multiplyAdd(c60, r, b0); c61 = multiplyAdd(c61, r, b1)
            r = Lane(repeating: a7[p]); c70 = multiplyAdd(c70, r, b0); c71 = multiplyAdd(c71, r, b1)
            pb += 2 * laneBytes
        }
        block.store(0, c00, c01); block.store(1, c10, c11); block.store(2, c20, c21); block.store(3, c30, c31)
        block.store(4, c40, c41); block.store(5, c50, c51); block.store(6, c60, c61); block.store(7, c70, c71)
    }
    #elseif DOCONV_FMA
    /// A 6 x panelColumns block of C, as `microKernel8` with AVX-512's, for 16 registers.
    @inline(__always)
    static func microKernel6(depth: Int, a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, c: UnsafeMutablePointer<Double>,
                             ldc: Int, width: Int, overwrite: Bool, bias: UnsafePointer<Double>?) {
        let (a0, a1, a2, a3, a4, a5) = (a, a + lda, a + 2 * lda, a + 3 * lda, a + 4 * lda, a + 5 * lda)
        let block = RowBlock(c: c, ldc: ldc, height: 6, width: width, overwrite: overwrite, bias: bias)
        var (c00, c01) = block.load(0), (c10, c11) = block.load(1), (c20, c21) = block.load(2)
        var (c30, c31) = block.load(3), (c40, c41) = block.load(4), (c50, c51) = block.load(5)
        var pb = UnsafeRawPointer(b)
        for p in 0..<depth {
            let b0 = pb.loadUnaligned(as: Lane.self)
            let b1 = pb.loadUnaligned(fromByteOffset: laneBytes, as: Lane.self)
            var r = Lane(repeating: a0[p]); c00 = multiplyAdd(c00, r, b0); c01 = multiplyAdd(c01, r, b1)
            r = Lane(repeating: a1[p]); c10 = multiplyAdd(c10, r, b0); c11 = multiplyAdd(c11, r, b1)
            r = Lane(repeating: a2[p]); c20 = multiplyAdd(c20, r, b0); c21 = multiplyAdd(c21, r, b1)
            r = Lane(repeating: a3[p]); c30 = multiplyAdd(c30, r, b0); c31 = multiplyAdd(c31, r, b1)
            r = Lane(repeating: a4[p]); c40 = multiplyAdd(c40, r, b0); c41 = multiplyAdd(c41, r, b1)
            r = Lane(repeating: a5[p]); c50 = multiplyAdd(c50, r, b0); c51 = multiplyAdd(c51, r, b1)
            pb += 2 * laneBytes
        }
        block.store(0, c00, c01); block.store(1, c10, c11); block.store(2, c20, c21)
        block.store(3, c30, c31); block.store(4, c40, c41); block.store(5, c50, c51)
    }
    #endif

    /// Where a block of rows of sums starts and ends in C: each chain starts from C's value
    /// (from zero when `overwrite`) and its result replaces it, with `bias` added; rows past
    /// `height` (the matrix's edge) start from zero and are not stored, and a partial panel
    /// goes element by element.
    struct RowBlock {
        let c: UnsafeMutablePointer<Double>
        let ldc: Int
        let height: Int
        let width: Int
        let overwrite: Bool
        let bias: UnsafePointer<Double>?

        @inline(__always)
        func load(_ r: Int) -> (Lane, Lane) {
            if overwrite || r >= height { return (Lane(), Lane()) }
            let row = c + r * ldc
            if width == DoubleGEMMTile.panelColumns {
                let raw = UnsafeRawPointer(row)
                return (raw.loadUnaligned(as: Lane.self), raw.loadUnaligned(fromByteOffset: laneBytes, as: Lane.self))
            }
            var (low, high) = (Lane(), Lane())
            for q in 0..<width {
                if q < Lane.scalarCount { low[q] = row[q] } else { high[q - Lane.scalarCount] = row[q] }
            }
            return (low, high)
        }

        @inline(__always)
        func store(_ r: Int, _ low: Lane, _ high: Lane) {
            guard r < height else { return }
            var (low, high) = (low, high)
            if let bias {
                low += Lane(repeating: bias[r])
                high += Lane(repeating: bias[r])
            }
            let row = c + r * ldc
            if width == DoubleGEMMTile.panelColumns {
                let raw = UnsafeMutableRawPointer(row)
                raw.storeBytes(of: low, as: Lane.self)
                raw.storeBytes(of: high, toByteOffset: laneBytes, as: Lane.self)
                return
            }
            for q in 0..<width { row[q] = q < Lane.scalarCount ? low[q] : high[q - Lane.scalarCount] }
        }
    }
}
