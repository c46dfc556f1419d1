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
            let epsilon = bn.floatAttribute("epsilon") ?? 1e-5
            let folding: BatchNormFolding
            let result: (kernel: [Float], bias: [Float])
            do {
                folding = try BatchNormFolding(gamma: parameters[0].values, beta: parameters[1].values,
                                               mean: parameters[2].values, variance: parameters[3].values, epsilon: epsilon)
                result = try folding.fold(kernel: weight.values, bias: bias?.values)
            } catch {
                continue // channel counts that do not fit: not a BN of this conv's output
            }
            let name = bn.name.isEmpty ? conv.name : bn.name
            fused.append(FusedBatchNorm(
                name: name, relativeError: folding.probe(kernel: weight.values, bias: bias?.values, fused: result),
                tolerance: tolerance ?? weight.type.defaultTolerance))

            let base = conv.inputs[1]
            let kernelName = GraphRewrite.freshName(base + ".bn_fused", taken: &taken)
            let biasName = GraphRewrite.freshName(base + ".bn_fused_bias", taken: &taken)
            edit.newInitializers.append((TensorCodec.makeTensor(name: kernelName, shape: weight.shape, type: weight.type, values: result.kernel),
                                         TensorCodec.isExternal(weightTensor)))
            edit.newInitializers.append((TensorCodec.makeTensor(name: biasName, shape: [result.bias.count], type: weight.type, values: result.bias), false))
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
