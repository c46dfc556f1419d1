import DOConvCore

/// The DO-Conv kernel recomputed from D and W in float64, by the plainest loops: the
/// framework's einsum, then its reshape (a reinterpretation of the flat memory), then for
/// Keras the transpose HWIO -> OIHW. Written apart from the fold's kernels (ScalarFold,
/// VectorizedFold) so that a mistake there is not repeated here.
package enum NaiveFold {
    /// D + I, element (channel, m, s) as the layout stores it; the identity when D is absent.
    package static func dValue(_ layer: DOConvLayer, channel i: Int, m: Int, s: Int) -> Double {
        let g = layer.geometry
        guard let d = layer.d else { return m == s ? 1 : 0 }
        switch layer.layout {
        case .pytorch: return Double(d[(i * g.kernelArea + m) * g.depthMultiplier + s]) // (Cin, MN, Dmul)
        case .keras: return Double(d[(m * g.depthMultiplier + s) * g.inChannels + i])     // (MN, Dmul, Cin)
        }
    }

    /// W viewed as the einsum operand: PyTorch (Cout/g, Cin, Dmul), Keras (Dmul, Cin, Cout/g).
    package static func wrValue(_ layer: DOConvLayer, outGroup o: Int, channel i: Int, s: Int) -> Double {
        let g = layer.geometry
        switch layer.layout {
        case .pytorch: return Double(layer.w[(o * g.inChannels + i) * g.depthMultiplier + s])
        case .keras: return Double(layer.w[(s * g.inChannels + i) * g.outChannelsPerGroup + o])
        }
    }

    /// D + I as (Cin, MN, Dmul) in float64, whatever the layout stores (small: W, the large
    /// operand, is read in place through its layout).
    package static func dOperand(_ layer: DOConvLayer) -> [Double] {
        let g = layer.geometry
        let (mn, dmul, cin) = (g.kernelArea, g.depthMultiplier, g.inChannels)
        var d = [Double](repeating: 0, count: cin * mn * dmul)
        for i in 0..<cin { for m in 0..<mn { for s in 0..<dmul { d[(i * mn + m) * dmul + s] = dValue(layer, channel: i, m: m, s: s) } } }
        return d
    }

    /// The einsum result E, flat: PyTorch 'ims,ois->oim' as (Cout/g, Cin, MN); Keras
    /// 'msi,sio->mio' as (MN, Cin, Cout/g).
    package static func einsum(_ layer: DOConvLayer) -> [Double] {
        let g = layer.geometry
        let (mn, dmul, cin, og) = (g.kernelArea, g.depthMultiplier, g.inChannels, g.outChannelsPerGroup)
        let d = dOperand(layer)
        let w = layer.w
        var e = [Double](repeating: 0, count: og * cin * mn)
        let pytorch = layer.layout == .pytorch
        var row = [Double](repeating: 0, count: dmul)
        d.withUnsafeBufferPointer { d in
            row.withUnsafeMutableBufferPointer { row in
                e.withUnsafeMutableBufferPointer { e in
                    for o in 0..<og {
                        for i in 0..<cin {
                            for s in 0..<dmul { row[s] = Double(w[pytorch ? (o * cin + i) * dmul + s : (s * cin + i) * og + o]) }
                            for m in 0..<mn {
                                let dRow = (i * mn + m) * dmul
                                var sum = 0.0
                                for s in 0..<dmul { sum += d[dRow + s] * row[s] }
                                e[pytorch ? (o * cin + i) * mn + m : (m * cin + i) * og + o] = sum
                            }
                        }
                    }
                }
            }
        }
        return e
    }

    /// The composite kernel in OIHW (Cout, Cin/g, M, N), float64.
    package static func kernel(_ layer: DOConvLayer) -> [Double] {
        let g = layer.geometry
        let e = einsum(layer)
        switch layer.layout {
        case .pytorch:
            return e // reshape to (Cout, Cin/g, M, N) keeps the flat order
        case .keras:
            // Reshape to HWIO (M, N, Cin/g, Cout) keeps the flat order; transpose [3, 2, 0, 1].
            return oihw(fromHWIO: e, height: g.kernelHeight, width: g.kernelWidth, inPerGroup: g.inChannelsPerGroup, out: g.outChannels)
        }
    }

    /// A kernel laid out HWIO (M, N, Cin/g, Cout), transposed to OIHW (Cout, Cin/g, M, N).
    package static func oihw(fromHWIO e: [Double], height h: Int, width w: Int, inPerGroup ci: Int, out co: Int) -> [Double] {
        var k = [Double](repeating: 0, count: e.count)
        for a in 0..<h {
            for b in 0..<w {
                for c in 0..<ci {
                    for o in 0..<co { k[((o * ci + c) * h + a) * w + b] = e[((a * w + b) * ci + c) * co + o] }
                }
            }
        }
        return k
    }

    /// For output channel `o` and group-local input `c` of the conv: the einsum's (D channel,
    /// W output row) that the reshapes pair with it, derived from the flat positions.
    package static func einsumPair(_ layer: DOConvLayer, output o: Int, localInput c: Int) -> (channel: Int, outGroup: Int) {
        let g = layer.geometry
        switch layer.layout {
        case .pytorch:
            // K[o, c, m] = E_flat[(o * Cin/g + c) * MN + m] = E[o', i, m].
            let row = o * g.inChannelsPerGroup + c
            return (row % g.inChannels, row / g.inChannels)
        case .keras:
            // HWIO[m, c, o] = E_flat[(m * Cin/g + c) * Cout + o] = E[m, i, o'].
            let row = c * g.outChannels + o
            return (row / g.outChannelsPerGroup, row % g.outChannelsPerGroup)
        }
    }

    /// Random patches through the layer two ways, in float64: feature composition (each
    /// input channel's patch mapped by its D row to Dmul features, then combined by W), and a
    /// direct convolution of the patch by `kernel` (OIHW). `scale` multiplies each output
    /// channel (a fused BatchNormalization), applied to the feature route.
    package static func probe(_ layer: DOConvLayer, kernel: [Double], scale: [Double]?, patches: Int, seed: UInt64, tolerance: Double) -> ErrorStats {
        let g = layer.geometry
        let (mn, dmul, inPerGroup, outPerGroup, cin) = (g.kernelArea, g.depthMultiplier, g.inChannelsPerGroup, g.outChannelsPerGroup, g.inChannels)
        // D + I in float64 (small); W is read in place, through its layout.
        let d = dOperand(layer)
        let pytorch = layer.layout == .pytorch
        let w = layer.w
        var random = SeededGenerator(seed: seed)
        var stats = ErrorStats(tolerance: tolerance)
        for p in 0..<max(1, patches) {
            let patch = (0..<(cin * mn)).map { _ in Double.random(in: -1...1, using: &random) }
            if g.groups == 1 {
                let (viaFeatures, viaKernel) = ungroupedRoutes(layer, d: d, kernel: kernel, scale: scale, patch: patch)
                stats.add(expected: viaFeatures, actual: viaKernel, shape: [g.outChannels], context: "patch \(p + 1)")
                continue
            }
            // The Dmul features of patch channel `real` through D's channel `i`: the same pair
            // recurs for many output channels, so each is computed once.
            var features = [Double](repeating: .nan, count: 0)
            var known: [Int: Int] = [:]
            // Ungrouped layers pair D's channel i with patch channel i: a plain array then.
            var own = [Int](repeating: -1, count: cin)
            func feature(_ i: Int, _ real: Int) -> Int {
                if i == real, own[i] >= 0 { return own[i] }
                if i != real, let at = known[i * cin + real] { return at }
                let at = features.count
                for s in 0..<dmul {
                    var sum = 0.0
                    for m in 0..<mn { sum += d[(i * mn + m) * dmul + s] * patch[real * mn + m] }
                    features.append(sum)
                }
                if i == real { own[i] = at } else { known[i * cin + real] = at }
                return at
            }
            var viaFeatures = [Double](repeating: 0, count: g.outChannels)
            var viaKernel = [Double](repeating: 0, count: g.outChannels)
            for o in 0..<g.outChannels {
                let group = o / outPerGroup
                var sum = 0.0
                var direct = 0.0
                for c in 0..<inPerGroup {
                    let real = group * inPerGroup + c
                    let (i, row) = einsumPair(layer, output: o, localInput: c)
                    let at = feature(i, real)
                    for s in 0..<dmul {
                        let weight = Double(w[pytorch ? (row * cin + i) * dmul + s : (s * cin + i) * outPerGroup + row])
                        sum += weight * features[at + s]
                    }
                    for m in 0..<mn { direct += kernel[(o * inPerGroup + c) * mn + m] * patch[real * mn + m] }
                }
                viaFeatures[o] = sum * (scale?[o] ?? 1)
                viaKernel[o] = direct
            }
            stats.add(expected: viaFeatures, actual: viaKernel, shape: [g.outChannels], context: "patch \(p + 1)")
        }
        return stats
    }

    /// `probe`'s two routes for one patch of an ungrouped layer, where the reshapes pair
    /// output o and input c with W's row o and D's channel c in both layouts: the features of
    /// every channel once, then one dot product per output channel and route.
    package static func ungroupedRoutes(_ layer: DOConvLayer, d: [Double], kernel: [Double], scale: [Double]?, patch: [Double]) -> (features: [Double], kernel: [Double]) {
        let g = layer.geometry
        let (mn, dmul, cin, cout) = (g.kernelArea, g.depthMultiplier, g.inChannels, g.outChannels)
        var viaFeatures = [Double](repeating: 0, count: cout)
        var viaKernel = [Double](repeating: 0, count: cout)
        d.withUnsafeBufferPointer { d in
            patch.withUnsafeBufferPointer { x in
                // features[i * dmul + s] = sum over m of (D + I)[i, m, s] * patch[i, m].
                var features = [Double](repeating: 0, count: cin * dmul)
                features.withUnsafeMutableBufferPointer { f in
                    for i in 0..<cin {
                        for m in 0..<mn {
                            let value = x[i * mn + m]
                            for s in 0..<dmul { f[i * dmul + s] += d[(i * mn + m) * dmul + s] * value }
                        }
                    }
                }
                let w = layer.w
                features.withUnsafeBufferPointer { f in
                    viaFeatures.withUnsafeMutableBufferPointer { out in
                        switch layer.layout {
                        case .pytorch: // W (Cout, Cin, Dmul): row o against all features.
                            let n = cin * dmul
                            for o in 0..<cout {
                                var s0 = 0.0, s1 = 0.0
                                var j = 0
                                while j + 2 <= n {
                                    s0 += Double(w[o * n + j]) * f[j]
                                    s1 += Double(w[o * n + j + 1]) * f[j + 1]
                                    j += 2
                                }
                                if j < n { s0 += Double(w[o * n + j]) * f[j] }
                                out[o] = s0 + s1
                            }
                        case .keras: // W (Dmul, Cin, Cout): feature (i, s) scales row (s, i).
                            for i in 0..<cin {
                                for s in 0..<dmul {
                                    let value = f[i * dmul + s]
                                    let row = (s * cin + i) * cout
                                    for o in 0..<cout { out[o] += Double(w[row + o]) * value }
                                }
                            }
                        }
                        if let scale { for o in 0..<cout { out[o] *= scale[o] } }
                    }
                }
                kernel.withUnsafeBufferPointer { k in
                    for o in 0..<cout { viaKernel[o] = dot(k.baseAddress! + o * cin * mn, x.baseAddress!, cin * mn) }
                }
            }
        }
        return (viaFeatures, viaKernel)
    }

    /// sum of a[j] * b[j] over n elements, in four running sums.
    @inline(__always)
    package static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int) -> Double {
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        var j = 0
        while j + 4 <= n {
            s0 += a[j] * b[j]; s1 += a[j + 1] * b[j + 1]
            s2 += a[j + 2] * b[j + 2]; s3 += a[j + 3] * b[j + 3]
            j += 4
        }
        while j < n { s0 += a[j] * b[j]; j += 1 }
        return (s0 + s1) + (s2 + s3)
    }

    /// Random patches through two OIHW kernels of the same shape (a reference kernel and the
    /// folded one), for replacements with no DO-Conv layer to compose features from.
    package static func probe(reference: [Double], kernel: [Double], shape: [Int], patches: Int, seed: UInt64, tolerance: Double) -> ErrorStats {
        let outChannels = shape.first ?? 1
        let row = reference.count / max(outChannels, 1)
        var random = SeededGenerator(seed: seed)
        var stats = ErrorStats(tolerance: tolerance)
        for p in 0..<max(1, patches) {
            let patch = (0..<row).map { _ in Double.random(in: -1...1, using: &random) }
            var expected = [Double](repeating: 0, count: outChannels)
            var actual = [Double](repeating: 0, count: outChannels)
            for o in 0..<outChannels {
                for j in 0..<row {
                    expected[o] += reference[o * row + j] * patch[j]
                    actual[o] += kernel[o * row + j] * patch[j]
                }
            }
            stats.add(expected: expected, actual: actual, shape: [outChannels], context: "patch \(p + 1)")
        }
        return stats
    }
}
