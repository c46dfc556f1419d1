import CONNXProto
import DOConvCore

/// Folds each inference-mode BatchNormalization into the Conv before it (the Conv's output
/// feeding nothing else), including Convs that came out of a DO-Conv fold. Each fusion is
/// probed like a folded layer.
struct BatchNormFuser {
    let model: ONNXModel
    let tolerance: Double?

    func fuse() throws(ONNXError) -> [FusedBatchNorm] {
        let index = GraphIndex(graph: model.graph)
        let constants = ConstantResolver(index: index, codec: model.codec)
        var taken = index.allNames
        var edit = GraphEdit()
        var fused: [FusedBatchNorm] = []
        for (b, bn) in index.nodes.enumerated() where bn.isOp("BatchNormalization") {
            let inputs = bn.inputs
            guard inputs.count == 5, bn.outputs.dropFirst().allSatisfy(\.isEmpty),
                  (bn.intAttribute("training_mode") ?? 0) == 0, (bn.intAttribute("spatial") ?? 1) == 1,
                  let c = index.producer[inputs[0]], index.nodes[c].isOp("Conv"),
                  index.uses(of: inputs[0]).count == 1, !index.isPinned(inputs[0]) else { continue }
            let conv = index.nodes[c]
            guard conv.inputs.count >= 2, let weightTensor = index.initializers[conv.inputs[1]] else { continue }
            let hasBias = conv.inputs.count > 2 && !conv.inputs[2].isEmpty
            // Only constants fold: parameters from anything computed leave the BN alone.
            guard let parameters = try? inputs[1...].map({ (name) throws(MatchFailure) in try constants.float(name) }),
                  let weight = try? constants.float(conv.inputs[1]) else { continue }
            var bias: ConstantValue?
            if hasBias {
                guard let value = try? constants.float(conv.inputs[2]) else { continue }
                bias = value
            }
            let epsilon = Double(bn.floatAttribute("epsilon") ?? 1e-5)
            // float64 convs fuse in float64, from the values read exactly.
            let all = parameters + [weight] + (bias.map { [$0] } ?? [])
            let exact = weight.type == .float64 && all.allSatisfy { $0.exact != nil }
            let folding: BatchNormFolding
            let result: (kernel: [Double], bias: [Double])
            let relativeError: Double
            do {
                if exact {
                    let p = parameters.map { $0.exact ?? [] }
                    folding = try BatchNormFolding(gamma: p[0], beta: p[1], mean: p[2], variance: p[3], epsilon: epsilon)
                    result = try folding.fold(kernel: weight.exact ?? [], bias: bias?.exact)
                    relativeError = folding.probe(kernel: weight.exact ?? [], bias: bias?.exact, fused: result)
                } else {
                    folding = try BatchNormFolding(gamma: parameters[0].values, beta: parameters[1].values,
                                                   mean: parameters[2].values, variance: parameters[3].values, epsilon: epsilon)
                    let rounded = try folding.fold(kernel: weight.values, bias: bias?.values)
                    relativeError = folding.probe(kernel: weight.values, bias: bias?.values, fused: rounded)
                    result = (rounded.kernel.map(Double.init), rounded.bias.map(Double.init))
                }
            } catch {
                continue // channel counts that do not fit: not a BN of this conv's output
            }
            let name = bn.name.isEmpty ? conv.name : bn.name
            fused.append(FusedBatchNorm(name: name, relativeError: relativeError, tolerance: tolerance ?? weight.type.defaultTolerance))

            let base = conv.inputs[1]
            let kernelName = GraphRewrite.freshName(base + ".bn_fused", taken: &taken)
            let biasName = GraphRewrite.freshName(base + ".bn_fused_bias", taken: &taken)
            edit.newInitializers.append((TensorCodec.makeTensor(name: kernelName, shape: weight.shape, type: weight.type, doubles: result.kernel),
                                         TensorCodec.isExternal(weightTensor)))
            edit.newInitializers.append((TensorCodec.makeTensor(name: biasName, shape: [result.bias.count], type: weight.type, doubles: result.bias), false))
            let output = bn.outputs[0]
            edit.nodeChanges.append((c, { node in
                NodeEdit.setInput(node, 1, to: kernelName)
                NodeEdit.setInput(node, 2, to: biasName)
                NodeEdit.setOutput(node, 0, to: output)
            }))
            edit.removedNodes.insert(b)
            edit.removedValues.insert(inputs[0])
            edit.candidateInitializers.formUnion(conv.inputs[1...].filter { !$0.isEmpty })
            edit.candidateInitializers.formUnion(inputs[1...])
            for parameter in parameters + [weight] + (bias.map { [$0] } ?? []) { edit.candidateNodes.formUnion(parameter.nodes) }
        }
        if !edit.isEmpty { GraphRewrite.apply(edit, to: model, index: index) }
        return fused
    }
}
