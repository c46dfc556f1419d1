import DOConvCore
import DOConvKeras
import DOConvVerify

/// A DOConv2D layer of ORIGINAL's Keras weights, as verify-equivalence reads it itself
/// (FORMATS.md), from ORIGINAL, its config and the user's flags; never through the fold's
/// detector or layout code, so that a detection or layout bug in the fold cannot hide itself.
package struct KerasOriginalLayer {
    package let name: String
    /// W, (Dmul, Cin/g, Cout).
    let kernel: KerasEquivalence.Entry
    /// D, (M*N, Dmul, Cin); absent for a 1x1 layer (Dmul 1).
    let d: KerasEquivalence.Entry?
    let inChannels: Int
    let outChannels: Int
    let groups: Int
    let depthMultiplier: Int
    let kernelHeight: Int
    let kernelWidth: Int

    /// The folded kernel as Keras stores a Conv2D's: (M, N, Cin/g, Cout).
    package var foldedShape: [Int] { [kernelHeight, kernelWidth, inChannels / groups, outChannels] }

    /// A DO-DConv's folded kernel as a DepthwiseConv2D stores it, (M, N, Cin, Cout/Cin): the
    /// same memory as Conv2D(groups=Cin)'s (M, N, 1, Cout). Nil for other layers.
    package var depthwiseShape: [Int]? {
        guard groups == inChannels, inChannels > 1, outChannels % inChannels == 0 else { return nil }
        return [kernelHeight, kernelWidth, inChannels, outChannels / inChannels]
    }

    var description: String {
        let kind = groups == 1 ? "DO-Conv" : (groups == inChannels ? "DO-DConv" : "DO-GConv")
        return "\(kind) \(kernelHeight)x\(kernelWidth), groups \(groups), Dmul \(depthMultiplier) (keras)"
    }
}

/// Which layer a dataset belongs to, in one file layout: the group under the weights root
/// (legacy files), or the name recorded in `vars/@name` (`.weights.h5`, keyed "@name" by
/// `entries(of:)`), else the config's layer at that class-named position.
struct KerasLayerNaming {
    let format: KerasFileFormat?
    let config: KerasModelConfig?
    /// The `layers/...` group name of each config layer, worked out once.
    let groupNames: [String]

    init(format: KerasFileFormat?, config: KerasModelConfig?) {
        self.format = format
        self.config = config
        groupNames = config.map { KerasNaming.weightPaths(classNames: $0.layers.map(\.className)) } ?? []
    }

    func layerName(ofKey key: String) -> String? {
        let parts = key.split(separator: "/").map(String.init)
        switch format {
        case .legacyFullModel?:
            return parts.count > 2 && parts[0] == "model_weights" ? parts[1] : nil
        case .legacyWeights?:
            return parts.count > 1 ? parts[0] : nil
        case .weightsH5?:
            guard parts.count > 2, parts[0] == "layers" else { return nil }
            if parts[1].hasPrefix("@") { return String(parts[1].dropFirst()) }
            guard let config else { return parts[1] }
            return groupNames.firstIndex(of: parts[1]).map { config.layers[$0].name }
        case nil:
            return nil
        }
    }
}

