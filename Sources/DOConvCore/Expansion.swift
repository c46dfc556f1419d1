/// The reverse of the fold: a plain conv kernel as the trained tensors of a DO-Conv layer
/// that computes exactly that conv at initialization (`doconv-expand`).
///
/// With D' = D + I (I the identity offset, tiled over Dmul in blocks of MN columns, zero in
/// the last Dmul mod MN), the layer's kernel is K[o, c, m] = sum_s D'[c, m, s] W[o, c, s]
/// (after the layer's reshapes, which reinterpret W's memory: its first MN columns are the
/// plain kernel's memory in both layouts, for every group count). So:
/// - W's first MN columns hold the kernel, and D is zero there;
/// - the other columns of a whole identity block would add W to the kernel: W gets small
///   seeded random values there and D is -I, so D' is exactly 0 (-1 + 1);
/// - the last Dmul mod MN columns, where I is 0: W random, D zero, so D' is exactly 0.
/// Every contribution outside the first block is an exact 0, so the start is the plain
/// conv exactly, and no column is dead: wherever D' is 0, W is not, so D gets a gradient
/// at the first step (with W zero there, neither would ever get one).
public struct DOConvExpansion: Sendable {
    public let layout: DOConvLayout
    public let geometry: DOConvGeometry

    /// The layer's W, in `layout` (PyTorch (Cout, Cin/g, Dmul), Keras (Dmul, Cin/g, Cout)).
    public let w: [Double]
    /// The trained D (without I), in `layout`; nil for a 1x1 layer, which has none.
    public let d: [Double]?

    /// Expands `kernel` (the plain conv's, as `layout`'s framework stores it: PyTorch OIHW
    /// (Cout, Cin/g, M, N), Keras HWIO (M, N, Cin/g, Cout)); `seed` makes the random columns.
    public init(layout: DOConvLayout, geometry g: DOConvGeometry, kernel: [Double], seed: UInt64) throws(TensorError) {
        guard kernel.count == g.kernelCount else {
            throw .inconsistentLayer("the kernel holds \(kernel.count) values, a \(g.kernelHeight)x\(g.kernelWidth) conv of \(g.outChannels) x \(g.inChannelsPerGroup) channels \(g.kernelCount)")
        }
        guard g.depthMultiplier >= g.kernelArea else {
            throw .inconsistentLayer("Dmul \(g.depthMultiplier) < M*N = \(g.kernelArea): no DO-Conv layer starts as this conv exactly")
        }
        try Self.checkSize(g)
        self.layout = layout
        self.geometry = g
        let (mn, dmul) = (g.kernelArea, g.depthMultiplier)
        let rows = g.outChannels * g.inChannelsPerGroup
        let scale = Self.randomScale(kernel)
        var generator = SeededGenerator(seed: seed)
        func random() -> Double { Double.random(in: -scale...scale, using: &generator) }
        var w = [Double](repeating: 0, count: g.wCount)
        switch layout {
        case .pytorch:
            // W (Cout, Cin/g, Dmul): row r's first MN entries are the kernel's row r.
            for r in 0..<rows {
                for s in 0..<dmul { w[r * dmul + s] = s < mn ? kernel[r * mn + s] : random() }
            }
        case .keras:
            // W (Dmul, Cin/g, Cout): plane s < MN is the kernel's plane m = s.
            for s in 0..<dmul {
                for r in 0..<rows { w[s * rows + r] = s < mn ? kernel[s * rows + r] : random() }
            }
        }
        self.w = w
        guard mn > 1 else {
            d = nil
            return
        }
        // D = -I outside the first block, so that D + I is 0 there.
        var d = [Double](repeating: 0, count: g.dCount)
        IdentityOffset.add(to: &d, layout: layout, geometry: g)
        let cin = g.inChannels
        for k in d.indices {
            let s: Int
            switch layout {
            case .pytorch: s = k % dmul // (Cin, MN, Dmul)
            case .keras: s = (k / cin) % dmul // (MN, Dmul, Cin)
            }
            d[k] = s < mn || d[k] == 0 ? 0 : -d[k] // no -0.0 where I is 0
        }
        self.d = d
    }

    /// The most elements W or D of one expanded layer may hold (2 GiB as float64 while it
    /// is made): sizes come from files and flags, so they are checked before anything is
    /// allocated.
    public static let maxElements = 1 << 28

    /// Refuses a layer whose W or D would hold more than `maxElements` elements (or whose
    /// counts overflow), naming the sizes.
    public static func checkSize(_ g: DOConvGeometry) throws(TensorError) {
        func product(_ factors: [Int]) -> Int? {
            var total = 1
            for factor in factors {
                let (next, overflow) = total.multipliedReportingOverflow(by: factor)
                guard !overflow, factor >= 0 else { return nil }
                total = next
            }
            return total
        }
        let w = product([g.outChannels, g.inChannelsPerGroup, g.depthMultiplier])
        let d = g.kernelArea > 1 ? product([g.inChannels, g.kernelArea, g.depthMultiplier]) : 0
        guard let w, let d, w <= maxElements, d <= maxElements else {
            throw .inconsistentLayer("W (\(g.outChannels), \(g.inChannelsPerGroup), \(g.depthMultiplier)) and D (\(g.inChannels), \(g.kernelArea), \(g.depthMultiplier)) would exceed \(maxElements) elements: a smaller --dmul, or --exclude the layer")
        }
    }

    /// The identity offset I the layer adds to D (PyTorch stores it as `d_diag`), in `layout`.
    public var identity: [Double]? {
        guard d != nil else { return nil }
        var identity = [Double](repeating: 0, count: geometry.dCount)
        IdentityOffset.add(to: &identity, layout: layout, geometry: geometry)
        return identity
    }

    /// The random columns' spread: 1% of the kernel's root mean square (0.01 for a zero
    /// kernel), small against the kernel and far from zero.
    static func randomScale(_ kernel: [Double]) -> Double {
        let meanSquare = kernel.reduce(0) { $0 + $1 * $1 } / Double(max(kernel.count, 1))
        let rms = meanSquare.squareRoot()
        return rms > 0 && rms.isFinite ? 0.01 * rms : 0.01
    }

    /// The check every expansion gets: the layer composed back in float64 from W and D as
    /// stored (`w`, `d` rounded to the element type and read back), against the plain
    /// kernel as OIHW; the worst difference relative to the kernel's largest magnitude.
    public static func relativeError(layout: DOConvLayout, geometry g: DOConvGeometry, storedW: [Double], storedD: [Double]?, kernelOIHW: [Double]) throws(TensorError) -> Double {
        var composedD = storedD
        if var trained = composedD {
            IdentityOffset.add(to: &trained, layout: layout, geometry: g)
            composedD = trained
        }
        let composed = try Float64Layer(layout: layout, geometry: g, d: composedD, w: storedW).foldedKernel()
        let largest = kernelOIHW.reduce(0) { max($0, abs($1)) }
        var worst = 0.0
        for (a, b) in zip(composed, kernelOIHW) { worst = max(worst, abs(a - b)) }
        if worst == 0 { return 0 }
        return largest > 0 ? worst / largest : .infinity
    }
}
