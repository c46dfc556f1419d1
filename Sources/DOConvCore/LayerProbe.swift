/// The outcome of probing one folded layer.
public struct ProbeReport: Equatable, Sendable {
    /// Worst |feature route - kernel route| over all outputs, divided by the largest |feature route|.
    public var relativeError: Double
    /// Worst |feature route - kernel route|.
    public var absoluteError: Double
}

/// Checks a folded kernel against the layer it came from without using the fold.
///
/// A conv output pixel is a function of one input patch (Cin x M x N), so probing random
/// patches is a convolution evaluated at random positions. For each patch the layer is
/// computed two ways, in float64:
/// - feature composition (paper Fig. 3a): each input channel's patch is first mapped by D
///   to Dmul features, which W then combines;
/// - a direct convolution of the patch by the folded kernel.
///
/// The cost is one read of W and of the kernel: both routes are dot products over
/// contiguous rows, every patch is evaluated in the same pass, and large layers are split
/// over the cores by output channel.
public enum LayerProbe {
    /// Probes `kernel` (OIHW values, as stored) against `layer` with `patches` random patches.
    public static func compare(layer: DOConvLayer, kernel: [Float], patches: Int = 2, seed: UInt64 = 0x5EED) -> ProbeReport {
        kernel.withUnsafeBufferPointer { compare(layer: layer, kernel: $0, patches: patches, seed: seed) }
    }

    /// Probes `kernel` (OIHW values, as stored) against `layer` with `patches` random patches,
    /// reading the kernel where it lies.
    public static func compare(layer: DOConvLayer, kernel: UnsafeBufferPointer<Float>, patches: Int = 2, seed: UInt64 = 0x5EED,
                               maxThreads: Int = ParallelWork.defaultThreads) -> ProbeReport {
        let g = layer.geometry
        precondition(kernel.count == g.kernelCount, "kernel does not match the layer geometry")
        let probe = ProbePatches(geometry: g, count: max(1, patches), seed: seed)
        let routes: ProbeRoutes
        if isCanonical(layer) {
            routes = ProbeRoutes.canonical(layer: layer, kernel: kernel, patches: probe, maxThreads: maxThreads)
        } else {
            routes = ProbeRoutes.general(layer: layer, kernel: kernel, patches: probe)
        }
        return routes.report
    }

    /// Probes a float64 layer in float64: `d` (D + I as its layout stores it; nil for a 1x1
    /// layer) and `w` read exactly, against `kernel` (OIHW, as stored).
    public static func compare(layout: DOConvLayout, geometry g: DOConvGeometry, d: [Double]?, w: [Double], kernel: [Double],
                               patches: Int = 2, seed: UInt64 = 0x5EED) -> ProbeReport {
        precondition(kernel.count == g.kernelCount && w.count == g.wCount, "kernel or W does not match the layer geometry")
        let probe = ProbePatches(geometry: g, count: max(1, patches), seed: seed)
        return ProbeRoutes.general(layout: layout, geometry: g, d: d.map { d in { d[$0] } }, w: { w[$0] }, kernel: { kernel[$0] }, patches: probe).report
    }

    /// True when the D row the framework pairs with every (o, c) is the conv's real input
    /// channel, so each channel's features can be computed once per patch. Always so for
    /// groups = 1; reshapes that reinterpret memory (some grouped layers) break it.
    static func isCanonical(_ layer: DOConvLayer) -> Bool {
        let g = layer.geometry
        if g.groups == 1 { return true }
        for o in 0..<g.outChannels {
            let first = (o / g.outChannelsPerGroup) * g.inChannelsPerGroup
            for c in 0..<g.inChannelsPerGroup where ProbeFormula(layout: layer.layout, geometry: g).pair(output: o, localInput: c).channel != first + c { return false }
        }
        return true
    }
}

/// Random input patches (Cin x MN each, uniform in [-1, 1)), drawn in order from the seed.
struct ProbePatches {
    let count: Int
    /// values[p * Cin * MN + c * MN + m].
    let values: [Double]
    let size: Int

    init(geometry g: DOConvGeometry, count: Int, seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        self.count = count
        size = g.inChannels * g.kernelArea
        values = (0..<count * size).map { _ in Double.random(in: -1..<1, using: &random) }
    }
}

/// Both routes' outputs for every patch: viaFeatures[p * Cout + o], viaKernel[p * Cout + o].
struct ProbeRoutes {
    var viaFeatures: [Double]
    var viaKernel: [Double]
    let outputs: Int
    let patches: Int

    init(outputs: Int, patches: Int) {
        self.outputs = outputs
        self.patches = patches
        viaFeatures = [Double](repeating: 0, count: outputs * patches)
        viaKernel = [Double](repeating: 0, count: outputs * patches)
    }

