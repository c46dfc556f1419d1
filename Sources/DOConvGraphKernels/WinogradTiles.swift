/// The transforms of one Winograd minimal filtering algorithm F(m x m, 3 x 3) (Lavin and
/// Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): an m x m block of
/// outputs is A^T [(G g G^T) ⊙ (B^T d B)] A, for a 3x3 kernel g and the n x n block of
/// inputs d it reads (n = m + 2).
///
/// A tile gives the three matrices as formulas applied to one column of values (G: 3 values
/// to n, B^T: n to n, A^T: n to m); `WinogradConvolution` applies each twice, down the
/// columns and along the rows, to eight blocks at once: each `Lanes` value holds one matrix
/// element of eight blocks (or channel pairs). Every sum runs in one fixed order.
protocol WinogradTile {
    /// m: outputs per block side.
    static var outputs: Int { get }
    /// y[k * ys] = (G x)[k], x[k * xs] for k in 0..<3.
    static func g(_ x: UnsafePointer<WinogradLanes>, _ xs: Int, _ y: UnsafeMutablePointer<WinogradLanes>, _ ys: Int)
    /// y[k * ys] = (B^T x)[k], x[k * xs] for k in 0..<n.
    static func bt(_ x: UnsafePointer<WinogradLanes>, _ xs: Int, _ y: UnsafeMutablePointer<WinogradLanes>, _ ys: Int)
    /// y[k * ys] = (A^T x)[k] for k in 0..<m, x[k * xs] for k in 0..<n.
    static func at(_ x: UnsafePointer<WinogradLanes>, _ xs: Int, _ y: UnsafeMutablePointer<WinogradLanes>, _ ys: Int)
}

/// One matrix element of eight blocks.
typealias WinogradLanes = SIMD8<Double>

/// F(2x2, 3x3): 16 products for 4 outputs (the direct product takes 36). Its coefficients
/// are 0, +-1 and +-1/2, exact in binary.
enum WinogradF2: WinogradTile {
    static var outputs: Int { 2 }

    @inline(__always)
    static func g(_ x: UnsafePointer<WinogradLanes>, _ xs: Int, _ y: UnsafeMutablePointer<WinogradLanes>, _ ys: Int) {
        let (x0, x1, x2) = (x[0], x[xs], x[2 * xs])
        y[0] = x0
        y[ys] = (x0 + x1 + x2) * 0.5
        y[2 * ys] = (x0 - x1 + x2) * 0.5
        y[3 * ys] = x2
    }

    @inline(__always)
    static func bt(_ x: UnsafePointer<WinogradLanes>, _ xs: Int, _ y: UnsafeMutablePointer<WinogradLanes>, _ ys: Int) {
        let (x0, x1, x2, x3) = (x[0], x[xs], x[2 * xs], x[3 * xs])
        y[0] = x0 - x2
        y[ys] = x1 + x2
        y[2 * ys] = x2 - x1
        y[3 * ys] = x1 - x3
    }

    @inline(__always)
    static func at(_ x: UnsafePointer<WinogradLanes>, _ xs: Int, _ y: UnsafeMutablePointer<WinogradLanes>, _ ys: Int) {
        let (x0, x1, x2, x3) = (x[0], x[xs], x[2 * xs], x[3 * xs])
        y[0] = x0 + x1 + x2
        y[ys] = x1 - x2 - x3
    }
}

/// F(4x4, 3x3): 36 products for 16 outputs (the direct product takes 144), with the
/// interpolation points 0, +-1, +-2 and infinity. Its coefficients reach 8 and 1/24 (1/6 and
/// 1/24 are not exact in binary): in float64 its rounding stays near 1e-14 relative.
enum WinogradF4: WinogradTile {
    static var outputs: Int { 4 }

    @inline(__always)
    static func g(_ x: UnsafePointer<WinogradLanes>, _ xs: Int, _ y: UnsafeMutablePointer<WinogradLanes>, _ ys: Int) {
        let (x0, x1, x2) = (x[0], x[xs], x[2 * xs])
        y[0] = x0 * 0.25
        y[ys] = (x0 + x1 + x2) * (-1.0 / 6)
        y[2 * ys] = (x0 - x1 + x2) * (-1.0 / 6)
        y[3 * ys] = x0 * (1.0 / 24) + x1 * (1.0 / 12) + x2 * (1.0 / 6)
        y[4 * ys] = x0 * (1.0 / 24) - x1 * (1.0 / 12) + x2 * (1.0 / 6)
        y[5 * ys] = x2
    }

    @inline(__always)
    static func bt(_ x: UnsafePointer<WinogradLanes>, _ xs: Int, _ y: UnsafeMutablePointer<WinogradLanes>, _ ys: Int) {
        let (x0, x1, x2, x3, x4, x5) = (x[0], x[xs], x[2 * xs], x[3 * xs], x[4 * xs], x[5 * xs])
        y[0] = x0 * 4 - x2 * 5 + x4
        y[ys] = x3 + x4 - (x1 + x2) * 4
        y[2 * ys] = (x1 - x2) * 4 - x3 + x4
        y[3 * ys] = (x3 - x1) * 2 - x2 + x4
        y[4 * ys] = (x1 - x3) * 2 - x2 + x4
        y[5 * ys] = x1 * 4 - x3 * 5 + x5
    }

    @inline(__always)
    static func at(_ x: UnsafePointer<WinogradLanes>, _ xs: Int, _ y: UnsafeMutablePointer<WinogradLanes>, _ ys: Int) {
        let (x0, x1, x2, x3, x4, x5) = (x[0], x[xs], x[2 * xs], x[3 * xs], x[4 * xs], x[5 * xs])
        y[0] = x0 + x1 + x2 + x3 + x4
        y[ys] = (x1 - x2) + (x3 - x4) * 2
        y[2 * ys] = (x1 + x2) + (x3 + x4) * 4
        y[3 * ys] = (x1 - x2) + (x3 - x4) * 8 + x5
    }
}
