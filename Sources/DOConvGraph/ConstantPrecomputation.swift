/// Constant work computed once: a graph runs on several inputs end to end, and the nodes
/// that read only initializers (a DO-Conv kernel composed from D and W, a shape computed from
/// constants) would otherwise run again for every input.
extension ReferenceExecutor {
    /// The graph with each node whose inputs are all constants replaced by initializers
    /// holding its outputs. Nodes the executor cannot run, nodes with subgraphs and nodes that
    /// produce a graph output are kept as they are, and so is anything that fails to compute
    /// (the run then reports it where it happens).
    public func precomputingConstants() -> Graph {
        var result = graph
        var constants = graph.initializers
        let outputs = Set(graph.outputs.map(\.name))
        var kept: [Node] = []
        for node in graph.nodes {
            let runnable = node.isStandardDomain && Self.kernels[node.opType] != nil
                && !node.attributes.contains { if case .graph = $0.value { return true }; if case .graphs = $0.value { return true }; return false }
            let constantInputs = node.inputs.allSatisfy { $0.isEmpty || constants[$0] != nil }
            guard runnable, constantInputs, !node.outputs.contains(where: outputs.contains),
                  let values = try? Self.run(node, inputs: node.inputs.map { $0.isEmpty ? nil : constants[$0] }, opset: graph.opset),
                  values.count >= node.outputs.filter({ !$0.isEmpty }).count else {
                kept.append(node)
                continue
            }
            for (name, value) in zip(node.outputs, values) where !name.isEmpty {
                constants[name] = value
                result.initializerOrder.append(name)
                result.initializers[name] = value
            }
        }
        result.nodes = kept
        // Constants nothing reads any more (D and W once the kernel is computed) are dropped.
        var read = Set(graph.outputs.map(\.name))
        func collect(_ nodes: [Node]) {
            for node in nodes {
                read.formUnion(node.inputs)
                for attribute in node.attributes {
                    switch attribute.value {
                    case .graph(let g): collect(g.nodes); read.formUnion(g.outputs.map(\.name))
                    case .graphs(let gs): for g in gs { collect(g.nodes); read.formUnion(g.outputs.map(\.name)) }
                    default: break
                    }
                }
            }
        }
        collect(kept)
        let inputs = Set(graph.inputs.map(\.name))
        result.initializerOrder = result.initializerOrder.filter { read.contains($0) || inputs.contains($0) }
        let live = Set(result.initializerOrder)
        result.initializers = result.initializers.filter { live.contains($0.key) }
        return result
    }
}