    /// Worst error over all patches; relative to each patch's largest feature-route output.
    var report: ProbeReport {
        var worst = ProbeReport(relativeError: 0, absoluteError: 0)
        for p in 0..<patches {
            var scale = 0.0
            var diff = 0.0
            for o in 0..<outputs {
                let delta = abs(viaFeatures[p * outputs + o] - viaKernel[p * outputs + o])
                // A NaN anywhere is a failure, not something max() may silently drop.
                if delta.isNaN { return ProbeReport(relativeError: .nan, absoluteError: .nan) }
                scale = max(scale, abs(viaFeatures[p * outputs + o]))
                diff = max(diff, delta)
            }
            worst.absoluteError = max(worst.absoluteError, diff)
            worst.relativeError = max(worst.relativeError, scale > 0 ? diff / scale : (diff > 0 ? .infinity : 0))
        }
        return worst
    }

    /// Layers whose D rows are the real input channels: features once per channel and
    /// patch, then two dot products per output channel over contiguous rows.
    static func canonical(layer: DOConvLayer, kernel: UnsafeBufferPointer<Float>, patches: ProbePatches, maxThreads: Int) -> ProbeRoutes {
        let g = layer.geometry
        let (mn, dmul, cin, cout) = (g.kernelArea, g.depthMultiplier, g.inChannels, g.outChannels)
        let features = ProbeFeatures.compute(layer: layer, patches: patches)
        var routes = ProbeRoutes(outputs: cout, patches: patches.count)
        let threads = ParallelWork.threads(forMultiplyAdds: (g.wCount + g.kernelCount) * patches.count, max: maxThreads)
        let (ipg, opg) = (g.inChannelsPerGroup, g.outChannelsPerGroup)
        guard let kp = kernel.baseAddress else { return routes }
        var viaKernel = routes.viaKernel
        var viaFeatures = routes.viaFeatures
        features.withUnsafeBufferPointer { f in
            patches.values.withUnsafeBufferPointer { x in
                viaKernel.withUnsafeMutableBufferPointer { viaKernel in
                    viaFeatures.withUnsafeMutableBufferPointer { viaFeatures in
                        layer.w.withUnsafeBytes { wBytes in
                            guard let w = wBytes.baseAddress else { return }
                            ParallelWork.forEachSlice(of: cout, count: threads) { slice in
                                // Kernel route: b[o] = sum over (c, m) of K[o, c, m] * patch[group input c, m].
                                DotProducts.rows(UnsafeRawPointer(kp), rowLength: ipg * mn, slice: slice,
                                                 against: x, patchStride: patches.size, patchCount: patches.count,
                                                 offset: { o in (o / opg) * ipg * mn }, into: viaKernel, outputs: cout)
                                if layer.layout == .pytorch {
                                    // W[o, c, s] is contiguous per o, and so are the group's features.
                                    DotProducts.rows(w, rowLength: ipg * dmul, slice: slice,
                                                     against: f, patchStride: cin * dmul, patchCount: patches.count,
                                                     offset: { o in (o / opg) * ipg * dmul }, into: viaFeatures, outputs: cout)
                                }
                            }
                            if layer.layout == .keras {
                                KerasFeatureRoute.accumulate(w: w, geometry: g, features: f, patches: patches.count, into: viaFeatures, threads: threads)
                            }
                        }
                    }
                }
            }
        }
        routes.viaKernel = viaKernel
        routes.viaFeatures = viaFeatures
        return routes
    }

    /// Any layer, pairing each (o, c) with the D row the framework's reshapes give it.
    /// Features are computed per (o, c): as costly as a fold, but only grouped layers whose
    /// reshapes reinterpret memory need it, and those are small.
    static func general(layer: DOConvLayer, kernel: UnsafeBufferPointer<Float>, patches: ProbePatches) -> ProbeRoutes {
        let (w, d) = (layer.w, layer.d)
        return general(layout: layer.layout, geometry: layer.geometry, d: d.map { d in { Double(d[$0]) } }, w: { Double(w[$0]) },
                       kernel: { Double(kernel[$0]) }, patches: patches)
    }

