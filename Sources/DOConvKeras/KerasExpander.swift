import DOConvJSON
import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// The reverse of the fold for Keras legacy HDF5 files (`model.save('x.h5')`, and
/// `save_weights('x.h5')` with the model's JSON): each Conv2D becomes a `DOConv2D` (its
/// config gains `D_mul`, `groups` kept), whose kernel dataset holds W (Dmul, Cin/g, Cout)
/// (the plain kernel's M*N planes first) and which gains `D` (M*N, Dmul, Cin) after its
/// bias, in the layer's `weight_names` order (kernel, bias, D). The DO-Conv model then
/// computes exactly the plain model's function (see `DOConvExpansion`); loading it needs
/// the user's DOConv2D class.
public enum KerasExpander {
    /// An expanded Keras file, ready to be written.
    public struct Result {
        public let summary: FoldSummary
        let source: HDF5File
        let plan: KerasRewritePlan
        /// Each expanded layer's Dmul, by name (for a config written apart: `.keras`).
        let depthMultipliers: [String: Int]

        public func write(to path: String) throws(KerasError) {
            try plan.write(source, to: path)
        }
    }

    public static func expand(path: String, options: ExpandOptions) throws(KerasError) -> Result {
        var foldOptions = KerasFoldOptions()
        foldOptions.configJSON = options.configJSON
        foldOptions.configSource = options.configSource
        let opened = try OpenedKerasFile(path: path, options: foldOptions)
        guard let config = opened.config else {
            throw .config(path: path, reason: "a weights-only file does not say which layers are Conv2D or their groups: pass the model's JSON with --config")
        }
        var plan = KerasRewritePlan()
        var summary = FoldSummary()
        var expanded: [String: Int] = [:]
        for weights in opened.layout.layers {
            for weight in weights.weights {
                let count = Tensor.elementCount(of: weight.shape) ?? 0
                summary.parametersBefore += count
                summary.bytesBefore += count * weight.elementSize
            }
            guard let layer = opened.configLayer(for: weights) else { continue }
            if ["DepthwiseConv2D", "SeparableConv2D"].contains(layer.className) {
                summary.rejected.append(RejectedCandidate(name: layer.name, reason: "a \(layer.className): only Conv2D layers are expanded (build it as a Conv2D with groups to expand it)", isDOConvLayer: false))
                continue
            }
            guard layer.className == "Conv2D" else { continue }
            if let refusal = options.selection.refusal(of: layer.name) {
                summary.rejected.append(RejectedCandidate(name: layer.name, reason: refusal, isDOConvLayer: false))
                continue
            }
            guard let kernel = weights.weights.first(where: { $0.role == .kernel }), kernel.shape.count == 4 else {
                throw .inconsistentLayer(path: path, layer: layer.name, reason: "a Conv2D without a 4-D kernel")
            }
            let (m, n, perGroup, cout) = (kernel.shape[0], kernel.shape[1], kernel.shape[2], kernel.shape[3])
            let groups = options.givenGroups(of: layer.name) ?? layer.groups ?? 1
            guard groups >= 1, cout % groups == 0, !perGroup.multipliedReportingOverflow(by: groups).overflow else {
                throw .inconsistentLayer(path: path, layer: layer.name, reason: "\(groups) groups do not divide its \(cout) filters")
            }
            let area = m * n
            let depthMultiplier = area == 1 ? 1 : options.depthMultiplier ?? area
            guard depthMultiplier >= area else {
                throw .inconsistentLayer(path: path, layer: layer.name, reason: "Dmul \(depthMultiplier) is below its M x N = \(m)x\(n): no DO-Conv layer starts as this conv exactly")
            }
            let geometry = DOConvGeometry(inChannels: perGroup * groups, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: depthMultiplier)
            do { try DOConvExpansion.checkSize(geometry) } catch { throw .inconsistentLayer(path: path, layer: layer.name, reason: "\(error)") }
            let dataset: HDF5Dataset
            let values: [Double]
            do {
                dataset = try opened.file.dataset(at: kernel.path)
                values = try dataset.doubles()
            } catch {
                throw .hdf5(error)
            }
            let type = ((try? dataset.elementType()) ?? nil) ?? .float32
            let expansion: DOConvExpansion
            do { expansion = try DOConvExpansion(layout: .keras, geometry: geometry, kernel: values, seed: options.seed &+ UInt64(expanded.count)) } catch {
                throw .inconsistentLayer(path: path, layer: layer.name, reason: "\(error)")
            }
            // libhdf5 rounds each value to the dataset's type once: check what it will store.
            let w = try rounded(expansion.w, to: type)
            let d = try expansion.d.map { (values) throws(KerasError) in try rounded(values, to: type) }
            plan.replacedDatasets[kernel.path] = ([depthMultiplier, perGroup, cout], .float64(w))
            if let d {
                let shape = [area, depthMultiplier, geometry.inChannels]
                if opened.layout.format == .weightsH5 {
                    // vars/0 kernel, vars/1 bias: D is created last.
                    plan.addedDatasets[KerasBatchNormFuser.parent(of: kernel.path), default: []].append(
                        .init(name: String(weights.weights.count), shape: shape, values: d, template: kernel.path))
                } else {
                    try addD(d, shape: shape, beside: kernel, of: weights, file: opened.file, plan: &plan)
                }
            }
            var record = FoldedLayer(name: layer.name, layout: .keras, geometry: geometry, elementType: type, stride: [], dilation: [],
                                     tolerance: options.tolerance ?? type.defaultTolerance)
            if options.verify {
                do {
                    record.relativeError = try DOConvExpansion.relativeError(layout: .keras, geometry: geometry, storedW: w, storedD: d, kernelOIHW: geometry.oihw(hwio: values))
                } catch {
                    throw .inconsistentLayer(path: path, layer: layer.name, reason: "\(error)")
                }
            }
            summary.layers.append(record)
            expanded[layer.name] = depthMultiplier
            let added = expansion.w.count - values.count + (d?.count ?? 0)
            summary.parametersAfter += added
            summary.bytesAfter += added * kernel.elementSize
        }
        summary.parametersAfter += summary.parametersBefore
        summary.bytesAfter += summary.bytesBefore
        if !expanded.isEmpty {
            let root: HDF5Group
            do { root = try opened.file.group(at: "/") } catch { throw .hdf5(error) }
            switch opened.layout.format {
            case .weightsH5:
                // Keras 3 names .weights.h5 groups by class and position: an expanded layer's is a DOConv2D's.
                let before = KerasNaming.weightPaths(classNames: config.layers.map(\.className))
                let after = KerasNaming.weightPaths(classNames: config.layers.map { expanded[$0.name] == nil ? $0.className : "DOConv2D" })
                for (old, new) in zip(before, after) where old != new { plan.renamedGroups[opened.layout.weightsRoot + "/" + old] = new }
                summary.notes.append("load it with keras.saving.load_model(path, custom_objects={'DOConv2D': DOConv2D}): the model needs your DO-Conv layer class")
            case .legacyFullModel:
                let style = (try? root.strings("model_config").style) ?? .utf8Scalar
                plan.stringAttributes["/", default: [:]]["model_config"] = .init(values: [config.expandedJSON(expanded)], style: style)
                summary.notes.append("load it with load_model(path, custom_objects={'DOConv2D': DOConv2D}): the model needs your DO-Conv layer class")
            case .legacyWeights:
                summary.notes.append("load it with load_weights into the model built with DOConv2D where it has Conv2D (D_mul as expanded)")
            }
            for optimizer in ["optimizer_weights", "optimizer"] where root.hasChild(optimizer) {
                plan.dropped.insert("/" + optimizer)
                summary.notes.append("optimizer state dropped: its slots were shaped for the plain kernels")
            }
        }
        return Result(summary: summary, source: opened.file, plan: plan, depthMultipliers: expanded)
    }

