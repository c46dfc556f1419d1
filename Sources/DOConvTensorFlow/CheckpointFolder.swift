import DOConvCore
import DOConvFileIO
import DOConvKeras

/// Options of a TensorFlow checkpoint fold.
public struct TensorFlowFoldOptions: Sendable {
    public var fold = FoldOptions()
    /// The model's config (`model.to_json()`), which names the DOConv2D layers and their
    /// kernel sizes; without it layers are found by their variables' shapes.
    public var configJSON: String?
    public var configSource = "--config"
    /// Kernel sizes by Keras layer name (`--kernel-size NAME=MxN`).
    public var kernelSizes: [String: [Int]] = [:]
    /// Leave a layer that cannot be told apart unfolded instead of refusing (`--allow-partial`).
    public var allowPartial = false
    /// A folded DO-DConv stays Conv2D(groups=Cin) (its kernel `kernel`, (M, N, 1, Cout))
    /// rather than becoming DepthwiseConv2D's `depthwise_kernel` (`--keep-grouped`).
    public var keepGrouped = false
    public init() {}
}

/// A folded checkpoint, ready to be written.
public struct TensorFlowFoldResult {
    public let summary: FoldSummary
    let bundle: TensorBundle
    /// The input's object graph and variables, as the fold read them.
    let variables: [CheckpointVariable]
    let inputGraph: TrackableObjectGraph
    /// What the output's object graph is: pruned, depthwise kernels renamed.
    let graph: TrackableObjectGraph
    /// Kernel key -> its folded shape and bytes.
    let replaced: [String: (shape: [Int], bytes: [UInt8])]
    /// Kernel key -> the key it is written under, for a DO-DConv written as a
    /// DepthwiseConv2D's `depthwise_kernel`.
    let renamed: [String: String]
    /// Keys whose variables are gone (D, the optimizer's state).
    let dropped: Set<String>

    /// Writes the checkpoint at `output` (a prefix, or its `.index`) with as many shards as
    /// the input, each tensor in the shard it came from, checksums recomputed; every file
    /// is renamed into place only when all are written.
    public func write(to output: String) throws(TensorFlowError) {
        let prefix = CheckpointPrefix.output(output)
        let writer = try TensorBundleWriter(prefix: prefix, numShards: bundle.header.numShards, sources: bundle.mappedShards)
        defer { writer.discard() }
        let inOrder = bundle.entries.sorted { ($0.shardID, $0.offset) < ($1.shardID, $1.offset) }
        for entry in inOrder {
            // Slices stay as the saver cut them, but a folded kernel's shape changed: it is
            // written whole.
            if let whole = entry.sliceOf {
                guard !dropped.contains(whole), replaced[whole] == nil else { continue }
                let stored = try bundle.tensorBytes(of: entry)
                try withExtendedLifetime(stored.owner) { () throws(TensorFlowError) in try writer.addSlice(entry, bytes: stored.bytes) }
                continue
            }
            let key = String(decoding: entry.keyBytes, as: UTF8.self)
            guard !dropped.contains(key) else { continue }
            if entry.isSliced, replaced[key] == nil {
                try writer.addSlicedTensor(entry)
            } else if key == TensorBundle.objectGraphKey {
                try writer.addStrings(key, shape: entry.shape, strings: [graph.serialized()], shard: entry.shardID)
            } else if let folded = replaced[key] {
                try writer.add(renamed[key] ?? key, dtype: entry.dtype, shape: folded.shape, bytes: folded.bytes, shard: entry.shardID)
            } else if entry.dtype == .string {
                try writer.addStrings(key, shape: entry.shape, strings: try bundle.strings(key), shard: entry.shardID)
            } else {
                let stored = try bundle.tensorBytes(of: entry)
                try withExtendedLifetime(stored.owner) { () throws(TensorFlowError) in
                    try writer.add(key, dtype: entry.dtype, shape: entry.shape, bytes: stored.bytes, shard: entry.shardID)
                }
            }
        }
        try writer.commit()
    }
}

/// Folds every DOConv2D layer of a tf.keras object-based checkpoint (`save_weights` in the
/// TF format, `ModelCheckpoint(save_weights_only=True)`, `tf.train.Checkpoint`): each
/// layer's `kernel` becomes the plain (M, N, Cin/g, Cout) kernel, its `D` leaves the bundle
/// and the object graph, and so does the optimizer, whose state was shaped for D and W.
public enum TensorFlowCheckpointFolder {
    /// Finds the DOConv2D layers, writing nothing; a layer that cannot be told apart is
    /// reported as not folded, with what would settle it.
    public static func detect(path: String, options given: TensorFlowFoldOptions = TensorFlowFoldOptions()) throws(TensorFlowError) -> Detection {
        var options = given
        options.allowPartial = true
        let (bundle, variables) = try open(path)
        let (layers, rejected) = try detector(bundle, options).detect(variables)
        var detected: [DetectedLayer] = []
        for layer in layers { detected.append(try load(layer, from: bundle)) }
        return Detection(layers: detected, rejected: rejected)
    }

