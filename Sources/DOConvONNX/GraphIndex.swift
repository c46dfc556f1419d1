import CONNXProto

/// Who produces and who reads each value of a graph, built once per analysis.
struct GraphIndex {
    /// A use of a value: node `node` reads it as input number `slot`.
    struct Use: Equatable {
        var node: Int
        var slot: Int
    }

    let nodes: [NodeView]
    private(set) var producer: [String: Int] = [:]
    private(set) var consumers: [String: [Use]] = [:]
    private(set) var initializers: [String: UnsafeMutablePointer<Onnx__TensorProto>] = [:]
    let graphInputs: Set<String>
    let graphOutputs: Set<String>
    /// Values read from inside subgraphs (If/Loop/Scan bodies): never removable.
    let subgraphReads: Set<String>
    /// Declared element types (TensorProto data type codes) from inputs, outputs and value_info.
    private(set) var declaredTypes: [String: Int32] = [:]
    /// Declared shapes from inputs, outputs and value_info: nil for a dim without a fixed size.
    private(set) var declaredShapes: [String: [Int?]] = [:]

    /// For a subgraph, the graphs that enclose it, outermost first (the main graph's index,
    /// then each body on the way down): its nodes may read their values by name.
    let enclosing: [GraphIndex]

    /// `outerInitializers`: for a subgraph (If/Loop/Scan body), the initializers of the
    /// enclosing graphs, which its nodes may read as constants (ONNX forbids shadowing, so a
    /// graph's own names never clash with them); `enclosing`, the enclosing graphs' indexes,
    /// through which values computed there (an `Identity` of an initializer) resolve.
    init(graph: UnsafeMutablePointer<Onnx__GraphProto>, outerInitializers: [String: UnsafeMutablePointer<Onnx__TensorProto>] = [:],
         enclosing: [GraphIndex] = []) {
        self.enclosing = enclosing
        nodes = Proto.elements(graph.pointee.node, graph.pointee.n_node).compactMap { $0.map(NodeView.init) }
        for (k, node) in nodes.enumerated() {
            for (slot, input) in node.inputs.enumerated() where !input.isEmpty {
                consumers[input, default: []].append(Use(node: k, slot: slot))
            }
            for output in node.outputs where !output.isEmpty { producer[output] = k }
        }
        initializers = outerInitializers
        for tensor in Proto.elements(graph.pointee.initializer, graph.pointee.n_initializer) {
            if let tensor { initializers[TensorCodec.name(tensor)] = tensor }
        }
        graphInputs = Set(Proto.elements(graph.pointee.input, graph.pointee.n_input).compactMap { $0.map { Proto.string($0.pointee.name) } })
        graphOutputs = Set(Proto.elements(graph.pointee.output, graph.pointee.n_output).compactMap { $0.map { Proto.string($0.pointee.name) } })
        subgraphReads = TensorWalk.subgraphInputNames(of: graph)
        for list in [(graph.pointee.input, graph.pointee.n_input), (graph.pointee.output, graph.pointee.n_output),
                     (graph.pointee.value_info, graph.pointee.n_value_info)] {
            for info in Proto.elements(list.0, list.1) {
                guard let info, let type = info.pointee.type, type.pointee.value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE,
                      let tensor = type.pointee.tensor_type else { continue }
                let name = Proto.string(info.pointee.name)
                if tensor.pointee.has_elem_type != 0 { declaredTypes[name] = tensor.pointee.elem_type }
                if let shape = tensor.pointee.shape {
                    declaredShapes[name] = Proto.elements(shape.pointee.dim, shape.pointee.n_dim).map { dim in
                        guard let dim, dim.pointee.value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE, dim.pointee.dim_value >= 0 else { return nil }
                        return Int(clamping: dim.pointee.dim_value)
                    }
                }
            }
        }
    }

    /// The element type of a value, when an initializer or a declaration gives it.
    func elementType(of value: String) -> Int32? {
        if let tensor = initializers[value] { return tensor.pointee.data_type }
        return declaredTypes[value]
    }

    /// The innermost enclosing graph that defines `value` (an initializer, a node output or
    /// an input of its own), when this graph does not.
    func definingScope(of value: String) -> GraphIndex? {
        guard producer[value] == nil, !graphInputs.contains(value) else { return nil }
        return enclosing.last { $0.producer[value] != nil || $0.initializers[value] != nil || $0.graphInputs.contains(value) }
    }

    /// True when something outside the node list needs the value.
    func isPinned(_ value: String) -> Bool {
        graphOutputs.contains(value) || subgraphReads.contains(value)
    }

    /// Readers of `value`.
    func uses(of value: String) -> [Use] { consumers[value] ?? [] }

    /// All value names in the graph (initializers, node outputs, inputs), for picking fresh names.
    var allNames: Set<String> {
        Set(initializers.keys).union(producer.keys).union(graphInputs).union(graphOutputs)
    }
}
