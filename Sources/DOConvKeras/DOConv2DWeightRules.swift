import DOConvCore

/// What a DOConv2D layer's weights are, whatever holds them (a Keras HDF5 file, a
/// TensorFlow checkpoint): kernel (Dmul, Cin/g, Cout) and D (M*N, Dmul, Cin), no D for a
/// 1x1 layer. The model config's class name says which layers are DOConv2D; without a
/// config, a kernel beside a D is one, and a 3-D kernel (1, Cin, Cout) alone cannot be told
/// from a Conv1D unless `--kernel-size NAME=1x1` says so.
public struct DOConv2DWeightRules: Sendable {
    /// Kernel sizes by layer name (`--kernel-size`).
    public var kernelSizes: [String: [Int]]
    /// `--only` / `--exclude`.
    public var selection: LayerSelection
    /// Leave a layer that cannot be told apart unfolded, with a note, instead of refusing
    /// the file (`--allow-partial`).
    public var allowPartial: Bool

    public init(kernelSizes: [String: [Int]], selection: LayerSelection, allowPartial: Bool) {
        self.kernelSizes = kernelSizes
        self.selection = selection
        self.allowPartial = allowPartial
    }

    /// What a layer turned out to be.
    private enum Finding {
        case doConv(geometry: DOConvGeometry, stride: [Int], dilation: [Int])
        /// Not a DOConv2D layer (no kernel, a plain layer, a layer the config names otherwise).
        case other
        /// Left as it is: a look-alike, a layer the user excluded, or one that cannot be told
        /// apart under `--allow-partial`.
        case leftAlone(RejectedCandidate)
    }

    /// Why a layer's weights cannot be folded, as the rest of its line after the layer name.
    public enum Problem: Error, Sendable {
        /// The line's text after the layer's name.
        public var reason: String {
            switch self {
            case let .inconsistent(reason), let .undecidable(reason): return reason
            }
        }

        /// The weights disagree with each other or with the config.
        case inconsistent(String)
        /// The weights could be a DOConv2D layer's and nothing says which: a kernel size or
        /// the config would settle it.
        case undecidable(String)
    }

    /// The layer's geometry when it is a DOConv2D to fold; nil for another layer, or one left
    /// alone (then added to `rejected`).
    public func doConvLayer(name: String, kernel: [Int]?, d: [Int]?, config: KerasModelConfig.Layer?,
                            rejected: inout [RejectedCandidate]) throws(Problem) -> (geometry: DOConvGeometry, stride: [Int], dilation: [Int])? {
        switch try judge(name: name, kernel: kernel, d: d, config: config) {
        case .other: return nil
        case let .leftAlone(candidate):
            rejected.append(candidate)
            return nil
        case let .doConv(geometry, stride, dilation): return (geometry, stride, dilation)
        }
    }

    /// Judges one layer by its weights' shapes and its config entry (nil when the file has
    /// no config).
    private func judge(name: String, kernel: [Int]?, d: [Int]?, config: KerasModelConfig.Layer?) throws(Problem) -> Finding {
        let declared = (config?.isDOConv ?? false) || (config == nil && d == nil && kernelSizes[name] == [1, 1])
        if config == nil, !declared, d == nil, let kernel, kernel.count == 3, kernel[0] == 1 {
            let reason = "a 3-D kernel \(kernel) without D is a 1x1 DOConv2D or a Conv1D; pass --config MODEL.json or --kernel-size \(name)=1x1"
            // Left unfolded, a 1x1 DOConv2D's weights fit neither the DO-Conv model nor the plain one.
            guard allowPartial else { throw .undecidable(reason + " (or --allow-partial to leave it)") }
            return .leftAlone(RejectedCandidate(name: name, reason: reason))
        }
        guard declared || (kernel != nil && d != nil && config == nil) else { return .other }
        if let reason = selection.refusal(of: name) {
            return .leftAlone(RejectedCandidate(name: name, reason: reason, isDOConvLayer: true))
        }
        guard let kernel, kernel.count == 3 else {
            if declared { throw .inconsistent("a DOConv2D layer needs a kernel of shape (Dmul, Cin/g, Cout)") }
            return .other
        }
        let (dmul, inPerGroup, cout) = (kernel[0], kernel[1], kernel[2])
        var groups = config?.groups ?? 1
        var inChannels = inPerGroup * groups
        var area = 1
        if let d {
            guard d.count == 3, d[1] == dmul, inPerGroup > 0, d[2] % inPerGroup == 0 else {
                let reason = "D \(d) does not fit kernel \(kernel)"
                if declared { throw .inconsistent(reason) }
                return .leftAlone(RejectedCandidate(name: name, reason: reason))
            }
            area = d[0]
            inChannels = d[2]
            groups = inChannels / inPerGroup
            if let declaredGroups = config?.groups, declaredGroups != groups {
                throw .inconsistent("the config says \(declaredGroups) groups, the weights \(groups)")
            }
        } else if dmul != 1 {
            throw .inconsistent("no D, so the kernel must be (1, Cin/g, Cout), not \(kernel)")
        }
        if let filters = config?.filters, filters != cout { throw .inconsistent("the config says \(filters) filters, the kernel \(cout)") }
        if let declared = config?.depthMultiplier, d != nil, declared != dmul {
            throw .inconsistent("the config says D_mul \(declared), the weights \(dmul)")
        }
        let (m, n) = try kernelSize(layer: name, config: config, area: area)
        let geometry = DOConvGeometry(inChannels: inChannels, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
        return .doConv(geometry: geometry, stride: config?.strides ?? [1, 1], dilation: config?.dilation ?? [1, 1])
    }

    /// (M, N): the config's kernel_size, else --kernel-size, else the square root of M*N.
    private func kernelSize(layer: String, config: KerasModelConfig.Layer?, area: Int) throws(Problem) -> (Int, Int) {
        let candidates = [config?.kernelSize, config.flatMap { kernelSizes[$0.name] }, kernelSizes[layer]]
        for case let size? in candidates {
            guard size.count == 2, size[0].multipliedReportingOverflow(by: size[1]) == (area, false) else {
                throw .inconsistent("kernel size \(size) does not match D's M x N = \(area)")
            }
            return (size[0], size[1])
        }
        var root = 1
        while (root + 1) * (root + 1) <= area { root += 1 }
        guard root * root == area else {
            throw .undecidable("kernel size unknown (M x N = \(area)); pass --config MODEL.json or --kernel-size \(layer)=MxN")
        }
        return (root, root)
    }
}
