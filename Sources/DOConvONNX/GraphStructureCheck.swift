import CONNXProto

/// Checks that a graph can run at all: every node input and graph output names a value
/// that a graph input, an initializer or a node provides (or, in a subgraph, the enclosing
/// scope), and the nodes have no cycle. The analyses after it walk producers freely; on a
/// graph that fails this they would report a near-miss where the model is simply broken.
struct GraphStructureCheck {
    let path: String

    func check(_ graph: UnsafeMutablePointer<Onnx__GraphProto>) throws(ONNXError) {
        try check(graph, outerScope: [])
    }

    private func check(_ graph: UnsafeMutablePointer<Onnx__GraphProto>, outerScope: Set<String>) throws(ONNXError) {
        let nodes = Proto.elements(graph.pointee.node, graph.pointee.n_node).compactMap { $0.map(NodeView.init) }
        var available = outerScope
        for info in Proto.elements(graph.pointee.input, graph.pointee.n_input) {
            if let info { available.insert(Proto.string(info.pointee.name)) }
        }
        // Two initializers of one name leave it open which value a reader takes.
        var initializers = Set<String>()
        for tensor in Proto.elements(graph.pointee.initializer, graph.pointee.n_initializer) {
            guard let tensor else { continue }
            let name = TensorCodec.name(tensor)
            guard initializers.insert(name).inserted else { throw malformed("initializer '\(name)' is defined twice") }
            available.insert(name)
        }
        for sparse in Proto.elements(graph.pointee.sparse_initializer, graph.pointee.n_sparse_initializer) {
            if let values = sparse?.pointee.values { available.insert(TensorCodec.name(values)) }
        }
        var producers: [String: [Int]] = [:]
        for (k, node) in nodes.enumerated() {
            for output in node.outputs where !output.isEmpty { producers[output, default: []].append(k) }
        }
        available.formUnion(producers.keys)

        for node in nodes {
            for input in node.inputs where !input.isEmpty && !available.contains(input) {
                throw malformed("node \(Self.describe(node)) reads '\(input)', which no node, initializer or graph input provides")
            }
        }
        for info in Proto.elements(graph.pointee.output, graph.pointee.n_output) {
            guard let info else { continue }
            let name = Proto.string(info.pointee.name)
            if !name.isEmpty, !available.contains(name) {
                throw malformed("graph output '\(name)' is not provided by any node, initializer or graph input")
            }
        }
        if let node = Self.nodeOnCycle(nodes, producers: producers) {
            throw malformed("the graph has a cycle through node \(Self.describe(nodes[node]))")
        }
        // Subgraphs (If/Loop/Scan bodies) see every value of this graph.
        for node in nodes {
            for attribute in Proto.elements(node.pointer.pointee.attribute, node.pointer.pointee.n_attribute) {
                guard let attribute else { continue }
                if let g = attribute.pointee.g { try check(g, outerScope: available) }
                for g in Proto.elements(attribute.pointee.graphs, attribute.pointee.n_graphs) {
                    if let g { try check(g, outerScope: available) }
                }
            }
        }
    }

    /// A node on a cycle, or nil when the nodes can be ordered (Kahn's algorithm; then a walk
    /// back from a node left over, which must reach a cycle).
    static func nodeOnCycle(_ nodes: [NodeView], producers: [String: [Int]]) -> Int? {
        var dependencies = [[Int]](repeating: [], count: nodes.count)
        var readers = [[Int]](repeating: [], count: nodes.count)
        for (k, node) in nodes.enumerated() {
            let sources = Set(node.inputs.flatMap { producers[$0] ?? [] })
            dependencies[k] = Array(sources)
            for source in sources { readers[source].append(k) }
        }
        var pending = dependencies.map(\.count)
        var ready = pending.indices.filter { pending[$0] == 0 }
        var ordered = 0
        while let k = ready.popLast() {
            ordered += 1
            for reader in readers[k] {
                pending[reader] -= 1
                if pending[reader] == 0 { ready.append(reader) }
            }
        }
        guard ordered < nodes.count, var current = pending.indices.first(where: { pending[$0] > 0 }) else { return nil }
        // Every node left over has a dependency left over; following them must repeat.
        var seen = Set<Int>()
        while seen.insert(current).inserted {
            guard let next = dependencies[current].first(where: { pending[$0] > 0 }) else { return current }
            current = next
        }
        return current
    }

    /// "'name' (Op)", or "Op -> 'output'" for an unnamed node.
    static func describe(_ node: NodeView) -> String {
        if !node.name.isEmpty { return "'\(node.name)' (\(node.opType))" }
        return "\(node.opType) -> '\(node.outputs.first ?? "")'"
    }

    private func malformed(_ reason: String) -> ONNXError { .malformed(path: path, reason: reason) }
}
