import DOConvCore

/// A Gluon DO-Conv layer of a `.params` file: `<p>weight` (Cout, Cin/g, M, N) beside
/// `<p>D` (M*N, M*N, Cin), in any of the three namings (`0.weight`/`0.D`,
/// `conv0_weight`/`conv0_D`, `arg:conv0_weight`/`arg:conv0_D`).
public struct GluonLayer {
    public let weightName: String
    public let dName: String
    /// Positions of the weight and D in the list: the writer replaces and drops by
    /// position, so no name lookup can pick the wrong array.
    let weightIndex: Int
    let dIndex: Int
    public let dtype: MXNetDType
    public internal(set) var detected: DetectedLayer
}

/// Finds DO-Conv layers by name and shape. The kernel size comes from the weight, so no
/// option is needed; the Gluon layer supports only Dmul = M*N.
struct GluonLayerDetector {
    let list: NDArrayList
    /// `--only` / `--exclude`: the layers left are listed, not folded.
    var selection = LayerSelection()

    func detect() throws(MXNetError) -> (layers: [GluonLayer], rejected: [RejectedCandidate]) {
        let byName = Dictionary(list.arrays.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        var layers: [GluonLayer] = []
        var rejected: [RejectedCandidate] = []
        for (dIndex, d) in list.arrays.enumerated() where d.name.hasSuffix("D") {
            let prefix = String(d.name.dropLast())
            guard let weightIndex = byName[prefix + "weight"] else { continue }
            let weight = list.arrays[weightIndex]
            let name = Self.layerName(prefix)
            if let reason = selection.refusal(of: name) {
                rejected.append(.init(name: name, reason: reason, isDOConvLayer: true))
                continue
            }
            guard weight.shape.count == 4, d.shape.count == 3 else {
                rejected.append(.init(name: name, reason: "\(d.name) \(d.shape) beside \(weight.name) \(weight.shape): not a Gluon DO-Conv layer's (M*N, M*N, Cin) and (Cout, Cin/g, M, N)"))
                continue
            }
            let (cout, inPerGroup, m, n) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
            let (area, cin) = (m * n, d.shape[2])
            guard d.shape[0] == area, d.shape[1] == area, inPerGroup > 0, cin % inPerGroup == 0, cout % (cin / inPerGroup) == 0 else {
                rejected.append(.init(name: name, reason: "\(d.name) \(d.shape) does not fit \(weight.name) \(weight.shape): the Gluon layer's D is (M*N, M*N, Cin), Dmul = M*N only"))
                continue
            }
            guard let type = weight.dtype.elementType, d.dtype == weight.dtype else {
                rejected.append(.init(name: name, reason: "\(weight.name) and \(d.name) are not of one floating-point type"))
                continue
            }
            let geometry = DOConvGeometry(inChannels: cin, outChannels: cout, groups: cin / inPerGroup, kernelHeight: m, kernelWidth: n, depthMultiplier: area)
            do {
                var composed = try ElementCodec.decode(d.data, as: type, count: d.count)
                IdentityOffset.add(to: &composed, layout: .keras, geometry: geometry)
                let layer: DOConvLayer
                if geometry.groups == 1, type == .float32 {
                    // With one group the Gluon layer computes K[o, c, m] = sum_s (D + I)[m, s, c]
                    // weight[o, c, s]: the PyTorch layout's arithmetic with W the weight's own
                    // bytes, read in place, and D (small) transposed to (Cin, M*N, Dmul).
                    let w = try FloatValues(borrowing: weight.data, count: weight.count, owner: list.file)
                    layer = try DOConvLayer(layout: .pytorch, geometry: geometry, d: FloatValues(Self.channelsFirst(composed, area: area, cin: cin)), w: w)
                } else {
                    // The weight is OIHW; the Keras layout's W is (Dmul = M*N, Cin/g, Cout): the
                    // Gluon layer's transpose to (M, N, Cin/g, Cout), whose reshape for g > 1
                    // reinterprets that memory.
                    let oihw = try Tensor(shape: weight.shape, values: try ElementCodec.decode(weight.data, as: type, count: weight.count))
                    layer = try DOConvLayer(layout: .keras, geometry: geometry, d: composed, w: try oihw.transposed([2, 3, 1, 0]).values)
                }
                let detected = DetectedLayer(name: name, form: .kernelComposition, layer: layer, elementType: type, stride: [], dilation: [])
                layers.append(GluonLayer(weightName: weight.name, dName: d.name, weightIndex: weightIndex, dIndex: dIndex, dtype: weight.dtype, detected: detected))
            } catch {
                throw .inconsistentLayer(path: list.path, layer: name, reason: "\(error)")
            }
        }
        return (layers, rejected)
    }

    /// D (M*N, Dmul, Cin) as the PyTorch layout holds it, (Cin, M*N, Dmul).
    static func channelsFirst(_ d: [Float], area: Int, cin: Int) -> [Float] {
        var out = [Float](repeating: 0, count: d.count)
        for m in 0..<area {
            for s in 0..<area {
                for c in 0..<cin { out[(c * area + m) * area + s] = d[(m * area + s) * cin + c] }
            }
        }
        return out
    }

    /// "features.3." -> "features.3", "conv0_" -> "conv0", "arg:conv0_" -> "conv0".
    static func layerName(_ prefix: String) -> String {
        var name = prefix.hasPrefix("arg:") ? String(prefix.dropFirst(4)) : prefix
        if name.hasSuffix(".") || name.hasSuffix("_") { name.removeLast() }
        return name
    }
}
