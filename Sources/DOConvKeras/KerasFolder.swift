import DOConvCore

/// Options of a Keras fold.
public struct KerasFoldOptions: Sendable {
    public var fold = FoldOptions()
    /// The model's Keras JSON (`model.to_json()`), for files that carry no config.
    public var configJSON: String?
    /// Where `configJSON` came from, for messages.
    public var configSource = "--config"
    /// Kernel sizes by layer name (`--kernel-size LAYER=MxN`).
    public var kernelSizes: [String: [Int]] = [:]
    /// Also fold each BatchNormalization into the Conv2D before it (`--fuse-bn`).
    public var fuseBatchNorm = false
    /// Leave a layer that cannot be told apart unfolded instead of refusing (`--allow-partial`).
    public var allowPartial = false
    /// Write a folded DO-DConv (groups = Cin) as Conv2D(groups=Cin) instead of
    /// DepthwiseConv2D (`--keep-grouped`).
    public var keepGrouped = false

    public init() {}

    /// Options with the model's JSON read from `configFile` (`--config`), when given.
    public init(configFile: String?, kernelSizes: [String: [Int]]) throws(KerasError) {
        self.kernelSizes = kernelSizes
        guard let configFile else { return }
        guard let json = try? String(contentsOfFile: configFile, encoding: .utf8) else {
            throw .config(path: configFile, reason: "cannot read the file")
        }
        configJSON = json
        configSource = configFile
    }
}

/// A folded Keras file, ready to be written (or not, when verification failed).
public struct KerasFoldResult {
    public let summary: FoldSummary
    public let format: KerasFileFormat
    /// What the fold changes in the model config (for archives, whose config is apart).
    public let configEdit: KerasConfigEdit
    let source: HDF5File
    let plan: KerasRewritePlan

    /// Writes the folded file to `path` atomically; `path` may be the input.
    public func write(to path: String) throws(KerasError) {
        try plan.write(source, to: path)
    }
}

/// Folds every DOConv2D layer of a Keras HDF5 file into a Conv2D kernel (M, N, Cin/g, Cout).
public enum KerasFolder {
    /// Finds every DOConv2D layer without writing anything (for reports). A layer that cannot
    /// be told apart is reported as not folded, with what would settle it: a report writes
    /// no half-folded file.
    public static func detect(path: String, options given: KerasFoldOptions = KerasFoldOptions()) throws(KerasError) -> Detection {
        var options = given
        options.allowPartial = true
        let opened = try OpenedKerasFile(path: path, options: options)
        let detector = DOConv2DDetector(path: path, file: opened.file, options: options)
        var detection = Detection()
        for weights in opened.layout.layers {
            let configLayer = opened.configLayer(for: weights)
            if let configLayer, configLayer.className == "SeparableConv2D" {
                let separable = SeparableConv2DFolding(path: path, file: opened.file)
                if let loaded = try separable.load(weights, config: configLayer, options: options.fold, rejected: &detection.rejected) {
                    detection.layers.append(loaded.detected)
                }
                continue
            }
            guard let found = try detector.detect(weights, config: configLayer, rejected: &detection.rejected) else { continue }
            detection.layers.append(try detector.load(found))
        }
        return detection
    }

    public static func fold(path: String, options: KerasFoldOptions = KerasFoldOptions()) throws(KerasError) -> KerasFoldResult {
        try fold(path: path, options: options, configWrittenAlongside: false)
    }

