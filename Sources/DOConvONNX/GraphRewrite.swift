import CONNXProto

/// Edits a graph after folding: readers of each composed kernel switch to its new
/// initializer, then the composition's nodes, initializers, graph inputs and value_info
/// entries go once nothing reads them. Nothing else changes.
enum GraphRewrite {
    /// One composed kernel and the initializer that replaces it.
    struct Replacement {
        var match: KernelCompositionMatch
        var kernel: UnsafeMutablePointer<Onnx__TensorProto>
    }

    static func apply(_ replacements: [Replacement], to model: ONNXModel, index: GraphIndex) {
        let graph = model.graph
        var candidateNodes = Set<Int>()
        var candidateInitializers = Set<String>()
        for replacement in replacements {
            let name = TensorCodec.name(replacement.kernel)
            for use in index.uses(of: replacement.match.kernelValue) {
                Proto.replace(&index.nodes[use.node].pointer.pointee.input[use.slot], with: name)
            }
            graph.pointee.initializer = Proto.appending(replacement.kernel, to: graph.pointee.initializer, count: graph.pointee.n_initializer)
            graph.pointee.n_initializer += 1
            if replacement.match.external { model.externalizeOnSave.insert(UnsafeMutableRawPointer(replacement.kernel)) }
            candidateNodes.formUnion(replacement.match.nodes)
            candidateInitializers.formUnion(replacement.match.initializers)
        }

        // Readers per value after the rewiring, then peel off candidates nobody reads.
        var readers: [String: Int] = [:]
        for node in index.nodes { for input in node.inputs where !input.isEmpty { readers[input, default: 0] += 1 } }
        var removedNodes = Set<Int>()
        var changed = true
        while changed {
            changed = false
            for k in candidateNodes where !removedNodes.contains(k) {
                let node = index.nodes[k]
                let dead = node.outputs.allSatisfy { $0.isEmpty || ((readers[$0] ?? 0) == 0 && !index.isPinned($0)) }
                guard dead else { continue }
                removedNodes.insert(k)
                for input in node.inputs where !input.isEmpty { readers[input, default: 0] -= 1 }
                changed = true
            }
        }
        let removedInitializers = candidateInitializers.filter { (readers[$0] ?? 0) == 0 && !index.isPinned($0) }
        var removedValues = Set(removedInitializers)
        for k in removedNodes { removedValues.formUnion(index.nodes[k].outputs) }

        let removedPointers = Set(removedNodes.map { UnsafeMutableRawPointer(index.nodes[$0].pointer) })
        graph.pointee.n_node = Proto.removeMessages(graph.pointee.node, count: graph.pointee.n_node) {
            removedPointers.contains(UnsafeMutableRawPointer($0))
        }
        graph.pointee.n_initializer = Proto.removeMessages(graph.pointee.initializer, count: graph.pointee.n_initializer) {
            removedInitializers.contains(TensorCodec.name($0))
        }
        graph.pointee.n_input = Proto.removeMessages(graph.pointee.input, count: graph.pointee.n_input) {
            removedInitializers.contains(Proto.string($0.pointee.name))
        }
        graph.pointee.n_value_info = Proto.removeMessages(graph.pointee.value_info, count: graph.pointee.n_value_info) {
            removedValues.contains(Proto.string($0.pointee.name))
        }
    }

    /// `base`, or `base` with a numeric suffix, so that it names nothing else in the graph.
    static func freshName(_ base: String, taken: inout Set<String>) -> String {
        var name = base
        var suffix = 1
        while taken.contains(name) {
            name = "\(base)_\(suffix)"
            suffix += 1
        }
        taken.insert(name)
        return name
    }
}