    public static func fold(path: String, options: TensorFlowFoldOptions = TensorFlowFoldOptions()) throws(TensorFlowError) -> TensorFlowFoldResult {
        let (bundle, variables) = try open(path)
        let (layers, rejected) = try detector(bundle, options).detect(variables)
        var summary = FoldSummary(rejected: rejected)
        var replaced: [String: (shape: [Int], bytes: [UInt8])] = [:]
        var renamed: [String: String] = [:]
        var removedNodes = Set<Int>()
        var graph = try bundle.objectGraph()
        var depthwise: [(name: String, multiplier: Int)] = []
        for layer in layers {
            var (kernel, record) = try fold(layer, from: bundle, options: options.fold)
            // The same bytes: DepthwiseConv2D's [m, n, c, k] is Conv2D(groups=Cin)'s [m, n, 0, c*(Cout/Cin)+k].
            if !options.keepGrouped, DepthwiseForm.applies(to: layer.geometry), let key = graph.renameVariable(layer.kernel, to: DepthwiseForm.kernelName) {
                kernel.shape = DepthwiseForm.shape(of: layer.geometry)
                renamed[layer.kernel.key] = key
                depthwise.append((layer.name, layer.geometry.outChannels / layer.geometry.inChannels))
            }
            replaced[layer.kernel.key] = kernel
            if let d = layer.d { removedNodes.insert(d.nodeID) }
            summary.layers.append(record)
        }
        if let note = DepthwiseForm.note(depthwise) { summary.notes.append(note) }
        let inputGraph = try bundle.objectGraph()
        if !layers.isEmpty { removedNodes.formUnion(graph.trainingStateRoots()) }
        let (pruned, kept) = graph.removing(removedNodes)
        let dropped = Set(variables.filter { kept[$0.nodeID] == nil }.map(\.key))
        let optimizerState = variables.filter { kept[$0.nodeID] == nil && $0.isOptimizerState }.count
        if optimizerState > 0 {
            summary.notes.append("optimizer state dropped: \(optimizerState) variables (slots shaped for D and W, and the step count); the folded checkpoint is for inference or a fresh optimizer")
        }
        let metricState = variables.filter { kept[$0.nodeID] == nil && $0.isMetricState }.count
        if metricState > 0 {
            summary.notes.append("metric state dropped: \(metricState) variables (running totals of training metrics, which a plain model has not compiled)")
        }
        for variable in variables {
            let count = Tensor.elementCount(of: variable.shape) ?? 0
            let width = variable.dtype.byteWidth ?? 0
            guard !variable.isTrainingState else { continue }
            summary.parametersBefore += count
            summary.bytesBefore += count * width
            guard !dropped.contains(variable.key) else { continue }
            let after = replaced[variable.key].map { Tensor.elementCount(of: $0.shape) ?? 0 } ?? count
            summary.parametersAfter += after
            summary.bytesAfter += after * width
        }
        return TensorFlowFoldResult(summary: summary, bundle: bundle, variables: variables, inputGraph: inputGraph, graph: pruned,
                                    replaced: replaced, renamed: renamed, dropped: dropped)
    }

    static func open(_ path: String) throws(TensorFlowError) -> (TensorBundle, [CheckpointVariable]) {
        let bundle = try TensorBundle(prefix: try CheckpointPrefix.input(path))
        return (bundle, try bundle.variables())
    }

    static func detector(_ bundle: TensorBundle, _ options: TensorFlowFoldOptions) throws(TensorFlowError) -> CheckpointLayerDetector {
        let indexPath = TensorBundle.indexPath(prefix: bundle.prefix)
        var config: KerasModelConfig?
        if let json = options.configJSON {
            do { config = try KerasModelConfig(json: json, source: options.configSource) } catch {
                throw .config(path: options.configSource, reason: error.description)
            }
        }
        return CheckpointLayerDetector(path: indexPath, config: config, options: options)
    }

    /// The layer as the core describes it: D plus the identity the layer adds, and W.
    static func load(_ layer: CheckpointLayer, from bundle: TensorBundle) throws(TensorFlowError) -> DetectedLayer {
        let indexPath = TensorBundle.indexPath(prefix: bundle.prefix)
        let w = try bundle.tensor(layer.kernel.key)
        var d = try layer.d.map { (variable) throws(TensorFlowError) in try bundle.tensor(variable.key).values }
        if var trained = d {
            IdentityOffset.add(to: &trained, layout: .keras, geometry: layer.geometry)
            d = trained
        }
        let type = layer.kernel.dtype.elementType ?? .float32
        do {
            let core = try DOConvLayer(layout: .keras, geometry: layer.geometry, d: d, w: w.values)
            return DetectedLayer(name: layer.name, form: .kernelComposition, layer: core, elementType: type, stride: layer.stride, dilation: layer.dilation)
        } catch {
            throw .inconsistentLayer(path: indexPath, layer: layer.name, reason: "\(error)")
        }
    }