    /// The two routes by the framework's formula (`ProbeFormula`), reading D + I, W and the
    /// kernel through their flat indexes; no D is the identity.
    static func general(layout: DOConvLayout, geometry g: DOConvGeometry, d: ((Int) -> Double)?, w: (Int) -> Double,
                        kernel: (Int) -> Double, patches: ProbePatches) -> ProbeRoutes {
        let (mn, dmul, inPerGroup) = (g.kernelArea, g.depthMultiplier, g.inChannelsPerGroup)
        let formula = ProbeFormula(layout: layout, geometry: g)
        var routes = ProbeRoutes(outputs: g.outChannels, patches: patches.count)
        for p in 0..<patches.count {
            let base = p * patches.size
            for o in 0..<g.outChannels {
                var a = 0.0
                var b = 0.0
                for c in 0..<inPerGroup {
                    let channel = (o / g.outChannelsPerGroup) * inPerGroup + c
                    let (i, row) = formula.pair(output: o, localInput: c)
                    for s in 0..<dmul {
                        var feature = 0.0
                        for m in 0..<mn {
                            let dt = d.map { $0(formula.dIndex(channel: i, m: m, s: s)) } ?? (m == s ? 1 : 0)
                            feature += dt * patches.values[base + channel * mn + m]
                        }
                        a += w(formula.wIndex(row: row, channel: i, s: s)) * feature
                    }
                    let k = (o * inPerGroup + c) * mn
                    for m in 0..<mn { b += kernel(k + m) * patches.values[base + channel * mn + m] }
                }
                routes.viaFeatures[p * g.outChannels + o] = a
                routes.viaKernel[p * g.outChannels + o] = b
            }
        }
        return routes
    }
}

/// The frameworks' composition written out for the probe, from FORMATS.md, apart from the
/// fold's kernels and the layer type:
/// - PyTorch: E = einsum('ims,ois->oim', D + I (Cin, MN, Dmul), W viewed as (Cout/g, Cin, Dmul)),
///   viewed as the kernel (Cout, Cin/g, M, N);
/// - Keras: E = einsum('msi,sio->mio', D + I (MN, Dmul, Cin), W viewed as (Dmul, Cin, Cout/g)),
///   viewed as (M, N, Cin/g, Cout).
/// The views only reinterpret memory, so kernel element (o, c, m) is the E element at the
/// same flat position, which names its einsum channel i and W row o'.
struct ProbeFormula {
    let layout: DOConvLayout
    let geometry: DOConvGeometry

    /// (einsum channel i, W row o') of the conv's output o and group-local input c.
    func pair(output o: Int, localInput c: Int) -> (channel: Int, row: Int) {
        let g = geometry
        switch layout {
        case .pytorch:
            // Kernel flat (o * Cin/g + c) * MN + m = E flat (o' * Cin + i) * MN + m.
            let flat = o * g.inChannelsPerGroup + c
            return (flat % g.inChannels, flat / g.inChannels)
        case .keras:
            // Kernel flat (m * Cin/g + c) * Cout + o = E flat (m * Cin + i) * Cout/g + o'.
            let flat = c * g.outChannels + o
            return (flat / g.outChannelsPerGroup, flat % g.outChannelsPerGroup)
        }
    }

    /// W's flat index of (row o', channel i, s) in the einsum's view of W.
    func wIndex(row: Int, channel i: Int, s: Int) -> Int {
        let g = geometry
        switch layout {
        case .pytorch: return (row * g.inChannels + i) * g.depthMultiplier + s
        case .keras: return (s * g.inChannels + i) * g.outChannelsPerGroup + row
        }
    }

    /// D's flat index of (channel i, m, s).
    func dIndex(channel i: Int, m: Int, s: Int) -> Int {
        let g = geometry
        switch layout {
        case .pytorch: return (i * g.kernelArea + m) * g.depthMultiplier + s
        case .keras: return (m * g.depthMultiplier + s) * g.inChannels + i
        }
    }
}

/// features[p * Cin * Dmul + c * Dmul + s] = sum over m of (D + I)[c, m, s] * patch_p[c, m]:
/// each input channel's patch mapped by its own D (canonical layers only). One pass over D
/// serves every patch; for depthwise layers D is the largest tensor of the layer.
enum ProbeFeatures {
    static func compute(layer: DOConvLayer, patches: ProbePatches) -> [Double] {
        let g = layer.geometry
        let (mn, dmul, cin) = (g.kernelArea, g.depthMultiplier, g.inChannels)
        let count = patches.count
        var features = [Double](repeating: 0, count: count * cin * dmul)
        features.withUnsafeMutableBufferPointer { f in
            patches.values.withUnsafeBufferPointer { x in
                guard let d = layer.d else {
                    // No D: the identity, so feature (c, s) is the patch value (c, m = s).
                    for p in 0..<count {
                        for c in 0..<cin {
                            for s in 0..<dmul where s < mn { f[(p * cin + c) * dmul + s] = x[p * patches.size + c * mn + s] }
                        }
                    }
                    return
                }
                d.withUnsafeBytes { raw in
                    guard let dp = raw.baseAddress else { return }
                    // D's offset of (c, m, s), hoisted out of the loops per layout.
                    let (cStride, mStride, sStride) = layer.layout == .pytorch ? (mn * dmul, dmul, 1) : (1, dmul * cin, cin)
                    for c in 0..<cin {
                        for m in 0..<mn {
                            let row = dp + (c * cStride + m * mStride) * 4
                            for p in 0..<count {
                                let weight = x[p * patches.size + c * mn + m]
                                let out = f.baseAddress! + (p * cin + c) * dmul
                                var s = 0
                                if sStride == 1 {
                                    // PyTorch's D rows are contiguous over s: four at a time.
                                    let w = SIMD4<Double>(repeating: weight)
                                    while s + 4 <= dmul {
                                        let d = SIMD4<Double>(row.loadUnaligned(fromByteOffset: s * 4, as: SIMD4<Float>.self))
                                        let o = UnsafeMutableRawPointer(out + s)
                                        o.storeBytes(of: o.loadUnaligned(as: SIMD4<Double>.self) + d * w, as: SIMD4<Double>.self)
                                        s += 4
                                    }
                                }
                                while s < dmul {
                                    out[s] += Double(row.loadUnaligned(fromByteOffset: s * sStride * 4, as: Float.self)) * weight
                                    s += 1
                                }
                            }
                        }
                    }
                }
            }
        }
        return features
    }
}