    /// D next to the kernel, named like it ("conv/kernel:0" -> "conv/D:0"), listed last in
    /// `weight_names` (the DOConv2D's weights: kernel, bias, D).
    private static func addD(_ values: [Double], shape: [Int], beside kernel: KerasWeight, of weights: KerasLayerWeights, file: HDF5File,
                             plan: inout KerasRewritePlan) throws(KerasError) {
        var components = kernel.name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let last = components.removeLast()
        let dName = "D" + last.dropFirst("kernel".count)
        components.append(dName)
        let style = (try? file.group(at: weights.groupPath).strings("weight_names").style) ?? .utf8Scalar
        plan.stringAttributes[weights.groupPath, default: [:]]["weight_names"] = .init(values: weights.weights.map(\.name) + [components.joined(separator: "/")], style: style)
        plan.addedDatasets[KerasBatchNormFuser.parent(of: kernel.path), default: []].append(.init(name: dName, shape: shape, values: values, template: kernel.path))
    }

    /// `values` as a dataset of `type` stores them.
    private static func rounded(_ values: [Double], to type: ElementType) throws(KerasError) -> [Double] {
        guard type != .float64 else { return values }
        do {
            return try ElementCodec.encode(values.map(Float.init), as: type).withUnsafeBytes { (raw) throws(TensorError) in
                try ElementCodec.decode(raw, as: type, count: values.count)
            }.map(Double.init)
        } catch {
            throw .inconsistentLayer(path: "", layer: "", reason: "\(error)")
        }
    }
}

extension KerasModelConfig {
    /// This config as JSON with the named Conv2D layers turned into DOConv2D with their
    /// `D_mul` (everything else of theirs kept: groups, strides, dilation, initializers).
    public func expandedJSON(_ layers: [String: Int]) -> String {
        var root = self.root
        if var config = root["config"] as? [String: Any], var list = config["layers"] as? [[String: Any]] {
            for k in list.indices {
                guard var layerConfig = list[k]["config"] as? [String: Any],
                      let name = layerConfig["name"] as? String ?? list[k]["name"] as? String, let depthMultiplier = layers[name] else { continue }
                layerConfig["D_mul"] = depthMultiplier
                list[k]["config"] = layerConfig
                list[k]["class_name"] = "DOConv2D"
                if list[k]["module"] != nil { list[k]["module"] = JSONNull() }
                if list[k]["registered_name"] != nil { list[k]["registered_name"] = "DOConv2D" }
            }
            config["layers"] = list
            root["config"] = config
        }
        return (try? JSONTree.string(root)) ?? "{}"
    }
}
