import DOConvCore
import DOConvKeras

extension TensorFlowFoldResult {
    /// The folded model as a Keras legacy HDF5 full model: `configJSON` (the DO-Conv
    /// model's, from `keras_metadata.pb` or `--config`) with each folded DOConv2D made a
    /// Conv2D, and every layer's weights from the folded checkpoint, in the order the layer
    /// created them (its children's order in the object graph), so that
    /// `tf_keras.models.load_model` needs no custom class.
    /// A DO-DConv the fold wrote as a DepthwiseConv2D (its kernel `depthwise_kernel`, (M, N,
    /// Cin, Cout/Cin)) is one here too.
    func kerasModelFile(configJSON: String, configSource: String) throws(TensorFlowError) -> KerasModelFile {
        let indexPath = TensorBundle.indexPath(prefix: bundle.prefix)
        let config: KerasModelConfig
        do { config = try KerasModelConfig(json: configJSON, source: configSource) } catch {
            throw .config(path: configSource, reason: error.description)
        }
        // Each variable's place among its owner's children: the order the layer made them.
        var place: [Int: Int] = [:]
        for node in inputGraph.nodes {
            for (k, child) in node.children.enumerated() where place[child.nodeID] == nil { place[child.nodeID] = k }
        }
        var byLayer: [String: [CheckpointVariable]] = [:]
        for variable in variables where !variable.isTrainingState && !dropped.contains(variable.key) {
            byLayer[CheckpointLayerDetector.layerName(of: variable), default: []].append(variable)
        }
        var edit = KerasConfigEdit(folded: Set(summary.layers.map(\.name)))
        var depthwiseKernels = Set<String>()
        for layer in summary.layers where DepthwiseForm.applies(to: layer.geometry) {
            guard let kernel = byLayer[layer.name]?.first(where: { renamed[$0.key] != nil }) else { continue }
            edit.depthwise[layer.name] = layer.geometry.outChannels / layer.geometry.inChannels
            depthwiseKernels.insert(kernel.key)
        }
        var layers: [(name: String, weights: [KerasModelFile.Weight])] = []
        var placed = 0
        for layer in config.layers {
            let variables = (byLayer[layer.name] ?? []).sorted { (place[$0.nodeID] ?? 0) < (place[$1.nodeID] ?? 0) }
            placed += variables.count
            var weights: [KerasModelFile.Weight] = []
            for variable in variables {
                var weight = try weight(variable)
                if depthwiseKernels.contains(variable.key) { weight.name = DepthwiseForm.renamed(weight.name) }
                weights.append(weight)
            }
            layers.append((layer.name, weights))
        }
        let held = byLayer.values.map(\.count).reduce(0, +)
        guard placed == held else {
            let orphans = byLayer.keys.filter { name in !config.layers.contains { $0.name == name } }.sorted()
            throw .unsupported(path: indexPath, reason: "the checkpoint holds weights of layers the model config does not list (\(orphans.prefix(5).joined(separator: ", "))): nested models are not written as Keras files")
        }
        return KerasModelFile(modelConfigJSON: config.rewrittenJSON(edit), layers: layers)
    }

    /// A variable's Keras weight: `full_name:0`, its folded shape and values.
    private func weight(_ variable: CheckpointVariable) throws(TensorFlowError) -> KerasModelFile.Weight {
        let name = variable.fullName + ":0"
        let (shape, bytes): ([Int], [UInt8])
        if let folded = replaced[variable.key] {
            (shape, bytes) = folded
        } else {
            (shape, bytes) = (variable.shape, try bundle.tensorBytes(variable.key).array)
        }
        let count = Tensor.elementCount(of: shape) ?? 0
        switch variable.dtype {
        case .float:
            guard let values = try? bytes.withUnsafeBytes({ (raw) throws(TensorError) in try ElementCodec.decode(raw, as: .float32, count: count) }) else {
                throw .corruptData(path: TensorBundle.indexPath(prefix: bundle.prefix), reason: "variable '\(variable.fullName)': \(bytes.count) bytes for \(count) float32 values")
            }
            return .init(name: name, shape: shape, values: .float32(values))
        case .double:
            let values = bytes.withUnsafeBytes { raw in (0..<count).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) } }
            return .init(name: name, shape: shape, values: .float64(values))
        default:
            throw .unsupported(path: TensorBundle.indexPath(prefix: bundle.prefix), reason: "variable '\(variable.fullName)' is \(variable.dtype.name); Keras files are written from float32 and float64 weights only")
        }
    }
}
