// This file is compiled into two modules (DOConvGraphKernelsAVX2 holds a symbolic link to
// it, and defines DOCONV_FMA): each copy is compiled for its module's CPU target, with
// everything in one file so that it inlines without whole-module optimization (debug builds).

/// acc + a * b: one fused multiply-add in the AVX2 + FMA module, separate multiply and add
/// (which every CPU has) in the portable one.
@inline(__always)
func multiplyAdd(_ acc: SIMD4<Double>, _ a: SIMD4<Double>, _ b: SIMD4<Double>) -> SIMD4<Double> {
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
/// or the number of threads: results do not depend on the thread count. Inside a K block,
/// B is packed in panels of 8 columns and A in panels of 4 rows; a 4 x 8 micro-kernel keeps
/// its 32 sums in eight 256-bit registers.
enum DoubleGEMMTile {
    static let kc = 256
    static let panelRows = 4
    static let panelColumns = 8

    /// Doubles of scratch one tile needs (packed A and B).
    static func scratchCount(rows: Int, columns: Int) -> Int {
        let r = (rows + panelRows - 1) / panelRows * panelRows
        let c = (columns + panelColumns - 1) / panelColumns * panelColumns
        return kc * (r + c)
    }

    /// C[rows, columns] (+)= A[rows, 0..<k] * B[0..<k, columns]; with `accumulate` false the
    /// tile is overwritten. `scratch` holds `scratchCount` doubles.
    static func multiply(
        k: Int, a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
        c: UnsafeMutablePointer<Double>, ldc: Int, rows: Range<Int>, columns: Range<Int>, accumulate: Bool,
        scratch: UnsafeMutablePointer<Double>
    ) {
        let rowPanels = (rows.count + panelRows - 1) / panelRows
        let columnPanels = (columns.count + panelColumns - 1) / panelColumns
        let packedA = scratch
        let packedB = scratch + kc * rowPanels * panelRows
        if k == 0 {
            if !accumulate { for i in rows { for j in columns { c[i * ldc + j] = 0 } } }
            return
        }
        var k0 = 0
        while k0 < k {
            let depth = min(kc, k - k0)
            // B panels: [panel][p][8], zero beyond the last column.
            for panel in 0..<columnPanels {
                let j0 = columns.lowerBound + panel * panelColumns
                let width = min(panelColumns, columns.upperBound - j0)
                let out = packedB + panel * depth * panelColumns
                for p in 0..<depth {
                    let source = b + (k0 + p) * ldb + j0
                    let target = out + p * panelColumns
                    if width == panelColumns {
                        for q in 0..<panelColumns { target[q] = source[q] }
                    } else {
                        for q in 0..<panelColumns { target[q] = q < width ? source[q] : 0 }
                    }
                }
            }
            // A panels: [panel][p][4], zero beyond the last row.
            for panel in 0..<rowPanels {
                let i0 = rows.lowerBound + panel * panelRows
                let height = min(panelRows, rows.upperBound - i0)
                let out = packedA + panel * depth * panelRows
                for r in 0..<panelRows {
                    if r < height {
                        let source = a + (i0 + r) * lda + k0
                        for p in 0..<depth { out[p * panelRows + r] = source[p] }
                    } else {
                        for p in 0..<depth { out[p * panelRows + r] = 0 }
                    }
                }
            }
            let first = k0 == 0 && !accumulate
            for rowPanel in 0..<rowPanels {
                let i0 = rows.lowerBound + rowPanel * panelRows
                let height = min(panelRows, rows.upperBound - i0)
                let pa = packedA + rowPanel * depth * panelRows
                for columnPanel in 0..<columnPanels {
                    let j0 = columns.lowerBound + columnPanel * panelColumns
                    let width = min(panelColumns, columns.upperBound - j0)
                    microKernel(depth: depth, a: pa, b: packedB + columnPanel * depth * panelColumns,
                                c: c + i0 * ldc + j0, ldc: ldc, height: height, width: width, overwrite: first)
                }
            }
            k0 += depth
        }
    }

    /// A 4 x 8 block of C from packed panels.
    @inline(__always)
    static func microKernel(depth: Int, a: UnsafePointer<Double>, b: UnsafePointer<Double>,
                                                c: UnsafeMutablePointer<Double>, ldc: Int, height: Int, width: Int, overwrite: Bool) {
        var c00 = SIMD4<Double>(), c01 = SIMD4<Double>()
        var c10 = SIMD4<Double>(), c11 = SIMD4<Double>()
        var c20 = SIMD4<Double>(), c21 = SIMD4<Double>()
        var c30 = SIMD4<Double>(), c31 = SIMD4<Double>()
        var pa = a, pb = b
        for _ in 0..<depth {
            let b0 = UnsafeRawPointer(pb).loadUnaligned(as: SIMD4<Double>.self)
            let b1 = UnsafeRawPointer(pb + 4).loadUnaligned(as: SIMD4<Double>.self)
            let a0 = SIMD4<Double>(repeating: pa[0]), a1 = SIMD4<Double>(repeating: pa[1])
            let a2 = SIMD4<Double>(repeating: pa[2]), a3 = SIMD4<Double>(repeating: pa[3])
            c00 = multiplyAdd(c00, a0, b0); c01 = multiplyAdd(c01, a0, b1)
            c10 = multiplyAdd(c10, a1, b0); c11 = multiplyAdd(c11, a1, b1)
            c20 = multiplyAdd(c20, a2, b0); c21 = multiplyAdd(c21, a2, b1)
            c30 = multiplyAdd(c30, a3, b0); c31 = multiplyAdd(c31, a3, b1)
            pa += panelRows
            pb += panelColumns
        }
        if height == panelRows && width == panelColumns {
            store(c, low: c00, high: c01, overwrite: overwrite)
            store(c + ldc, low: c10, high: c11, overwrite: overwrite)
            store(c + 2 * ldc, low: c20, high: c21, overwrite: overwrite)
            store(c + 3 * ldc, low: c30, high: c31, overwrite: overwrite)
            return
        }
        // A partial block at the matrix's edge: element by element.
        for r in 0..<height {
            let (low, high) = r == 0 ? (c00, c01) : r == 1 ? (c10, c11) : r == 2 ? (c20, c21) : (c30, c31)
            let row = c + r * ldc
            for q in 0..<width {
                let value = q < 4 ? low[q] : high[q - 4]
                row[q] = overwrite ? value : row[q] + value
            }
        }
    }

    /// Eight values of one row of C, written or added.
    @inline(__always)
    static func store(_ row: UnsafeMutablePointer<Double>, low: SIMD4<Double>, high: SIMD4<Double>, overwrite: Bool) {
        let raw = UnsafeMutableRawPointer(row)
        if overwrite {
            raw.storeBytes(of: low, as: SIMD4<Double>.self)
            raw.storeBytes(of: high, toByteOffset: 32, as: SIMD4<Double>.self)
        } else {
            raw.storeBytes(of: raw.loadUnaligned(as: SIMD4<Double>.self) + low, as: SIMD4<Double>.self)
            raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: 32, as: SIMD4<Double>.self) + high, toByteOffset: 32, as: SIMD4<Double>.self)
        }
    }
}
