/// The fold written as the frameworks write it: a plain einsum loop, then the reshapes
/// (and, for Keras, the transpose to OIHW). Slow and obvious; the tests hold the
/// vectorized kernel to it, and float64 layers fold through it in float64.
public enum ScalarFold {
    /// The layer's composite kernel in OIHW order (Cout, Cin/g, M, N).
    public static func kernel(of layer: DOConvLayer) -> Tensor {
        let g = layer.geometry
        let values = kernelValues(layout: layer.layout, geometry: g, d: layer.d.map(Array.init), w: Array(layer.w))
        return try! Tensor(shape: [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth], values: values) // counts equal by construction
    }

    /// The composite kernel, OIHW, of D (with the identity already added; nil for a 1x1
    /// layer) and W in `layout`, in the arithmetic of `T`: a float64 layer folds in float64.
    public static func kernelValues<T: BinaryFloatingPoint>(layout: DOConvLayout, geometry g: DOConvGeometry, d: [T]?, w: [T]) -> [T] {
        let (mn, dmul, cin, outPerGroup) = (g.kernelArea, g.depthMultiplier, g.inChannels, g.outChannelsPerGroup)
        var e = [T](repeating: 0, count: g.kernelCount)
        switch layout {
        case .pytorch:
            // einsum('ims,ois->oim', D, W viewed as (Cout/g, Cin, Dmul)), then reshape.
            for o in 0..<outPerGroup {
                for i in 0..<cin {
                    for m in 0..<mn {
                        var sum: T = 0
                        for s in 0..<dmul {
                            let dv: T = d.map { $0[(i * mn + m) * dmul + s] } ?? (m == s ? 1 : 0)
                            sum += dv * w[(o * cin + i) * dmul + s]
                        }
                        e[(o * cin + i) * mn + m] = sum
                    }
                }
            }
            return e
        case .keras:
            // einsum('msi,sio->mio', D, W viewed as (Dmul, Cin, Cout/g)), reshape to HWIO, transpose.
            for m in 0..<mn {
                for i in 0..<cin {
                    for o in 0..<outPerGroup {
                        var sum: T = 0
                        for s in 0..<dmul {
                            let dv: T = d.map { $0[(m * dmul + s) * cin + i] } ?? (m == s ? 1 : 0)
                            sum += dv * w[(s * cin + i) * outPerGroup + o]
                        }
                        e[(m * cin + i) * outPerGroup + o] = sum
                    }
                }
            }
            // e is HWIO (M, N, Cin/g, Cout) in memory: transpose to OIHW.
            let (perGroup, cout) = (g.inChannelsPerGroup, g.outChannels)
            var oihw = [T](repeating: 0, count: g.kernelCount)
            for q in 0..<mn {
                for c in 0..<perGroup {
                    for o in 0..<cout { oihw[(o * perGroup + c) * mn + q] = e[(q * perGroup + c) * cout + o] }
                }
            }
            return oihw
        }
    }
}

/// A float64 layer's operands read exactly: D + I as its layout stores it (nil for a 1x1
/// layer) and W. It folds and probes in float64, so a float64 model keeps its precision
/// (the float32 `DOConvLayer` would round both to about 1e-7).
public struct Float64Layer: Sendable {
    public let layout: DOConvLayout
    public let geometry: DOConvGeometry
    public let d: [Double]?
    public let w: [Double]

    public init(layout: DOConvLayout, geometry: DOConvGeometry, d: [Double]?, w: [Double]) throws(TensorError) {
        guard w.count == geometry.wCount, (d?.count ?? geometry.dCount) == geometry.dCount else {
            throw .inconsistentLayer("float64 D and W hold \(d?.count ?? 0) and \(w.count) values, the layer needs \(geometry.dCount) and \(geometry.wCount)")
        }
        self.layout = layout
        self.geometry = geometry
        self.d = d
        self.w = w
    }

    /// The composite kernel, OIHW, in float64.
    public func foldedKernel() -> [Double] { ScalarFold.kernelValues(layout: layout, geometry: geometry, d: d, w: w) }

    /// `kernel` (OIHW, as stored) probed against the layer in float64.
    public func probe(kernel: [Double], patches: Int, seed: UInt64) -> ProbeReport {
        LayerProbe.compare(layout: layout, geometry: geometry, d: d, w: w, kernel: kernel, patches: patches, seed: seed)
    }
}
