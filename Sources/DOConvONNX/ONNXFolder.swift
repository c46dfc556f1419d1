import CONNXProto
import DOConvCore

/// Folds every DO-Conv layer of an ONNX model into a plain Conv kernel, in place.
public enum ONNXFolder {
    /// The metadata key under which a folded model records what was folded.
    public static let metadataKey = "doconv.folded"

    /// Finds every DO-Conv layer without changing the model (for reports).
    public static func detect(_ model: ONNXModel, options: FoldOptions = FoldOptions()) throws(ONNXError) -> Detection {
        let index = GraphIndex(graph: model.graph)
        let (compositions, rejectedCompositions) = try KernelCompositionDetector(index: index, codec: model.codec).detect()
        let (pairs, rejectedPairs) = try FeatureCompositionDetector(index: index, codec: model.codec, foldSeparable: options.foldSeparable).detect()
        let nested = NestedCompositionScan(model: model).scan()
        return Detection(layers: compositions.map(\.detected) + pairs.map(\.detected), rejected: rejectedCompositions + rejectedPairs + nested)
    }

    /// Detects, folds and verifies every layer, then rewrites the graph (and, with
    /// `fuseBatchNorm`, folds each BatchNormalization into the Conv before it). The caller
    /// decides whether to save: a summary with failures must not be written.
    public static func fold(_ model: ONNXModel, options: FoldOptions = FoldOptions(), fuseBatchNorm: Bool = false) throws(ONNXError) -> FoldSummary {
        let index = GraphIndex(graph: model.graph)
        let (compositions, rejectedCompositions) = try KernelCompositionDetector(index: index, codec: model.codec).detect()
        let (pairs, rejectedPairs) = try FeatureCompositionDetector(index: index, codec: model.codec, foldSeparable: options.foldSeparable).detect()
        var summary = FoldSummary(rejected: rejectedCompositions + rejectedPairs + NestedCompositionScan(model: model).scan())
        (summary.parametersBefore, summary.bytesBefore) = model.initializerTotals
        var taken = index.allNames
        var edit = GraphEdit()

        for match in compositions {
            let tensor = TensorCodec.makeTensor(name: GraphRewrite.freshName(match.kernelName, taken: &taken), shape: [], type: match.elementType, values: [])
            summary.layers.append(try fold(match.detected, into: tensor, model: model, options: options))
            // D and W were read for the last time (unless shared): their pages of the input
            // file need not stay in this process while the rest is folded.
            for source in match.initializers { model.releaseMappedPages(of: source, index: index) }
            let name = TensorCodec.name(tensor)
            for use in index.uses(of: match.kernelValue) {
                edit.nodeChanges.append((use.node, { NodeEdit.setInput($0, use.slot, to: name) }))
            }
            edit.newInitializers.append((tensor, match.external))
            edit.candidateNodes.formUnion(match.nodes)
            edit.candidateInitializers.formUnion(match.initializers)
        }

        for pair in pairs {
            // The depthwise conv becomes the folded conv: its geometry, the pair's output,
            // the folded kernel and bias, and the 1x1 conv's groups.
            let pointwise = index.nodes[pair.pointwise]
            let base = pointwise.inputs[1]
            let kernel = TensorCodec.makeTensor(name: GraphRewrite.freshName(base + ".folded", taken: &taken), shape: [], type: pair.elementType, values: [])
            summary.layers.append(try fold(pair.detected, into: kernel, model: model, options: options))
            var layerRecord = summary.layers.removeLast()
            layerRecord.form = .featureComposition
            summary.layers.append(layerRecord)
            edit.newInitializers.append((kernel, pair.external))
            let kernelName = TensorCodec.name(kernel)
            var biasName: String?
            if let bias = pair.bias {
                let name = GraphRewrite.freshName(base + ".folded_bias", taken: &taken)
                edit.newInitializers.append((TensorCodec.makeTensor(name: name, shape: [bias.count], type: pair.elementType, values: bias), false))
                biasName = name
            }
            let output = pointwise.outputs[0]
            let groups = Int64(pair.layer.geometry.groups)
            edit.nodeChanges.append((pair.depthwise, { node in
                NodeEdit.setOutput(node, 0, to: output)
                NodeEdit.setInput(node, 1, to: kernelName)
                if let biasName { NodeEdit.setInput(node, 2, to: biasName) } else { NodeEdit.truncateInputs(node, to: 2) }
                NodeEdit.setInt(node, "group", groups)
            }))
            edit.removedNodes.insert(pair.pointwise)
            edit.removedValues.formUnion(index.nodes[pair.depthwise].outputs.prefix(1))
            edit.candidateInitializers.formUnion(pair.initializers)
        }

        if !edit.isEmpty { GraphRewrite.apply(edit, to: model, index: index) }
        if fuseBatchNorm {
            let fused = try BatchNormFuser(model: model, tolerance: options.tolerance).fuse()
            summary.fusedBatchNorms = fused
            if !fused.isEmpty { summary.notes.append("fused \(fused.count) BatchNormalization into the Conv before it") }
        }
        if !summary.layers.isEmpty || !summary.fusedBatchNorms.isEmpty {
            model.setMetadata(key: metadataKey, value: metadataValue(summary.layers))
        }
        (summary.parametersAfter, summary.bytesAfter) = model.initializerTotals
        return summary
    }

    /// Folds one layer into `tensor` (a fresh, empty initializer that gets the kernel) and
    /// verifies the kernel as stored.
    private static func fold(_ detected: DetectedLayer, into tensor: UnsafeMutablePointer<Onnx__TensorProto>, model: ONNXModel, options: FoldOptions) throws(ONNXError) -> FoldedLayer {
        TensorCodec.storeKernel(of: detected.layer, type: detected.elementType, in: tensor)
        var record = FoldedLayer(
            name: detected.name, layout: detected.layer.layout, geometry: detected.layer.geometry, elementType: detected.elementType,
            stride: detected.stride, dilation: detected.dilation, relativeError: nil,
            tolerance: options.tolerance ?? detected.elementType.defaultTolerance)
        if options.verify {
            // Probe the kernel as stored (after rounding to the element type), not as computed.
            let stored = UnsafeRawBufferPointer(start: tensor.pointee.raw_data.data, count: tensor.pointee.raw_data.len)
            record.relativeError = KernelStorage.withStoredValues(stored, as: detected.elementType) { kernel in
                LayerProbe.compare(layer: detected.layer, kernel: kernel, patches: options.probePatches, seed: options.seed).relativeError
            }
        }
        return record
    }

    /// A compact JSON record of the folded layers.
    static func metadataValue(_ layers: [FoldedLayer]) -> String {
        let entries = layers.map { layer -> String in
            let g = layer.geometry
            return "{\"layer\":\(ReportFormat.jsonString(layer.name)),\"kind\":\"\(layer.kind.rawValue)\",\"layout\":\"\(layer.layout.rawValue)\","
                + "\"in_channels\":\(g.inChannels),\"out_channels\":\(g.outChannels),\"kernel\":[\(g.kernelHeight),\(g.kernelWidth)],"
                + "\"groups\":\(g.groups),\"d_mul\":\(g.depthMultiplier)}"
        }
        return "[" + entries.joined(separator: ",") + "]"
    }
}

extension ONNXModel {
    /// Saves the model to `path` atomically (see `ModelWriter.save`).
    public func save(to path: String) throws(ONNXError) {
        try ModelWriter.save(self, to: path)
    }
}
