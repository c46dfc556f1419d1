/// The transforms of one Winograd minimal filtering algorithm F(m x m, 3 x 3) (Lavin and
/// Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): an m x m block of
/// outputs is A^T [(G g G^T) ⊙ (B^T d B)] A, for a 3x3 kernel g and the (m + 2) x (m + 2)
/// block of inputs d it reads. Each transform is written out, its row combinations on
/// vectors of a row's values and its column combinations on the values; every sum runs in
/// one fixed order.
///
/// An element (r, c) of a transformed block (n = m + 2 on a side) goes to `at[(n r + c) *
/// plane]`: each element's values for every channel and block form one plane, a GEMM's
/// operand.
protocol WinogradTile {
    /// m: outputs per block side.
    static var outputs: Int { get }
    /// G g G^T of the 3x3 kernel at `g` (row-major).
    static func transformWeights(_ g: UnsafePointer<Double>, at: UnsafeMutablePointer<Double>, plane: Int)
    /// B^T d B of the block whose rows are `d` (row i in lanes 0..<n of d.i).
    static func transformInput(_ d: WinogradRows, at: UnsafeMutablePointer<Double>, plane: Int)
    /// A^T M A of the products at `at`: row i of the m x m outputs in lanes 0..<m of result.i.
    static func transformOutput(_ at: UnsafePointer<Double>, plane: Int) -> WinogradOutputRows
}

/// What the transforms' formulas run on: a value, or a vector of a row's values.
protocol WinogradValue {
    static func + (lhs: Self, rhs: Self) -> Self
    static func - (lhs: Self, rhs: Self) -> Self
    static func * (lhs: Self, rhs: Double) -> Self
}

extension Double: WinogradValue {}
extension SIMD4: WinogradValue where Scalar == Double {}
extension SIMD8: WinogradValue where Scalar == Double {}

/// Up to six rows of up to eight values (F(4x4, 3x3) reads 6 x 6 inputs).
typealias WinogradRows = (SIMD8<Double>, SIMD8<Double>, SIMD8<Double>, SIMD8<Double>, SIMD8<Double>, SIMD8<Double>)
/// Up to four rows of up to four outputs.
typealias WinogradOutputRows = (SIMD4<Double>, SIMD4<Double>, SIMD4<Double>, SIMD4<Double>)

/// F(2x2, 3x3): 16 products for 4 outputs (the direct product takes 36). Its coefficients
/// are 0, +-1 and +-1/2, exact in binary.
enum WinogradF2: WinogradTile {
    static var outputs: Int { 2 }

    @inline(__always)
    static func transformWeights(_ g: UnsafePointer<Double>, at: UnsafeMutablePointer<Double>, plane: Int) {
        let (g0, g1, g2) = (SIMD4(g[0], g[1], g[2], 0), SIMD4(g[3], g[4], g[5], 0), SIMD4(g[6], g[7], g[8], 0))
        // G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2; then each row times G^T.
        func row(_ r: Int, _ t: SIMD4<Double>) {
            let at = at + 4 * r * plane
            at[0] = t[0]
            at[plane] = (t[0] + t[1] + t[2]) * 0.5
            at[2 * plane] = (t[0] - t[1] + t[2]) * 0.5
            at[3 * plane] = t[2]
        }
        row(0, g0)
        row(1, (g0 + g1 + g2) * 0.5)
        row(2, (g0 - g1 + g2) * 0.5)
        row(3, g2)
    }

    @inline(__always)
    static func transformInput(_ d: WinogradRows, at: UnsafeMutablePointer<Double>, plane: Int) {
        // B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3; then each row times B.
        func row(_ r: Int, _ t: SIMD8<Double>) {
            let at = at + 4 * r * plane
            at[0] = t[0] - t[2]
            at[plane] = t[1] + t[2]
            at[2 * plane] = t[2] - t[1]
            at[3 * plane] = t[1] - t[3]
        }
        row(0, d.0 - d.2)
        row(1, d.1 + d.2)
        row(2, d.2 - d.1)
        row(3, d.1 - d.3)
    }

    @inline(__always)
    static func transformOutput(_ at: UnsafePointer<Double>, plane: Int) -> WinogradOutputRows {
        func row(_ r: Int) -> SIMD4<Double> {
            SIMD4(at[4 * r * plane], at[(4 * r + 1) * plane], at[(4 * r + 2) * plane], at[(4 * r + 3) * plane])
        }
        let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3))
        // A^T M: rows m0 + m1 + m2 and m1 - m2 - m3; then each row times A.
        func times(_ t: SIMD4<Double>) -> SIMD4<Double> { SIMD4(t[0] + t[1] + t[2], t[1] - t[2] - t[3], 0, 0) }
        return (times(m0 + m1 + m2), times(m1 - m2 - m3), SIMD4(), SIMD4())
    }
}