    /// One layer's kernel as TensorFlow stores it, (M, N, Cin/g, Cout) in the variable's
    /// type, and its report. A float64 layer folds and is probed in float64.
    static func fold(_ layer: CheckpointLayer, from bundle: TensorBundle, options: FoldOptions) throws(TensorFlowError) -> (kernel: (shape: [Int], bytes: [UInt8]), record: FoldedLayer) {
        let g = layer.geometry
        // A float64 layer is read once, exactly; the others through the core's float layer.
        let type = layer.kernel.dtype.elementType ?? .float32
        var record = FoldedLayer(name: layer.name, layout: .keras, geometry: g, elementType: type, stride: layer.stride, dilation: layer.dilation,
                                 tolerance: options.tolerance ?? type.defaultTolerance)
        let shape = [g.kernelHeight, g.kernelWidth, g.inChannelsPerGroup, g.outChannels]
        if type == .float64 {
            let exactLayer = try float64Layer(layer, from: bundle)
            let exact = exactLayer.foldedKernel()
            if options.verify {
                record.relativeError = exactLayer.probe(kernel: exact, patches: options.probePatches, seed: options.seed).relativeError
            }
            return ((shape, g.hwio(oihw: exact).withUnsafeBytes { Array($0) }), record)
        }
        let detected = try load(layer, from: bundle)
        let oihw = detected.layer.foldedKernel()
        // Verify what will be stored: the kernel rounded to the variable's type.
        let stored = ElementCodec.encode(oihw.values, as: type)
        if options.verify {
            let values = (try? stored.withUnsafeBytes { (raw) throws(TensorError) in try ElementCodec.decode(raw, as: type, count: oihw.count) }) ?? []
            record.relativeError = LayerProbe.compare(layer: detected.layer, kernel: values, patches: options.probePatches, seed: options.seed).relativeError
        }
        return ((shape, ElementCodec.encode(g.hwio(oihw: oihw.values), as: type)), record)
    }

    /// A float64 layer read exactly: W and D + I.
    static func float64Layer(_ layer: CheckpointLayer, from bundle: TensorBundle) throws(TensorFlowError) -> Float64Layer {
        func doubles(_ key: String) throws(TensorFlowError) -> [Double] {
            let stored = try bundle.tensorBytes(key)
            return withExtendedLifetime(stored.owner) {
                (0..<stored.entry.elementCount).map { stored.bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
            }
        }
        let w = try doubles(layer.kernel.key)
        var d = try layer.d.map { (variable) throws(TensorFlowError) in try doubles(variable.key) }
        if var trained = d {
            IdentityOffset.add(to: &trained, layout: .keras, geometry: layer.geometry)
            d = trained
        }
        do { return try Float64Layer(layout: .keras, geometry: layer.geometry, d: d, w: w) } catch {
            throw .inconsistentLayer(path: TensorBundle.indexPath(prefix: bundle.prefix), layer: layer.name, reason: "\(error)")
        }
    }
}

extension TrackableObjectGraph {
    /// Renames a variable's object as another layer class names it (a DO-DConv's `kernel`
    /// as DepthwiseConv2D's `depthwise_kernel`): the edges that hold it, its checkpoint key
    /// and its full name (`do_dw/kernel` -> `do_dw/depthwise_kernel`). Returns the new key,
    /// nil (nothing renamed) when the key is not the variable's path as TensorFlow spells it.
    mutating func renameVariable(_ variable: CheckpointVariable, to localName: String) -> String? {
        guard let old = variable.objectPath.last, variable.key.hasPrefix(variable.keyPath + "/") else { return nil }
        let path = Self.keyPath(variable.objectPath.dropLast() + [localName])
        let key = path + variable.key.dropFirst(variable.keyPath.count)
        for n in nodes.indices {
            for c in nodes[n].children.indices where nodes[n].children[c].nodeID == variable.nodeID && nodes[n].children[c].localName == old {
                nodes[n].children[c].localName = localName
            }
        }
        for a in nodes[variable.nodeID].attributes.indices where nodes[variable.nodeID].attributes[a].checkpointKey == variable.key {
            nodes[variable.nodeID].attributes[a].checkpointKey = key
            let fullName = nodes[variable.nodeID].attributes[a].fullName
            if fullName.hasSuffix("/" + old) { nodes[variable.nodeID].attributes[a].fullName = fullName.dropLast(old.count) + localName }
        }
        return key
    }
}
