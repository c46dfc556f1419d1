import CONNXProto
import DOConvCore

/// Folds every DO-Conv layer of an ONNX model into a plain Conv kernel, in place.
public enum ONNXFolder {
    /// The metadata key under which a folded model records what was folded.
    public static let metadataKey = "doconv.folded"

    /// Finds every DO-Conv layer without changing the model (for reports).
    public static func detect(_ model: ONNXModel) throws(ONNXError) -> Detection {
        let index = GraphIndex(graph: model.graph)
        let (matches, rejected) = try KernelCompositionDetector(index: index, codec: model.codec).detect()
        return Detection(layers: matches.map(\.detected), rejected: rejected)
    }

    /// Detects, folds and verifies every layer, then rewrites the graph. The caller decides
    /// whether to save: a summary with `failures` must not be written.
    public static func fold(_ model: ONNXModel, options: FoldOptions = FoldOptions()) throws(ONNXError) -> FoldSummary {
        let index = GraphIndex(graph: model.graph)
        let detector = KernelCompositionDetector(index: index, codec: model.codec)
        let (matches, rejected) = try detector.detect()
        var summary = FoldSummary(rejected: rejected)
        (summary.parametersBefore, summary.bytesBefore) = model.initializerTotals
        var taken = index.allNames
        var replacements: [GraphRewrite.Replacement] = []
        for match in matches {
            let kernel = match.layer.foldedKernel()
            let name = GraphRewrite.freshName(match.kernelName, taken: &taken)
            let tensor = TensorCodec.makeTensor(name: name, shape: kernel.shape, type: match.elementType, values: kernel.values)
            replacements.append(.init(match: match, kernel: tensor))
            var layer = FoldedLayer(
                name: match.name, layout: match.layer.layout, geometry: match.layer.geometry, elementType: match.elementType,
                stride: match.stride, dilation: match.dilation, relativeError: nil,
                tolerance: options.tolerance ?? match.elementType.defaultTolerance)
            if options.verify {
                // Probe the kernel as stored (after rounding to the element type), not as computed.
                let stored = try model.codec.floats(of: tensor).2
                layer.relativeError = LayerProbe.compare(layer: match.layer, kernel: stored, patches: options.probePatches, seed: options.seed).relativeError
            }
            summary.layers.append(layer)
        }
        guard !replacements.isEmpty else { return summary }
        GraphRewrite.apply(replacements, to: model, index: index)
        model.setMetadata(key: metadataKey, value: metadataValue(summary.layers))
        (summary.parametersAfter, summary.bytesAfter) = model.initializerTotals
        return summary
    }

    /// A compact JSON record of the folded layers.
    static func metadataValue(_ layers: [FoldedLayer]) -> String {
        let entries = layers.map { layer -> String in
            let g = layer.geometry
            return "{\"layer\":\(jsonString(layer.name)),\"kind\":\"\(layer.kind.rawValue)\",\"layout\":\"\(layer.layout.rawValue)\","
                + "\"in_channels\":\(g.inChannels),\"out_channels\":\(g.outChannels),\"kernel\":[\(g.kernelHeight),\(g.kernelWidth)],"
                + "\"groups\":\(g.groups),\"d_mul\":\(g.depthMultiplier)}"
        }
        return "[" + entries.joined(separator: ",") + "]"
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension ONNXModel {
    /// Saves the model to `path` atomically (see `ModelWriter.save`).
    public func save(to path: String) throws(ONNXError) {
        try ModelWriter.save(self, to: path)
    }
}
