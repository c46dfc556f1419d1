import DOConvCore
import DOConvMXNet
import DOConvVerify

/// A Gluon DO-Conv layer of ORIGINAL's `.params` list, as verify-equivalence reads it
/// itself (FORMATS.md), never through the fold's detector: `<p>weight` (Cout, Cin/g, M, N)
/// beside `<p>D` (M*N, M*N, Cin).
struct GluonOriginalLayer {
    let name: String
    let weight: NDArrayList.Array
    let d: NDArrayList.Array
    let outChannels: Int
    let inChannels: Int
    let groups: Int
    let kernelHeight: Int
    let kernelWidth: Int

    var description: String {
        let kind = groups == 1 ? "DO-Conv" : (groups == inChannels ? "DO-DConv" : "DO-GConv")
        let area = kernelHeight * kernelWidth
        return "\(kind) \(kernelHeight)x\(kernelWidth), groups \(groups), Dmul \(area) (gluon)"
    }
}

enum GluonLayerReading {
    /// Every `<p>D` with a 4-D float `<p>weight` of one element type beside it; one whose
    /// shapes disagree cannot have been folded, and is an error as in doconv-fold.
    static func layers(of list: NDArrayList, options: VerifyOptions) throws -> [GluonOriginalLayer] {
        var byName: [String: NDArrayList.Array] = [:]
        for array in list.arrays { byName[array.name] = array }
        var layers: [GluonOriginalLayer] = []
        for d in list.arrays where d.name.hasSuffix("D") {
            let prefix = String(d.name.dropLast())
            guard let weight = byName[prefix + "weight"] else { continue }
            // "features.3." -> "features.3", "conv0_" -> "conv0", "arg:conv0_" -> "conv0".
            var name = prefix.hasPrefix("arg:") ? String(prefix.dropFirst(4)) : prefix
            if name.hasSuffix(".") || name.hasSuffix("_") { name.removeLast() }
            guard options.selection.refusal(of: name) == nil else { continue }
            guard weight.shape.count == 4, d.shape.count == 3 else { continue }
            let (cout, perGroup, m, n) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
            let (area, cin) = (m * n, d.shape[2])
            guard d.shape[0] == area, d.shape[1] == area, perGroup > 0, cin % perGroup == 0, cout % (cin / perGroup) == 0,
                  [.float32, .float64, .float16, .bfloat16].contains(weight.dtype), weight.dtype == d.dtype else {
                throw VerifyError("\(list.path): layer '\(name)': \(d.name) \(d.shape) and \(weight.name) \(weight.shape) are not a Gluon DO-Conv layer's (M*N, M*N, Cin) and (Cout, Cin/g, M, N) of one float type")
            }
            layers.append(GluonOriginalLayer(name: name, weight: weight, d: d, outChannels: cout, inChannels: cin, groups: cin / perGroup,
                                             kernelHeight: m, kernelWidth: n))
        }
        return layers
    }

    /// The folded kernel in float64, OIHW, by the Gluon layer's own arithmetic written out:
    /// W' = transpose(weight, (2, 3, 1, 0)), (M, N, Cin/g, Cout); Wr = W' viewed as
    /// (M*N, Cin, Cout/g); Dt = D + I; K = einsum('msi,sio->mio', Dt, Wr) viewed as
    /// (M, N, Cin/g, Cout); the kernel is transpose(K, (3, 2, 0, 1)).
    static func kernel(of layer: GluonOriginalLayer) throws -> [Double] {
        let weight = try values(of: layer.weight)
        var dt = try values(of: layer.d)
        let (cout, cin, m, n) = (layer.outChannels, layer.inChannels, layer.kernelHeight, layer.kernelWidth)
        let (mn, perGroup, outPerGroup) = (m * n, cin / layer.groups, cout / layer.groups)
        for q in 0..<mn { for i in 0..<cin { dt[(q * mn + q) * cin + i] += 1 } } // I[m, s, i] = 1 where s == m
        // W' flat, (M, N, Cin/g, Cout).
        var wp = [Double](repeating: 0, count: weight.count)
        for o in 0..<cout {
            for c in 0..<perGroup {
                for mm in 0..<m {
                    for nn in 0..<n { wp[((mm * n + nn) * perGroup + c) * cout + o] = weight[((o * perGroup + c) * m + mm) * n + nn] }
                }
            }
        }
        // K flat: (M*N, Cin, Cout/g) is the same memory as (M, N, Cin/g, Cout).
        var k = [Double](repeating: 0, count: weight.count)
        for q in 0..<mn {
            for i in 0..<cin {
                for o in 0..<outPerGroup {
                    var sum = 0.0
                    for s in 0..<mn { sum += dt[(q * mn + s) * cin + i] * wp[(s * cin + i) * outPerGroup + o] }
                    k[(q * cin + i) * outPerGroup + o] = sum
                }
            }
        }
        return NaiveFold.oihw(fromHWIO: k, height: m, width: n, inPerGroup: perGroup, out: cout)
    }

    /// An array's values, exactly, as float64.
    static func values(of array: NDArrayList.Array) throws -> [Double] {
        guard let type = array.dtype.elementType else { throw VerifyError("array '\(array.name)' is not a float array") }
        return try StoredKernelCheck.doubles(array.data, count: array.count, type: type)
    }
}
