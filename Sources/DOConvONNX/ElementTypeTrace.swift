/// The element type a value has by construction, read off the graph without evaluating
/// anything: from initializers, Constant nodes, Cast targets and the type-preserving ops
/// between them. Used to tell a graph that cannot run (a Conv weight of integers, an
/// Einsum of an INT32 and a FLOAT operand) from one that merely is not a DO-Conv.
struct ElementTypeTrace {
    let index: GraphIndex
    let path: String

    /// Deeper chains are not worth following (and a cycle must not recurse forever).
    static let maxDepth = 32

    /// Ops whose output has their first input's element type.
    static let passThrough: Set<String> = ["Identity", "Reshape", "Transpose", "Expand", "Squeeze", "Unsqueeze", "Flatten"]
    /// Ops whose inputs must all share one element type, which is the output's.
    static let sameType: Set<String> = ["Add", "Sub", "Mul", "Div", "Einsum", "MatMul"]

    /// The ONNX data type code of `value`, nil when the graph does not fix it here; throws
    /// `.invalid` when an op combines inputs of different element types.
    func dataType(of value: String) throws(MatchFailure) -> Int32? {
        var known: [String: Int32?] = [:]
        return try dataType(of: value, depth: 0, known: &known)
    }

    /// `known` holds every value already traced, so a graph whose values are read many times
    /// over (Add(x, x) repeated) costs one visit per value, not one per path.
    private func dataType(of value: String, depth: Int, known: inout [String: Int32?]) throws(MatchFailure) -> Int32? {
        if let type = known[value] { return type }
        let type = try tracedType(of: value, depth: depth, known: &known)
        known[value] = .some(type)
        return type
    }

    private func tracedType(of value: String, depth: Int, known memo: inout [String: Int32?]) throws(MatchFailure) -> Int32? {
        if let tensor = index.initializers[value] { return tensor.pointee.data_type }
        guard let k = index.producer[value] else {
            return index.graphInputs.contains(value) ? index.declaredTypes[value] : nil
        }
        guard depth < Self.maxDepth else { return nil }
        let node = index.nodes[k]
        guard node.isStandardDomain else { return nil }
        switch node.opType {
        case "Constant":
            if let tensor = node.tensorAttribute("value") { return tensor.pointee.data_type }
            if node.attribute("value_float") != nil || node.attribute("value_floats") != nil { return 1 }
            if node.attribute("value_int") != nil || node.attribute("value_ints") != nil { return ONNXDataType.int64 }
            return nil
        case "Cast":
            return node.intAttribute("to").flatMap { Int32(exactly: $0) }
        case "CastLike" where node.inputs.count == 2:
            return try dataType(of: node.inputs[1], depth: depth + 1, known: &memo)
        case _ where Self.passThrough.contains(node.opType):
            guard let first = node.inputs.first else { return nil }
            return try dataType(of: first, depth: depth + 1, known: &memo)
        case _ where Self.sameType.contains(node.opType):
            var known: (value: String, type: Int32)?
            for input in node.inputs where !input.isEmpty {
                guard let type = try dataType(of: input, depth: depth + 1, known: &memo) else { continue }
                if let known, known.type != type {
                    throw .invalid(.malformed(path: path, reason: "node \(GraphStructureCheck.describe(node)) combines '\(known.value)' "
                        + "(\(TensorDataCheck.typeName(known.type))) and '\(input)' (\(TensorDataCheck.typeName(type))): "
                        + "its inputs must have one element type"))
                }
                known = (input, type)
            }
            return known?.type
        default:
            return nil
        }
    }

    /// Throws `.invalid` when `conv`'s weight is, by construction, not a float tensor: Conv
    /// is defined for float16, float, double and bfloat16 only.
    func checkConvWeight(_ conv: NodeView) throws(MatchFailure) {
        guard conv.inputs.count >= 2, let type = try dataType(of: conv.inputs[1]),
              TensorDataCheck.storage(ofDataType: type) != nil, TensorCodec.elementType(ofDataType: type) == nil else { return }
        throw .invalid(.malformed(path: path, reason: "node \(GraphStructureCheck.describe(conv)) has weight '\(conv.inputs[1])' of element type "
            + "\(TensorDataCheck.typeName(type)), not a float type (Conv takes float16, float, double or bfloat16)"))
    }
}
