/// A BatchNormalization that can be folded into the Conv2D whose output it normalizes.
struct BatchNormPair {
    var batchNorm: KerasModelConfig.Layer
    var conv: KerasModelConfig.Layer
}

/// Finds, in a model config, each BatchNormalization that reads nothing but a Conv2D's
/// output (in inference mode, over the channels-last axis) where nothing else reads that
/// output, so that the two can become one Conv2D.
struct KerasBatchNormMatcher {
    let config: KerasModelConfig
    /// The layers that are Conv2D once this run has folded (plain Conv2D and the DOConv2D
    /// and SeparableConv2D layers it folds).
    let convs: Set<String>

    /// The layer classes whose output a BatchNormalization could be folded into, for the
    /// notes that say why one was not.
    private static let convClasses: Set<String> = ["Conv2D", "DOConv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose"]

    /// The pairs to fuse, and a note for each BatchNormalization after a conv that is left
    /// alone, saying why.
    func match() -> (pairs: [BatchNormPair], skipped: [String]) {
        let readers = readerCounts()
        var pairs: [BatchNormPair] = []
        var skipped: [String] = []
        for (k, batchNorm) in config.layers.enumerated() where batchNorm.className == "BatchNormalization" {
            guard let conv = input(of: batchNorm, at: k), Self.convClasses.contains(conv.className) else { continue }
            if let reason = obstacle(batchNorm, after: conv, readers: readers) {
                skipped.append("BatchNormalization '\(batchNorm.name)' not fused: \(reason)")
            } else {
                pairs.append(BatchNormPair(batchNorm: batchNorm, conv: conv))
            }
        }
        return (pairs, skipped)
    }

    /// The layer whose output the BatchNormalization at position `k` reads: the layer
    /// before it in a Sequential model, else the one its first call's only input comes
    /// from (nil when it reads several tensors or none).
    private func input(of batchNorm: KerasModelConfig.Layer, at k: Int) -> KerasModelConfig.Layer? {
        if config.isSequential { return k > 0 ? config.layers[k - 1] : nil }
        guard let first = batchNorm.inboundNodes.first, first.count == 1 else { return nil }
        return config.layer(named: first[0].layer)
    }

    /// Why `batchNorm` cannot be folded into `conv`, nil when it can.
    private func obstacle(_ batchNorm: KerasModelConfig.Layer, after conv: KerasModelConfig.Layer, readers: [String: Int]) -> String? {
        guard convs.contains(conv.name) else {
            return "'\(conv.name)' is a \(conv.className) that stays one (only a Conv2D takes the fused bias)"
        }
        guard conv.hasLinearActivation else {
            return "'\(conv.name)' applies its \(conv.activation ?? "") activation before it"
        }
        // Keras kernels keep the output channel last; the BatchNormalization must scale
        // that axis of a channels-last output (rank 4: axis 3 or -1).
        guard conv.dataFormat != "channels_first", let axes = batchNorm.axes, axes == [-1] || axes == [3] else {
            return "it does not normalize the channels of a channels-last Conv2D output (axis \(batchNorm.axes.map { "\($0)" } ?? "unknown"))"
        }
        guard batchNorm.renorm != true else { return "it uses batch renormalization" }
        guard !batchNorm.callsInTrainingMode else { return "it is called with training=True" }
        if !config.isSequential {
            guard batchNorm.inboundNodes.count == 1 else { return "it is called more than once" }
            let reference = batchNorm.inboundNodes[0][0]
            guard conv.inboundNodes.count == 1, reference.node == 0, reference.tensor == 0 else {
                return "'\(conv.name)' is called more than once"
            }
            guard readers[conv.name, default: 0] == 1 else {
                return "the output of '\(conv.name)' is also read by other layers or is a model output"
            }
        }
        return nil
    }

    /// How many times each layer's output is read, by layer calls and as a model output.
    private func readerCounts() -> [String: Int] {
        var counts: [String: Int] = [:]
        for layer in config.layers {
            for node in layer.inboundNodes {
                for reference in node { counts[reference.layer, default: 0] += 1 }
            }
        }
        for reference in config.outputs { counts[reference.layer, default: 0] += 1 }
        return counts
    }
}