    /// Folds the file; `configWrittenAlongside` is true when the caller writes the rewritten
    /// config next to the weights (a `.keras` archive), so the user need not rebuild the model.
    static func fold(path: String, options: KerasFoldOptions, configWrittenAlongside: Bool) throws(KerasError) -> KerasFoldResult {
        let opened = try OpenedKerasFile(path: path, options: options)
        let (file, layout, config) = (opened.file, opened.layout, opened.config)
        var plan = KerasRewritePlan()
        let detector = DOConv2DDetector(path: path, file: file, options: options)
        var summary = FoldSummary()
        var foldedNames = Set<String>()
        // Folded DO-DConv layers written as DepthwiseConv2D: layer name -> its kernel dataset and group.
        var depthwise: [String: (kernel: KerasWeight, groupPath: String, geometry: DOConvGeometry)] = [:]
        // Every layer that is a Conv2D after the fold, for --fuse-bn.
        var convs: [String: KerasConvWeights] = [:]
        for weights in layout.layers {
            for weight in weights.weights {
                let count = Tensor.elementCount(of: weight.shape) ?? 0
                summary.parametersBefore += count
                summary.bytesBefore += count * weight.elementSize
            }
            let configLayer = opened.configLayer(for: weights)
            if let configLayer, configLayer.className == "SeparableConv2D" {
                let separable = SeparableConv2DFolding(path: path, file: file)
                guard let folded = try separable.fold(weights, config: configLayer, options: options.fold, format: layout.format, rejected: &summary.rejected) else { continue }
                summary.layers.append(folded.record)
                foldedNames.insert(configLayer.name)
                convs[configLayer.name] = folded.conv
                let removed = folded.removedParameters
                summary.parametersAfter -= removed
                summary.bytesAfter -= removed * weights.weights[0].elementSize
                plan.merge(folded.plan)
                continue
            }
            if let configLayer, configLayer.className == "Conv2D" { convs[configLayer.name] = KerasConvWeights(plain: weights) }
            guard let found = try detector.detect(weights, config: configLayer, rejected: &summary.rejected) else { continue }
            let (kernel, record) = try detector.fold(found, options: options.fold)
            let removed = record.geometry.trainedParameterCount - record.geometry.kernelCount
            summary.parametersAfter -= removed
            summary.bytesAfter -= removed * found.kernel.elementSize
            summary.layers.append(record)
            foldedNames.insert(configLayer?.name ?? weights.name)
            convs[found.name] = KerasConvWeights(layer: weights, kernel: found.kernel, kernelShape: kernel.shape,
                                                 bias: weights.weights.first { $0.role == .bias })
            plan.replacedDatasets[found.kernel.path] = kernel
            if let d = found.d { plan.dropped.insert(d.path) }
            if !options.keepGrouped, DepthwiseForm.applies(to: record.geometry) {
                depthwise[configLayer?.name ?? weights.name] = (found.kernel, weights.groupPath, record.geometry)
            }
            if layout.format != .weightsH5 {
                let group = try detector.group(at: weights.groupPath)
                let style = (try? group.strings("weight_names").style) ?? .utf8Scalar
                plan.stringAttributes[weights.groupPath, default: [:]]["weight_names"] = .init(
                    values: weights.weights.filter { $0.role != .d }.map(\.name), style: style)
            }
        }
        summary.parametersAfter += summary.parametersBefore
        summary.bytesAfter += summary.bytesBefore

        var edit = KerasConfigEdit(folded: foldedNames)
        if options.fuseBatchNorm {
            edit.fusedBatchNorms = try fuseBatchNorms(path: path, opened: opened, convs: convs, options: options, plan: &plan, summary: &summary)
            // Weights alone no longer fit the model they came from: say what the model must look like.
            if !edit.fusedBatchNorms.isEmpty, layout.format != .legacyFullModel, !configWrittenAlongside {
                let biased = Set(edit.fusedBatchNorms.values).sorted().map { "'\($0)'" }.joined(separator: ", ")
                summary.notes.append("the weights now fit the model without the fused BatchNormalization layers and with use_bias=True on \(biased)")
            }
        }
        // Last, after any fusion has scaled the kernels: DO-DConv layers become DepthwiseConv2D.
        for (name, layer) in depthwise {
            edit.depthwise[name] = DepthwiseForm.write(layer.kernel, groupPath: layer.groupPath, geometry: layer.geometry, format: layout.format, plan: &plan)
        }
        if let note = DepthwiseForm.note(edit.depthwise.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }) { summary.notes.append(note) }
        plan.renamedGroups.merge(opened.groupRenames(removing: Set(edit.fusedBatchNorms.keys), folded: foldedNames, depthwise: Set(edit.depthwise.keys))) { $1 }

