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
    let source: HDF5File
    let plan: KerasRewritePlan

    /// Writes the folded file to `path` atomically; `path` may be the input.
    public func write(to path: String) throws(KerasError) {
        try plan.write(source, to: path)
    }
}

/// Folds every DOConv2D layer of a Keras HDF5 file into a Conv2D kernel (M, N, Cin/g, Cout).
public enum KerasFolder {
    /// Finds every DOConv2D layer without writing anything (for reports).
    public static func detect(path: String, options: KerasFoldOptions = KerasFoldOptions()) throws(KerasError) -> Detection {
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
        let opened = try OpenedKerasFile(path: path, options: options)
        let (file, layout, config) = (opened.file, opened.layout, opened.config)
        var plan = KerasRewritePlan()
        plan.renamedGroups = opened.renamedGroups
        let detector = DOConv2DDetector(path: path, file: file, options: options)
        var summary = FoldSummary()
        var foldedNames = Set<String>()
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
                let removed = folded.removedParameters
                summary.parametersAfter -= removed
                summary.bytesAfter -= removed * weights.weights[0].elementSize
                plan.merge(folded.plan)
                continue
            }
            guard let found = try detector.detect(weights, config: configLayer, rejected: &summary.rejected) else { continue }
            let (layer, record) = try detector.fold(found, options: options.fold)
            let removed = record.geometry.trainedParameterCount - record.geometry.kernelCount
            summary.parametersAfter -= removed
            summary.bytesAfter -= removed * found.kernel.elementSize
            summary.layers.append(record)
            foldedNames.insert(configLayer?.name ?? weights.name)
            plan.replacedDatasets[found.kernel.path] = (layer.shape, layer.values)
            if let d = found.d { plan.dropped.insert(d.path) }
            if layout.format != .weightsH5 {
                let group = try detector.group(at: weights.groupPath)
                let style = (try? group.strings("weight_names").style) ?? .utf8Scalar
                plan.stringAttributes[weights.groupPath, default: [:]]["weight_names"] = .init(
                    values: weights.weights.filter { $0.role != .d }.map(\.name), style: style)
            }
        }
        summary.parametersAfter += summary.parametersBefore
        summary.bytesAfter += summary.bytesBefore

        if !summary.layers.isEmpty {
            if let config, layout.format == .legacyFullModel {
                let root = try detector.group(at: "/")
                let style = (try? root.strings("model_config").style) ?? .utf8Scalar
                plan.stringAttributes["/", default: [:]]["model_config"] = .init(values: [config.foldedJSON(layers: foldedNames)], style: style)
            }
            // Optimizer slots follow the variables: D's slots go, W's no longer fit the kernel.
            let root = try detector.group(at: "/")
            for optimizer in ["optimizer_weights", "optimizer"] where root.hasChild(optimizer) {
                plan.dropped.insert("/" + optimizer)
                summary.notes.append("optimizer state dropped: it held slots shaped for D and W")
            }
        }
        return KerasFoldResult(summary: summary, format: layout.format, source: file, plan: plan)
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
    /// `.weights.h5` group path -> its name in a plain model (Conv2D counted anew).
    private(set) var renamedGroups: [String: String] = [:]

    init(path: String, options: KerasFoldOptions) throws(KerasError) {
        do { file = try HDF5File.openReadOnly(path: path) } catch { throw .hdf5(error) }
        layout = try KerasWeightsLayout(file: file)
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
            let after = KerasNaming.weightPaths(classNames: config.layers.map {
                $0.isDOConv || $0.isFoldableSeparable(foldSeparable: options.fold.foldSeparable) ? "Conv2D" : $0.className
            })
            for (k, layer) in config.layers.enumerated() {
                layersByGroup[before[k]] = layer
                if before[k] != after[k] { renamedGroups[layout.weightsRoot + "/" + before[k]] = after[k] }
            }
        }
    }

    /// The config entry of a layer group: by the name the file records, else by group name.
    func configLayer(for weights: KerasLayerWeights) -> KerasModelConfig.Layer? {
        if let recorded = weights.recordedName, let layer = config?.layer(named: recorded) { return layer }
        return layersByGroup[weights.name] ?? config?.layer(named: weights.name)
    }
}
