import CONNXProto

/// Visits every TensorProto stored in a model: initializers, Constant and other attribute
/// tensors, sparse tensors, and those of subgraphs, functions and training info.
enum TensorWalk {
    static func forEachTensor(in model: UnsafeMutablePointer<Onnx__ModelProto>, _ body: (UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> Void) throws(ONNXError) {
        if let graph = model.pointee.graph { try visit(graph: graph, body) }
        for info in Proto.elements(model.pointee.training_info, model.pointee.n_training_info) {
            guard let info else { continue }
            if let g = info.pointee.initialization { try visit(graph: g, body) }
            if let g = info.pointee.algorithm { try visit(graph: g, body) }
        }
        for function in Proto.elements(model.pointee.functions, model.pointee.n_functions) {
            guard let function else { continue }
            for node in Proto.elements(function.pointee.node, function.pointee.n_node) {
                if let node { try visit(node: node, body) }
            }
        }
    }

    static func visit(graph: UnsafeMutablePointer<Onnx__GraphProto>, _ body: (UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> Void) throws(ONNXError) {
        for tensor in Proto.elements(graph.pointee.initializer, graph.pointee.n_initializer) {
            if let tensor { try body(tensor) }
        }
        for sparse in Proto.elements(graph.pointee.sparse_initializer, graph.pointee.n_sparse_initializer) {
            if let sparse { try visit(sparse: sparse, body) }
        }
        for node in Proto.elements(graph.pointee.node, graph.pointee.n_node) {
            if let node { try visit(node: node, body) }
        }
    }

    private static func visit(sparse: UnsafeMutablePointer<Onnx__SparseTensorProto>, _ body: (UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> Void) throws(ONNXError) {
        if let values = sparse.pointee.values { try body(values) }
        if let indices = sparse.pointee.indices { try body(indices) }
    }

    private static func visit(node: UnsafeMutablePointer<Onnx__NodeProto>, _ body: (UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> Void) throws(ONNXError) {
        for attribute in Proto.elements(node.pointee.attribute, node.pointee.n_attribute) {
            guard let attribute else { continue }
            if let t = attribute.pointee.t { try body(t) }
            for t in Proto.elements(attribute.pointee.tensors, attribute.pointee.n_tensors) { if let t { try body(t) } }
            if let s = attribute.pointee.sparse_tensor { try visit(sparse: s, body) }
            for s in Proto.elements(attribute.pointee.sparse_tensors, attribute.pointee.n_sparse_tensors) { if let s { try visit(sparse: s, body) } }
            if let g = attribute.pointee.g { try visit(graph: g, body) }
            for g in Proto.elements(attribute.pointee.graphs, attribute.pointee.n_graphs) { if let g { try visit(graph: g, body) } }
        }
    }

    /// Every value name a node inside a subgraph of `graph` reads (outer-scope references
    /// included): such names must never be removed from the outer graph.
    static func subgraphInputNames(of graph: UnsafeMutablePointer<Onnx__GraphProto>) -> Set<String> {
        var names = Set<String>()
        func collect(_ g: UnsafeMutablePointer<Onnx__GraphProto>) {
            for node in Proto.elements(g.pointee.node, g.pointee.n_node) {
                guard let node else { continue }
                for input in Proto.elements(node.pointee.input, node.pointee.n_input) { names.insert(Proto.string(input)) }
                for output in Proto.elements(g.pointee.output, g.pointee.n_output) { if let output { names.insert(Proto.string(output.pointee.name)) } }
                subgraphs(of: node).forEach(collect)
            }
        }
        for node in Proto.elements(graph.pointee.node, graph.pointee.n_node) {
            if let node { subgraphs(of: node).forEach(collect) }
        }
        return names
    }

    private static func subgraphs(of node: UnsafeMutablePointer<Onnx__NodeProto>) -> [UnsafeMutablePointer<Onnx__GraphProto>] {
        var result: [UnsafeMutablePointer<Onnx__GraphProto>] = []
        for attribute in Proto.elements(node.pointee.attribute, node.pointee.n_attribute) {
            guard let attribute else { continue }
            if let g = attribute.pointee.g { result.append(g) }
            for g in Proto.elements(attribute.pointee.graphs, attribute.pointee.n_graphs) { if let g { result.append(g) } }
        }
        return result
    }
}