package enum KerasLayerReading {

    /// Every DOConv2D layer of ORIGINAL that `options` selects. A layer group is one when the
    /// config calls it DOConv2D, or (no config) when it holds a 3-D `kernel` and a 3-D `D`
    /// (`.weights.h5`: `vars/0` and the next 3-D variable), or it is named 1x1 by
    /// `--kernel-size`. A layer whose datasets disagree cannot have been folded: an error.
    static func layers(of entries: [KerasEquivalence.Entry], format: KerasFileFormat?, config: KerasModelConfig?,
                       options: VerifyOptions) throws -> [KerasOriginalLayer] {
        let declared = Dictionary(config?.layers.map { ($0.name, $0) } ?? [], uniquingKeysWith: { a, _ in a })
        // Datasets by their group, groups in file order.
        var groups: [String: [KerasEquivalence.Entry]] = [:]
        var order: [String] = []
        for entry in entries where !KerasEquivalence.isOptimizer(entry.path) {
            let group = KerasEquivalence.parentPath(entry.key)
            if groups[group] == nil { order.append(group) }
            groups[group, default: []].append(entry)
        }
        let naming = KerasLayerNaming(format: format, config: config)
        var layers: [KerasOriginalLayer] = []
        var seen = Set<String>()
        for group in order {
            let members = groups[group] ?? []
            guard let name = members.first.flatMap({ naming.layerName(ofKey: $0.key) }) else { continue }
            let layerConfig = declared[name]
            if let layerConfig, !layerConfig.isDOConv { continue }
            let (kernel, d) = doConvDatasets(members, vars: format == .weightsH5)
            guard let kernel else {
                if layerConfig != nil { throw VerifyError("DOConv2D layer '\(name)': ORIGINAL holds no 3-D kernel (Dmul, Cin/g, Cout) for it") }
                continue
            }
            let oneByOne = d == nil && (layerConfig != nil || options.kernelSizes[name] == [1, 1])
            guard d != nil || oneByOne else { continue }
            guard options.selection.refusal(of: name) == nil else { continue }
            guard seen.insert(name).inserted else {
                throw VerifyError("layer '\(name)' has more than one DOConv2D kernel in ORIGINAL; verify-equivalence reads one per layer")
            }
            layers.append(try layer(name: name, kernel: kernel, d: d, config: layerConfig, options: options))
        }
        return layers
    }

    /// The group's W and D: by name in legacy files ("kernel", "D", with or without ":0"),
    /// by position in `.weights.h5` (vars/0, then the first other 3-D variable). Float only.
    static func doConvDatasets(_ members: [KerasEquivalence.Entry], vars: Bool) -> (kernel: KerasEquivalence.Entry?, d: KerasEquivalence.Entry?) {
        let floats = members.filter { $0.values != nil && $0.shape.count == 3 }
        func base(_ entry: KerasEquivalence.Entry) -> String { KerasEquivalence.baseName(entry.key) }
        if vars {
            let kernel = floats.first { base($0) == "0" }
            let d = floats.filter { base($0) != "0" }.min { (Int(base($0)) ?? .max) < (Int(base($1)) ?? .max) }
            return (kernel, d)
        }
        return (floats.first { base($0) == "kernel" }, floats.first { base($0) == "D" })
    }

    /// One layer's geometry, from W's and D's shapes, the config and `--kernel-size`.
    package static func layer(name: String, kernel: KerasEquivalence.Entry, d: KerasEquivalence.Entry?, config: KerasModelConfig.Layer?,
                      options: VerifyOptions) throws -> KerasOriginalLayer {
        func disagree(_ reason: String) -> VerifyError { VerifyError("DOConv2D layer '\(name)': \(reason)") }
        let (dmul, perGroup, cout) = (kernel.shape[0], kernel.shape[1], kernel.shape[2])
        guard dmul > 0, perGroup > 0, cout > 0 else { throw disagree("kernel \(kernel.shape) is empty") }
        var (cin, area) = (perGroup * (config?.groups ?? 1), 1)
        if let d {
            guard d.shape[1] == dmul, d.shape[2] % perGroup == 0, d.shape[0] > 0 else {
                throw disagree("D \(d.shape) and kernel \(kernel.shape) are not a DOConv2D's (M*N, Dmul, Cin) and (Dmul, Cin/g, Cout)")
            }
            guard d.elementType == kernel.elementType else { throw disagree("D and the kernel differ in element type") }
            (cin, area) = (d.shape[2], d.shape[0])
        } else if dmul != 1 {
            throw disagree("without D the kernel must be (1, Cin/g, Cout), not \(kernel.shape)")
        }
        let groups = cin / perGroup
        guard cout % groups == 0 else { throw disagree("\(cout) filters do not split into \(groups) groups") }
        if let declared = config?.groups, declared != groups { throw disagree("the config says \(declared) groups, the datasets \(groups)") }
        if let filters = config?.filters, filters != cout { throw disagree("the config says \(filters) filters, the kernel \(cout)") }
        let (m, n) = try kernelSize(name: name, area: area, declared: config?.kernelSize, options: options)
        return KerasOriginalLayer(name: name, kernel: kernel, d: d, inChannels: cin, outChannels: cout, groups: groups,
                                  depthMultiplier: dmul, kernelHeight: m, kernelWidth: n)
    }

    /// M x N: the config's kernel_size, else `--kernel-size`, else the square root of M*N.
    static func kernelSize(name: String, area: Int, declared: [Int]?, options: VerifyOptions) throws -> (Int, Int) {
        try KernelSizeReading.size(layer: "DOConv2D layer '\(name)'", area: area, given: declared ?? options.kernelSizes[name],
                                   given: declared != nil ? "the config's kernel_size" : "--kernel-size",
                                   otherwise: "pass --kernel-size \(name)=MxN or --config")
    }

    /// D + I as stored, (M*N, Dmul, Cin), float64: I[m, s, i] = 1 where s < M*N*floor(Dmul/(M*N))
    /// and s mod M*N == m. Without D (1x1): just I.
    static func dPlusIdentity(_ layer: KerasOriginalLayer) -> [Double] {
        let (mn, dmul, cin) = (layer.kernelHeight * layer.kernelWidth, layer.depthMultiplier, layer.inChannels)
        var dt = layer.d?.values ?? [Double](repeating: 0, count: mn * dmul * cin)
        for s in 0..<(mn * (dmul / mn)) { for i in 0..<cin { dt[((s % mn) * dmul + s) * cin + i] += 1 } }
        return dt
    }

    /// The layer's kernel in float64, OIHW (Cout, Cin/g, M, N), by the DOConv2D layer's own
    /// arithmetic written out: Wr = W viewed as (Dmul, Cin, Cout/g); E = einsum('msi,sio->mio',
    /// D + I, Wr), whose flat memory is the (M, N, Cin/g, Cout) kernel; then transposed.
    static func kernel(of layer: KerasOriginalLayer) -> [Double] {
        let (mn, dmul, cin, og) = (layer.kernelHeight * layer.kernelWidth, layer.depthMultiplier, layer.inChannels, layer.outChannels / layer.groups)
        let dt = dPlusIdentity(layer)
        let w = layer.kernel.values ?? []
        var e = [Double](repeating: 0, count: mn * cin * og)
        for m in 0..<mn {
            for i in 0..<cin {
                for o in 0..<og {
                    var sum = 0.0
                    for s in 0..<dmul { sum += dt[(m * dmul + s) * cin + i] * w[(s * cin + i) * og + o] }
                    e[(m * cin + i) * og + o] = sum
                }
            }
        }
        return NaiveFold.oihw(fromHWIO: e, height: layer.kernelHeight, width: layer.kernelWidth, inPerGroup: cin / layer.groups, out: layer.outChannels)
    }

    /// One patch (Cin, M*N) through the layer as it computes, by feature composition: each
    /// input channel's patch mapped by its D + I row to Dmul features, combined by W. The
    /// reshapes pair the conv's output o and group-local input c with the einsum's channel
    /// i and W column o' where i * Cout/g + o' = c * Cout + o (equal flat positions).
    static func route(_ layer: KerasOriginalLayer) -> ([Double]) -> [Double] {
        let (mn, dmul, cin, cout) = (layer.kernelHeight * layer.kernelWidth, layer.depthMultiplier, layer.inChannels, layer.outChannels)
        let (perGroup, og) = (cin / layer.groups, cout / layer.groups)
        let dt = dPlusIdentity(layer)
        let w = layer.kernel.values ?? []
        return { patch in
            (0..<cout).map { o in
                var sum = 0.0
                for c in 0..<perGroup {
                    let real = (o / og) * perGroup + c
                    let (i, column) = ((c * cout + o) / og, (c * cout + o) % og)
                    for s in 0..<dmul {
                        var feature = 0.0
                        for m in 0..<mn { feature += dt[(m * dmul + s) * cin + i] * patch[real * mn + m] }
                        sum += w[(s * cin + i) * og + column] * feature
                    }
                }
                return sum
            }
        }
    }
}