/// F(4x4, 3x3): 36 products for 16 outputs (the direct product takes 144), with the
/// interpolation points 0, +-1, +-2 and infinity. Its coefficients reach 8 and 1/24 (1/6 and
/// 1/24 are not exact in binary): in float64 its rounding stays near 1e-14 relative.
enum WinogradF4: WinogradTile {
    static var outputs: Int { 4 }

    /// G times three values (or rows): g0 / 4, -(g0 + g1 + g2) / 6, -(g0 - g1 + g2) / 6,
    /// g0 / 24 + g1 / 12 + g2 / 6, g0 / 24 - g1 / 12 + g2 / 6, g2.
    @inline(__always)
    static func g<T: WinogradValue>(_ g0: T, _ g1: T, _ g2: T) -> (T, T, T, T, T, T) {
        (g0 * 0.25, (g0 + g1 + g2) * (-1.0 / 6), (g0 - g1 + g2) * (-1.0 / 6), g0 * (1.0 / 24) + g1 * (1.0 / 12) + g2 * (1.0 / 6),
         g0 * (1.0 / 24) - g1 * (1.0 / 12) + g2 * (1.0 / 6), g2)
    }

    /// B^T times six values (or rows).
    @inline(__always)
    static func bt<T: WinogradValue>(_ d0: T, _ d1: T, _ d2: T, _ d3: T, _ d4: T, _ d5: T) -> (T, T, T, T, T, T) {
        (d0 * 4 - d2 * 5 + d4, d3 + d4 - (d1 + d2) * 4, (d1 - d2) * 4 - d3 + d4, (d3 - d1) * 2 - d2 + d4, (d1 - d3) * 2 - d2 + d4,
         d1 * 4 - d3 * 5 + d5)
    }

    /// A^T times six values (or rows).
    @inline(__always)
    static func at<T: WinogradValue>(_ m0: T, _ m1: T, _ m2: T, _ m3: T, _ m4: T, _ m5: T) -> (T, T, T, T) {
        (m0 + m1 + m2 + m3 + m4, (m1 - m2) + (m3 - m4) * 2, (m1 + m2) + (m3 + m4) * 4, (m1 - m2) + (m3 - m4) * 8 + m5)
    }

    @inline(__always)
    static func transformWeights(_ w: UnsafePointer<Double>, at: UnsafeMutablePointer<Double>, plane: Int) {
        let rows = g(SIMD4(w[0], w[1], w[2], 0), SIMD4(w[3], w[4], w[5], 0), SIMD4(w[6], w[7], w[8], 0))
        // Each row of G g times G^T: G applied to its three values.
        func row(_ r: Int, _ t: SIMD4<Double>) {
            let u = g(t[0], t[1], t[2])
            let at = at + 6 * r * plane
            at[0] = u.0
            at[plane] = u.1
            at[2 * plane] = u.2
            at[3 * plane] = u.3
            at[4 * plane] = u.4
            at[5 * plane] = u.5
        }
        row(0, rows.0)
        row(1, rows.1)
        row(2, rows.2)
        row(3, rows.3)
        row(4, rows.4)
        row(5, rows.5)
    }

    @inline(__always)
    static func transformInput(_ d: WinogradRows, at: UnsafeMutablePointer<Double>, plane: Int) {
        let rows = bt(d.0, d.1, d.2, d.3, d.4, d.5)
        // Each row of B^T d times B: B^T applied to its six values.
        func row(_ r: Int, _ t: SIMD8<Double>) {
            let v = bt(t[0], t[1], t[2], t[3], t[4], t[5])
            let at = at + 6 * r * plane
            at[0] = v.0
            at[plane] = v.1
            at[2 * plane] = v.2
            at[3 * plane] = v.3
            at[4 * plane] = v.4
            at[5 * plane] = v.5
        }
        row(0, rows.0)
        row(1, rows.1)
        row(2, rows.2)
        row(3, rows.3)
        row(4, rows.4)
        row(5, rows.5)
    }

    @inline(__always)
    static func transformOutput(_ at: UnsafePointer<Double>, plane: Int) -> WinogradOutputRows {
        func row(_ r: Int) -> SIMD8<Double> {
            let at = at + 6 * r * plane
            return SIMD8(at[0], at[plane], at[2 * plane], at[3 * plane], at[4 * plane], at[5 * plane], 0, 0)
        }
        let rows = Self.at(row(0), row(1), row(2), row(3), row(4), row(5))
        // Each row of A^T M times A: A^T applied to its six values.
        func times(_ t: SIMD8<Double>) -> SIMD4<Double> {
            let y = Self.at(t[0], t[1], t[2], t[3], t[4], t[5])
            return SIMD4(y.0, y.1, y.2, y.3)
        }
        return (times(rows.0), times(rows.1), times(rows.2), times(rows.3))
    }
}
