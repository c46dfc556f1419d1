#if canImport(Glibc)
import Glibc
#endif
import CONNXProto

/// One set of changes to a graph: new initializers, edits of surviving nodes, nodes removed
/// outright, and nodes and initializers to remove once nothing reads them. Nothing else
/// changes.
struct GraphEdit {
    /// Initializers to append, and whether each goes to external data on save.
    var newInitializers: [(tensor: UnsafeMutablePointer<Onnx__TensorProto>, external: Bool)] = []
    /// Changes to nodes that stay (rewired inputs, outputs, attributes).
    var nodeChanges: [(node: Int, change: (UnsafeMutablePointer<Onnx__NodeProto>) -> Void)] = []
    /// Nodes replaced by another (a folded pair's 1x1 conv, a fused BatchNormalization).
    var removedNodes = Set<Int>()
    /// Nodes and initializers of folded subgraphs: removed once nothing reads them.
    var candidateNodes = Set<Int>()
    var candidateInitializers = Set<String>()
    /// Values that no longer exist because a surviving node was rewired to produce another.
    var removedValues = Set<String>()

    var isEmpty: Bool { newInitializers.isEmpty && nodeChanges.isEmpty && removedNodes.isEmpty }
}

/// Applies a `GraphEdit`: also drops the graph inputs and value_info entries of whatever it
/// removes.
enum GraphRewrite {
    /// `graph` is the graph `index` describes: the main graph unless given (a subgraph).
    static func apply(_ edit: GraphEdit, to model: ONNXModel, graph subgraph: UnsafeMutablePointer<Onnx__GraphProto>? = nil, index: GraphIndex) {
        let graph = subgraph ?? model.graph
        for (node, change) in edit.nodeChanges { change(index.nodes[node].pointer) }
        for (tensor, external) in edit.newInitializers {
            graph.pointee.initializer = Proto.appending(tensor, to: graph.pointee.initializer, count: graph.pointee.n_initializer)
            graph.pointee.n_initializer += 1
            if external { model.externalizeOnSave.insert(UnsafeMutableRawPointer(tensor)) }
        }

        // Readers per value after the edits, then peel off candidates nobody reads.
        var removedNodes = edit.removedNodes
        var readers: [String: Int] = [:]
        for (k, node) in index.nodes.enumerated() where !removedNodes.contains(k) {
            for input in node.inputs where !input.isEmpty { readers[input, default: 0] += 1 }
        }
        var changed = true
        while changed {
            changed = false
            for k in edit.candidateNodes where !removedNodes.contains(k) {
                let node = index.nodes[k]
                let dead = node.outputs.allSatisfy { $0.isEmpty || ((readers[$0] ?? 0) == 0 && !index.isPinned($0)) }
                guard dead else { continue }
                removedNodes.insert(k)
                for input in node.inputs where !input.isEmpty { readers[input, default: 0] -= 1 }
                changed = true
            }
        }
        let removedInitializers = edit.candidateInitializers.filter { (readers[$0] ?? 0) == 0 && !index.isPinned($0) }
        // Values that no longer exist: outputs of removed nodes that no surviving node produces.
        var produced = Set<String>()
        for k in index.nodes.indices where !removedNodes.contains(k) { produced.formUnion(index.nodes[k].outputs) }
        var removedValues = Set(removedInitializers).union(edit.removedValues)
        for k in removedNodes { removedValues.formUnion(index.nodes[k].outputs.filter { !produced.contains($0) }) }

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

/// Small node edits the rewrites share.
enum NodeEdit {
    /// Sets input `slot` (appending empty inputs up to it when the node has fewer).
    static func setInput(_ node: UnsafeMutablePointer<Onnx__NodeProto>, _ slot: Int, to name: String) {
        while node.pointee.n_input <= slot {
            node.pointee.input = Proto.appending(Proto.duplicate(""), to: node.pointee.input, count: node.pointee.n_input)
            node.pointee.n_input += 1
        }
        Proto.replace(&node.pointee.input[slot], with: name)
    }

    /// Drops inputs from `slot` on (an optional bias that no longer exists).
    static func truncateInputs(_ node: UnsafeMutablePointer<Onnx__NodeProto>, to count: Int) {
        while node.pointee.n_input > count {
            node.pointee.n_input -= 1
            free(node.pointee.input[node.pointee.n_input])
        }
    }

    static func setOutput(_ node: UnsafeMutablePointer<Onnx__NodeProto>, _ slot: Int, to name: String) {
        Proto.replace(&node.pointee.output[slot], with: name)
    }

    /// Sets an INT attribute that the node already has, or adds it.
    static func setInt(_ node: UnsafeMutablePointer<Onnx__NodeProto>, _ name: String, _ value: Int64) {
        if let attribute = NodeView(pointer: node).attribute(name) {
            attribute.pointee.i = value
            attribute.pointee.has_i = 1
            return
        }
        let attribute = Proto.make { (a: UnsafeMutablePointer<Onnx__AttributeProto>) in
            onnx__attribute_proto__init(a)
            a.pointee.name = Proto.duplicate(name)
            a.pointee.has_type = 1
            a.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT
            a.pointee.has_i = 1
            a.pointee.i = value
        }
        node.pointee.attribute = Proto.appending(attribute, to: node.pointee.attribute, count: node.pointee.n_attribute)
        node.pointee.n_attribute += 1
    }
}
