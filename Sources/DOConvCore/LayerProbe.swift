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
public enum LayerProbe {
    /// Probes `kernel` (OIHW values, as stored) against `layer` with `patches` random patches.
    public static func compare(layer: DOConvLayer, kernel: [Float], patches: Int = 2, seed: UInt64 = 0x5EED) -> ProbeReport {
        let g = layer.geometry
        precondition(kernel.count == g.kernelCount, "kernel does not match the layer geometry")
        let (mn, dmul, cin, inPerGroup) = (g.kernelArea, g.depthMultiplier, g.inChannels, g.inChannelsPerGroup)
        var random = SeededGenerator(seed: seed)

        // The real input channel of (o, c) and the D row the framework pairs with it.
        func realChannel(_ o: Int, _ c: Int) -> Int { (o / g.outChannelsPerGroup) * inPerGroup + c }
        var canonical = true
        outer: for o in 0..<g.outChannels {
            for c in 0..<inPerGroup where layer.dChannel(output: o, localInput: c) != realChannel(o, c) {
                canonical = false
                break outer
            }
        }

        var worst = ProbeReport(relativeError: 0, absoluteError: 0)
        var patch = [Double](repeating: 0, count: cin * mn)
        var features = [Double](repeating: 0, count: cin * dmul)
        var viaFeatures = [Double](repeating: 0, count: g.outChannels)
        var viaKernel = [Double](repeating: 0, count: g.outChannels)
        for _ in 0..<max(1, patches) {
            for k in patch.indices { patch[k] = Double.random(in: -1..<1, using: &random) }

            // features[i, s] = sum_m D[i, m, s] * patch[c, m], with c the channel D row i meets.
            func feature(dRow i: Int, channel c: Int, s: Int) -> Double {
                var sum = 0.0
                for m in 0..<mn { sum += Double(layer.dValue(channel: i, m: m, s: s)) * patch[c * mn + m] }
                return sum
            }
            if canonical {
                for c in 0..<cin { for s in 0..<dmul { features[c * dmul + s] = feature(dRow: c, channel: c, s: s) } }
            }
            for o in 0..<g.outChannels {
                var a = 0.0
                var b = 0.0
                for c in 0..<inPerGroup {
                    let channel = realChannel(o, c)
                    let dRow = layer.dChannel(output: o, localInput: c)
                    for s in 0..<dmul {
                        let f = canonical ? features[channel * dmul + s] : feature(dRow: dRow, channel: channel, s: s)
                        a += Double(layer.wValue(output: o, localInput: c, s: s)) * f
                    }
                    let k = (o * inPerGroup + c) * mn
                    for m in 0..<mn { b += Double(kernel[k + m]) * patch[channel * mn + m] }
                }
                viaFeatures[o] = a
                viaKernel[o] = b
            }
            var scale = 0.0
            var diff = 0.0
            for o in 0..<g.outChannels {
                let delta = abs(viaFeatures[o] - viaKernel[o])
                // A NaN anywhere is a failure, not something max() may silently drop.
                if delta.isNaN { return ProbeReport(relativeError: .nan, absoluteError: .nan) }
                scale = max(scale, abs(viaFeatures[o]))
                diff = max(diff, delta)
            }
            worst.absoluteError = max(worst.absoluteError, diff)
            worst.relativeError = max(worst.relativeError, scale > 0 ? diff / scale : (diff > 0 ? .infinity : 0))
        }
        return worst
    }
}