        if !summary.layers.isEmpty || !edit.fusedBatchNorms.isEmpty {
            if let config, layout.format == .legacyFullModel {
                let root = try detector.group(at: "/")
                let style = (try? root.strings("model_config").style) ?? .utf8Scalar
                plan.stringAttributes["/", default: [:]]["model_config"] = .init(values: [config.rewrittenJSON(edit)], style: style)
            }
            // Optimizer slots follow the variables: D's slots go, W's no longer fit the
            // kernel, and a fused BatchNormalization's go with it.
            let root = try detector.group(at: "/")
            let held = summary.layers.isEmpty ? "slots of the fused BatchNormalization layers" : "slots shaped for D and W"
            for optimizer in ["optimizer_weights", "optimizer"] where root.hasChild(optimizer) {
                plan.dropped.insert("/" + optimizer)
                summary.notes.append("optimizer state dropped: it held \(held)")
            }
        }
        return KerasFoldResult(summary: summary, format: layout.format, configEdit: edit, source: file, plan: plan)
    }

    /// Folds every BatchNormalization the config shows right after a Conv2D (`convs`: the
    /// layers that are Conv2D after this run) into it: the plan gets the new kernels and
    /// biases, loses the BatchNormalization groups (and, in legacy files, their
    /// `layer_names` entries), and the summary gets each fusion, its probe and notes.
    /// Returns each fused BatchNormalization's name -> its Conv2D's.
    private static func fuseBatchNorms(path: String, opened: OpenedKerasFile, convs: [String: KerasConvWeights], options: KerasFoldOptions,
                                       plan: inout KerasRewritePlan, summary: inout FoldSummary) throws(KerasError) -> [String: String] {
        guard let config = opened.config else {
            summary.notes.append("no BatchNormalization fused: this file holds no model config to tell which layer feeds which; "
                + "pass the model's JSON with --config")
            return [:]
        }
        // A Conv2D whose weights do not look like one is still a Conv2D to the matcher; the
        // note below then names the weights as the reason.
        let conv2Ds = Set(config.layers.filter { $0.className == "Conv2D" }.map(\.name)).union(convs.keys)
        let (pairs, skipped) = KerasBatchNormMatcher(config: config, convs: conv2Ds).match()
        summary.notes += skipped
        var groups: [String: KerasLayerWeights] = [:]
        for weights in opened.layout.layers {
            if let layer = opened.configLayer(for: weights), groups[layer.name] == nil { groups[layer.name] = weights }
        }
        let fuser = KerasBatchNormFuser(path: path, file: opened.file, format: opened.layout.format, options: options.fold)
        var fused: [String: String] = [:]
        var droppedGroups = Set<String>()
        for pair in pairs {
            guard let conv = convs[pair.conv.name], let batchNorm = groups[pair.batchNorm.name] else {
                summary.notes.append("BatchNormalization '\(pair.batchNorm.name)' not fused: the file holds no weights for it or none that fit a Conv2D for '\(pair.conv.name)'")
                continue
            }
            let fusion = try fuser.fuse(pair, conv: conv, batchNorm: batchNorm, plan: &plan)
            summary.fusedBatchNorms.append(fusion.record)
            summary.parametersAfter += fusion.parameterChange
            summary.bytesAfter += fusion.byteChange
            fused[pair.batchNorm.name] = pair.conv.name
            droppedGroups.insert(batchNorm.name)
        }
        guard !fused.isEmpty else { return [:] }
        let list = pairs.filter { fused[$0.batchNorm.name] != nil }.map { "\($0.batchNorm.name) into \($0.conv.name)" }
        summary.notes.append("fused \(fused.count) BatchNormalization into the Conv2D before it: \(list.joined(separator: ", "))")
        switch opened.layout.format {
        case .legacyFullModel, .legacyWeights:
            // Legacy loaders match groups to layers with weights by position in layer_names.
            let root = opened.layout.weightsRoot
            let style: HDF5StringStyle
            do { style = try opened.file.group(at: root).strings("layer_names").style } catch { throw .hdf5(error) }
            let names = opened.layout.layers.map(\.name).filter { !droppedGroups.contains($0) }
            plan.stringAttributes[root, default: [:]]["layer_names"] = .init(values: names, style: style)
        case .weightsH5:
            break
        }
        return fused
    }
}

/// A Keras file opened for folding: its layout, its config (stored or given), and each
/// layer group matched to its config entry.
struct OpenedKerasFile {
    let file: HDF5File
    let layout: KerasWeightsLayout
    let config: KerasModelConfig?
    /// Group name -> config entry, for layouts that name groups by class and position.
    private var layersByGroup: [String: KerasModelConfig.Layer] = [:]
    private let foldSeparable: Bool

    init(path: String, options: KerasFoldOptions) throws(KerasError) {
        do { file = try HDF5File.openReadOnly(path: path) } catch { throw .hdf5(error) }
        layout = try KerasWeightsLayout(file: file)
        foldSeparable = options.fold.foldSeparable
        if let stored = layout.storedConfig {
            config = try KerasModelConfig(json: stored, source: path)
        } else if let json = options.configJSON {
            config = try KerasModelConfig(json: json, source: options.configSource)
        } else {
            config = nil
        }
        if layout.format == .weightsH5 {
            guard let config else {
                throw .config(path: path, reason: "a .weights.h5 file names layer groups by class and position, and a plain model renumbers them; pass the model's JSON with --config")
            }
            let before = KerasNaming.weightPaths(classNames: config.layers.map(\.className))
            for (k, layer) in config.layers.enumerated() { layersByGroup[before[k]] = layer }
        }
    }

    /// `.weights.h5` group path -> its name in the plain model: Keras numbers the groups by
    /// class in model order, so every folded layer counts as a Conv2D and the `removed`
    /// layers (fused BatchNormalization) are gone, which renumbers the rest of their class;
    /// a DOConv2D left unfolded (--exclude) keeps its class.
    /// Empty for the other layouts, which name groups after the layers.
    func groupRenames(removing removed: Set<String>, folded: Set<String>, depthwise: Set<String> = []) -> [String: String] {
        guard layout.format == .weightsH5, let config else { return [:] }
        let before = KerasNaming.weightPaths(classNames: config.layers.map(\.className))
        let kept = config.layers.indices.filter { !removed.contains(config.layers[$0].name) }
        let after = KerasNaming.weightPaths(classNames: kept.map { k in
            let layer = config.layers[k]
            if depthwise.contains(layer.name) { return "DepthwiseConv2D" }
            return folded.contains(layer.name) ? "Conv2D" : layer.className
        })
        var renames: [String: String] = [:]
        for (k, name) in zip(kept, after) where before[k] != name { renames[layout.weightsRoot + "/" + before[k]] = name }
        return renames
    }

    /// The config entry of a layer group: by the name the file records, else by group name.
    func configLayer(for weights: KerasLayerWeights) -> KerasModelConfig.Layer? {
        if let recorded = weights.recordedName, let layer = config?.layer(named: recorded) { return layer }
        return layersByGroup[weights.name] ?? config?.layer(named: weights.name)
    }
}