/// Float32 rows dotted with float64 vectors, every patch in one pass over the row.
enum DotProducts {
    typealias Doubles = SIMD4<Double>

    /// For each o in `slice`: out[p * outputs + o] = row o of `rows` (float32, `rowLength`
    /// long, possibly unaligned) . vectors[p * patchStride + offset(o) ..< + rowLength].
    @inline(__always)
    static func rows(_ rows: UnsafeRawPointer, rowLength: Int, slice: Range<Int>,
                     against vectors: UnsafeBufferPointer<Double>, patchStride: Int, patchCount: Int,
                     offset: (Int) -> Int, into out: UnsafeMutableBufferPointer<Double>, outputs: Int) {
        let v = vectors.baseAddress!
        var p = 0
        while p < patchCount {
            // Patches in pairs, so each loaded row element feeds two multiply-adds; an odd
            // last patch is paired with itself.
            let q = min(p + 1, patchCount - 1)
            for o in slice {
                let row = rows + o * rowLength * 4
                let start = offset(o)
                let (a, b) = pair(row, rowLength, v + p * patchStride + start, v + q * patchStride + start)
                out[p * outputs + o] = a
                out[q * outputs + o] = b
            }
            p += 2
        }
    }

    @inline(__always)
    static func pair(_ row: UnsafeRawPointer, _ count: Int, _ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>) -> (Double, Double) {
        var ax = Doubles(), ay = Doubles()
        var k = 0
        while k + 4 <= count {
            let r = Doubles(row.loadUnaligned(fromByteOffset: k * 4, as: SIMD4<Float>.self))
            ax += r * UnsafeRawPointer(x + k).loadUnaligned(as: Doubles.self)
            ay += r * UnsafeRawPointer(y + k).loadUnaligned(as: Doubles.self)
            k += 4
        }
        var sx = ax.sum(), sy = ay.sum()
        while k < count {
            let r = Double(row.loadUnaligned(fromByteOffset: k * 4, as: Float.self))
            sx += r * x[k]
            sy += r * y[k]
            k += 1
        }
        return (sx, sy)
    }
}

/// The feature route for Keras's W (Dmul, Cin/g, Cout), whose contiguous axis is the
/// output channel: a[o] += W[s, c, o] * feature[channel of (o, c), s], as row updates.
enum KerasFeatureRoute {
    static func accumulate(w: UnsafeRawPointer, geometry g: DOConvGeometry, features f: UnsafeBufferPointer<Double>, patches: Int,
                           into a: UnsafeMutableBufferPointer<Double>, threads: Int) {
        let (dmul, cin, cout) = (g.depthMultiplier, g.inChannels, g.outChannels)
        let (ipg, opg) = (g.inChannelsPerGroup, g.outChannelsPerGroup)
        ParallelWork.forEachSlice(of: cout, count: threads) { slice in
            guard !slice.isEmpty else { return }
            for p in 0..<patches {
                let out = a.baseAddress! + p * cout
                let features = f.baseAddress! + p * cin * dmul
                for s in 0..<dmul {
                    for c in 0..<ipg {
                        let row = w + ((s * ipg + c) * cout) * 4
                        for group in (slice.lowerBound / opg)...((slice.upperBound - 1) / opg) {
                            let coefficient = features[(group * ipg + c) * dmul + s]
                            for o in max(slice.lowerBound, group * opg)..<min(slice.upperBound, (group + 1) * opg) {
                                out[o] += Double(row.loadUnaligned(fromByteOffset: o * 4, as: Float.self)) * coefficient
                            }
                        }
                    }
                }
            }
        }
    }
}
