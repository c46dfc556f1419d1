import DOConvCore

/// The numbers `doconv-inspect` reports for one DO-Conv layer, computed from D and W only.
public enum LayerAnalysis {
    /// How far the composed D is from the identity offset: ||D_composed - I||_F / ||I||_F,
    /// where D_composed = D + I as the layer composes it and I is the identity offset tiled
    /// over the input channels (`IdentityOffset`).
    ///
    /// 0 for a layer with no D (1x1). nil when I is all zeros (Dmul < M*N: there is no
    /// identity to compare with) or when D holds NaN or infinite values.
    public static func dDeviation(_ layer: DOConvLayer) -> Double? {
        guard let d = layer.d else { return 0 }
        let g = layer.geometry
        var identity = [Float](repeating: 0, count: g.dCount)
        IdentityOffset.add(to: &identity, layout: layer.layout, geometry: g)
        var difference = 0.0
        var norm = 0.0
        for k in 0..<d.count {
            let i = Double(identity[k])
            let delta = Double(d[k]) - i
            difference += delta * delta
            norm += i * i
        }
        guard norm > 0 else { return nil }
        let ratio = (difference / norm).squareRoot()
        return ratio.isFinite ? ratio : nil
    }

    /// The kernel the layer would have if D were exactly the identity offset (the trained
    /// part of D all zeros), in OIHW order: "W" of the paper's Figure 6.
    public static func identityKernel(_ layer: DOConvLayer) -> Tensor {
        guard layer.d != nil else { return layer.foldedKernel() }
        let g = layer.geometry
        var identity = [Float](repeating: 0, count: g.dCount)
        IdentityOffset.add(to: &identity, layout: layer.layout, geometry: g)
        // Same geometry and W as a layer that was accepted, so this cannot fail.
        let plain = try! DOConvLayer(layout: layer.layout, geometry: g, d: identity, w: layer.w.array)
        return plain.foldedKernel()
    }

    /// The paper's Figure 6 map: H[m][n] = sum over output channels o and group-local input
    /// channels c of |W'[o, c, m, n] - W[o, c, m, n]|, with W' the real folded kernel and W
    /// the kernel with D = I (`identityKernel`). M rows of N values; all zero when D = I.
    public static func heatMap(_ layer: DOConvLayer) -> [[Double]] {
        let g = layer.geometry
        var map = [[Double]](repeating: [Double](repeating: 0, count: g.kernelWidth), count: g.kernelHeight)
        guard layer.d != nil else { return map }
        let folded = layer.foldedKernel().values
        let plain = identityKernel(layer).values
        let area = g.kernelArea
        for base in stride(from: 0, to: folded.count, by: area) {
            for k in 0..<area {
                map[k / g.kernelWidth][k % g.kernelWidth] += abs(Double(folded[base + k]) - Double(plain[base + k]))
            }
        }
        return map
    }

    /// Parameters the model stores for the layer before folding: D (when present) and W.
    public static func trainedParameters(_ layer: DOConvLayer) -> Int {
        (layer.d == nil ? 0 : layer.geometry.dCount) + layer.geometry.wCount
    }

    /// Multiply-accumulates per output position (one output pixel, all output channels) of the
    /// folded conv: Cout * Cin/g * M * N.
    public static func macsPerOutputPosition(_ geometry: DOConvGeometry) -> Int {
        geometry.kernelCount
    }

    /// Multiply-accumulates per output position as the model computes the layer before folding.
    /// Kernel composition runs the same conv as the folded model (composing the kernel is a
    /// per-inference cost, not per position); feature composition runs a depthwise conv into
    /// Cin * Dmul features (Cin * Dmul * M * N) and a 1x1 conv over them (Cout * Cin/g * Dmul).
    public static func macsPerOutputPositionUnfolded(_ layer: DOConvLayer, form: DOConvForm) -> Int {
        let g = layer.geometry
        switch form {
        case .kernelComposition: return g.kernelCount
        case .featureComposition: return g.dCount + g.wCount
        }
    }
}
