/// The fold written as the frameworks write it: a plain einsum loop, then the reshapes
/// (and, for Keras, the transpose to OIHW). Slow and obvious; the tests hold the
/// vectorized kernel to it.
public enum ScalarFold {
    /// The layer's composite kernel in OIHW order (Cout, Cin/g, M, N).
    public static func kernel(of layer: DOConvLayer) -> Tensor {
        let g = layer.geometry
        let (mn, dmul, cin) = (g.kernelArea, g.depthMultiplier, g.inChannels)
        let oihw = [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth]
        switch layer.layout {
        case .pytorch:
            // einsum('ims,ois->oim', D, W viewed as (Cout/g, Cin, Dmul)), then reshape.
            let outPerGroup = g.outChannelsPerGroup
            var e = [Float](repeating: 0, count: g.kernelCount)
            for o in 0..<outPerGroup {
                for i in 0..<cin {
                    for m in 0..<mn {
                        var sum: Float = 0
                        for s in 0..<dmul {
                            let dv: Float = layer.d.map { $0[(i * mn + m) * dmul + s] } ?? (m == s ? 1 : 0)
                            sum += dv * layer.w[(o * cin + i) * dmul + s]
                        }
                        e[(o * cin + i) * mn + m] = sum
                    }
                }
            }
            return try! Tensor(shape: oihw, values: e) // counts equal by construction
        case .keras:
            // einsum('msi,sio->mio', D, W viewed as (Dmul, Cin, Cout/g)), reshape to HWIO, transpose.
            let outPerGroup = g.outChannelsPerGroup
            var e = [Float](repeating: 0, count: g.kernelCount)
            for m in 0..<mn {
                for i in 0..<cin {
                    for o in 0..<outPerGroup {
                        var sum: Float = 0
                        for s in 0..<dmul {
                            let dv: Float = layer.d.map { $0[(m * dmul + s) * cin + i] } ?? (m == s ? 1 : 0)
                            sum += dv * layer.w[(s * cin + i) * outPerGroup + o]
                        }
                        e[(m * cin + i) * outPerGroup + o] = sum
                    }
                }
            }
            let hwio = try! Tensor(shape: [g.kernelHeight, g.kernelWidth, g.inChannelsPerGroup, g.outChannels], values: e)
            return try! hwio.transposed([3, 2, 0, 1])
        }
    }
}
