import CONNXProto
import DOConvCore

/// Why a candidate was not folded: either it is not exactly a DO-Conv layer (a reason for
/// the report), or the model itself is broken (an error for the user).
enum MatchFailure: Error {
    case rejected(String)
    case invalid(ONNXError)
}

/// A constant float tensor computed from initializers through the few ops exporters put
/// between a parameter and its use, with the nodes and initializers it came from.
struct ConstantValue {
    var type: ElementType
    var shape: [Int]
    /// The elements; borrowed from the mapped file when the source is a float32 initializer
    /// there (see `TensorCodec.floatValues`), so a layer's W is never copied.
    var storage: FloatValues
    var nodes: Set<Int> = []
    var initializers: Set<String> = []
    /// True when any source initializer keeps its data in an external file.
    var external = false
    /// The parameter's own initializer, when the value is one passed through shape-only ops.
    var parameterName: String?
    /// The elements read exactly when the type is float64 (`storage` holds them rounded to
    /// float32), so a float64 layer can fold in float64.
    var exact: [Double]?

    init(type: ElementType, shape: [Int], storage: FloatValues, nodes: Set<Int> = [], initializers: Set<String> = [],
         external: Bool = false, parameterName: String? = nil) {
        self.type = type
        self.shape = shape
        self.storage = storage
        self.nodes = nodes
        self.initializers = initializers
        self.external = external
        self.parameterName = parameterName
    }

    init(type: ElementType, shape: [Int], values: [Float], nodes: Set<Int> = [], initializers: Set<String> = [],
         external: Bool = false, parameterName: String? = nil) {
        self.init(type: type, shape: shape, storage: FloatValues(values), nodes: nodes, initializers: initializers,
                  external: external, parameterName: parameterName)
    }

    /// The elements as an array (a copy).
    var values: [Float] { storage.array }
    /// The elements in float64: exact for float64 values, widened from float32 otherwise.
    var doubles: [Double] { exact ?? storage.array.map(Double.init) }
}

/// Evaluates constant subexpressions: initializers, Constant nodes, Identity, same-type Cast,
/// Reshape by a constant shape, and Add of two same-shape constants (D + d_diag).
struct ConstantResolver {
    let index: GraphIndex
    let codec: TensorCodec

    /// Deeper expressions are not what exporters write (and a cyclic graph would recurse forever).
    static let maxDepth = 32

    func float(_ name: String, depth: Int = 0) throws(MatchFailure) -> ConstantValue {
        guard depth < Self.maxDepth else { throw .rejected("'\(name)' is not a short constant expression") }
        if let tensor = index.initializers[name] {
            guard TensorCodec.elementType(ofDataType: tensor.pointee.data_type) != nil else {
                throw .rejected("'\(name)' is not a float tensor")
            }
            do {
                let (type, shape, values) = try codec.floatValues(of: tensor)
                var value = ConstantValue(type: type, shape: shape, storage: values, initializers: [name], external: TensorCodec.isExternal(tensor), parameterName: name)
                if type == .float64 { value.exact = try codec.doubles(of: tensor) }
                return value
            } catch {
                throw .invalid(error) // a float parameter whose data is broken: bad input
            }
        }
        guard let k = index.producer[name] else {
            if let outer = index.definingScope(of: name) {
                // A value of an enclosing graph (TorchScript dedups equal initializers there as
                // `b.d_diag = Identity(a.d_diag)`): resolved in its own graph. Its nodes are that
                // graph's, not this one's to remove.
                var value = try ConstantResolver(index: outer, codec: codec).float(name, depth: depth + 1)
                value.nodes = []
                return value
            }
            throw .rejected(index.enclosing.isEmpty ? "'\(name)' is a graph input, not a constant" : "'\(name)' is an input of the subgraph, not a constant")
        }
        let node = index.nodes[k]
        guard node.isStandardDomain else { throw .rejected("'\(name)' comes from custom op \(node.opType)") }
        let inputs = node.inputs
        var result: ConstantValue
        switch node.opType {
        case "Constant":
            if let floats = node.attribute("value_floats") {
                let values = Array(Proto.elements(floats.pointee.floats, floats.pointee.n_floats))
                result = ConstantValue(type: .float32, shape: [values.count], values: values)
                break
            }
            if let float = node.attribute("value_float") {
                result = ConstantValue(type: .float32, shape: [], values: [float.pointee.f])
                break
            }
            guard let tensor = node.tensorAttribute("value") else { throw .rejected("Constant '\(name)' has no tensor value") }
            do {
                let (type, shape, values) = try codec.floats(of: tensor)
                result = ConstantValue(type: type, shape: shape, values: values)
                if type == .float64 { result.exact = try codec.doubles(of: tensor) }
            } catch {
                throw .rejected("Constant '\(name)' is not a float tensor")
            }
        case "Identity" where inputs.count == 1:
            result = try float(inputs[0], depth: depth + 1)
        case "Cast" where inputs.count == 1:
            result = try float(inputs[0], depth: depth + 1)
            guard node.intAttribute("to") == Int64(TensorCodec.dataType(of: result.type)) else {
                throw .rejected("Cast '\(node.name)' changes the element type")
            }
        case "Reshape" where inputs.count == 2:
            result = try float(inputs[0], depth: depth + 1)
            let shapeValue = try int64(inputs[1], depth: depth + 1)
            result.shape = try reshaped(result.shape, to: shapeValue.values, allowZero: node.intAttribute("allowzero") ?? 0, node: node)
            result.nodes.formUnion(shapeValue.nodes)
            result.initializers.formUnion(shapeValue.initializers)
        case "Expand" where inputs.count == 2:
            // The dynamo exporter builds a bias-free conv's zero bias as Expand(CastLike(0)).
            let value = try float(inputs[0], depth: depth + 1)
            let shape = try int64(inputs[1], depth: depth + 1)
            let target = shape.values.map { Int(clamping: $0) }
            guard target.allSatisfy({ (0...Int(Int32.max)).contains($0) }), let count = Tensor.elementCount(of: target), count <= 1 << 24 else {
                throw .rejected("Expand '\(node.name)' has an invalid shape")
            }
            guard value.values.count == 1 || value.shape == target else {
                throw .rejected("Expand '\(node.name)' broadcasts beyond a scalar")
            }
            result = ConstantValue(type: value.type, shape: target, values: value.values.count == 1 ? [Float](repeating: value.values[0], count: count) : value.values,
                                   nodes: value.nodes.union(shape.nodes), initializers: value.initializers.union(shape.initializers), external: value.external)
            result.exact = value.exact.map { $0.count == 1 ? [Double](repeating: $0[0], count: count) : $0 }
        case "CastLike" where inputs.count == 2:
            result = try float(inputs[0], depth: depth + 1)
            guard index.elementType(of: inputs[1]) == TensorCodec.dataType(of: result.type) else {
                throw .rejected("CastLike '\(node.name)' may change the element type")
            }
        case "Add" where inputs.count == 2:
            let a = try float(inputs[0], depth: depth + 1)
            let b = try float(inputs[1], depth: depth + 1)
            guard a.shape == b.shape, a.type == b.type else {
                throw .rejected("Add '\(node.name)' combines tensors of shapes \(a.shape) and \(b.shape)")
            }
            let sum = FloatValues(count: a.storage.count) { out in
                for k in out.indices { out[k] = a.storage[k] + b.storage[k] }
            }
            result = ConstantValue(type: a.type, shape: a.shape, storage: sum, nodes: a.nodes.union(b.nodes),
                                   initializers: a.initializers.union(b.initializers), external: a.external || b.external,
                                   parameterName: a.parameterName)
            if let x = a.exact, let y = b.exact, x.count == y.count { result.exact = zip(x, y).map { $0 + $1 } }
        default:
            throw .rejected("'\(name)' is computed by \(node.opType), not from constants")
        }
        result.nodes.insert(k)
        return result
    }

    /// True for an initializer or a Constant, possibly through single-input ops (Identity,
    /// Cast, Reshape, ...): what exporters write for a number or a scale. Scans of every node
    /// ask this first: `float` follows both operands of an Add, which on a value built by
    /// `Add(v, v)` forty times over would take 2^40 steps.
    func isPlain(_ name: String) -> Bool {
        var value = name
        for _ in 0..<Self.maxDepth {
            if index.initializers[value] != nil { return true }
            guard let k = index.producer[value] else {
                if let outer = index.definingScope(of: value) { return ConstantResolver(index: outer, codec: codec).isPlain(value) }
                return false
            }
            let node = index.nodes[k]
            guard node.isStandardDomain else { return false }
            if node.opType == "Constant" { return true }
            guard ["Identity", "Cast", "Reshape", "Expand", "CastLike", "Unsqueeze", "Squeeze"].contains(node.opType), let first = node.inputs.first else { return false }
            value = first
        }
        return false
    }

    /// An INT64 constant (a shape), from an initializer, a Constant node or an Identity of one.
    func int64(_ name: String, depth: Int = 0) throws(MatchFailure) -> (values: [Int64], nodes: Set<Int>, initializers: Set<String>) {
        guard depth < Self.maxDepth else { throw .rejected("shape '\(name)' is not a short constant expression") }
        if let tensor = index.initializers[name] {
            do { return (try codec.int64s(of: tensor), [], [name]) } catch { throw .rejected("shape '\(name)': \(error)") }
        }
        guard let k = index.producer[name] else {
            if let outer = index.definingScope(of: name) {
                let value = try ConstantResolver(index: outer, codec: codec).int64(name, depth: depth + 1)
                return (value.values, [], value.initializers)
            }
            throw .rejected("shape '\(name)' is not a constant")
        }
        let node = index.nodes[k]
        if node.isOp("Identity"), let input = node.inputs.first {
            var inner = try int64(input, depth: depth + 1)
            inner.nodes.insert(k)
            return inner
        }
        if node.isOp("Concat"), node.intAttribute("axis") == 0 || node.intAttribute("axis") == -1 {
            // The dynamo exporter builds shapes as Concat of one-element Constants.
            var joined: (values: [Int64], nodes: Set<Int>, initializers: Set<String>) = ([], [k], [])
            for input in node.inputs {
                let part = try int64(input, depth: depth + 1)
                joined.values += part.values
                joined.nodes.formUnion(part.nodes)
                joined.initializers.formUnion(part.initializers)
            }
            return joined
        }
        if node.isOp("Shape"), let input = node.inputs.first, let tensor = index.initializers[input] {
            // The shape of a constant is a constant.
            let dims = Proto.elements(tensor.pointee.dims, tensor.pointee.n_dims).map { $0 }
            let rank = Int64(dims.count)
            func clamp(_ v: Int64) -> Int { Int(max(0, min(rank, v < 0 ? v + rank : v))) }
            let start = clamp(node.intAttribute("start") ?? 0)
            let end = clamp(node.intAttribute("end") ?? rank)
            return (start < end ? Array(dims[start..<end]) : [], [k], [])
        }
        if node.isOp("Expand"), node.inputs.count == 2 {
            let value = try int64(node.inputs[0], depth: depth + 1)
            let shape = try int64(node.inputs[1], depth: depth + 1)
            guard shape.values.count == 1, value.values.count == 1 || Int64(value.values.count) == shape.values[0] || shape.values[0] == 1 else {
                throw .rejected("shape '\(name)' is not a constant")
            }
            let count = max(Int(clamping: shape.values[0]), value.values.count)
            guard count <= 64 else { throw .rejected("shape '\(name)' is not a constant") }
            return (value.values.count == 1 ? [Int64](repeating: value.values[0], count: count) : value.values,
                    value.nodes.union(shape.nodes).union([k]), value.initializers.union(shape.initializers))
        }
        guard node.isOp("Constant") else { throw .rejected("shape '\(name)' is not a constant") }
        if let ints = node.intsAttribute("value_ints"), node.attribute("value_ints") != nil { return (ints, [k], []) }
        if let value = node.intAttribute("value_int") { return ([value], [k], []) }
        guard let tensor = node.tensorAttribute("value") else { throw .rejected("shape '\(name)' is not a constant") }
        do { return (try codec.int64s(of: tensor), [k], []) } catch { throw .rejected("shape '\(name)': \(error)") }
    }

    /// ONNX Reshape's output shape: 0 copies the input dim (unless allowzero), -1 is inferred.
    /// The input's shape is known exactly here (constants), so a target the input cannot
    /// take makes the graph itself invalid: `.invalid`, not a near-miss.
    func reshaped(_ input: [Int], to target: [Int64], allowZero: Int64, node: NodeView) throws(MatchFailure) -> [Int] {
        let count = Tensor.elementCount(of: input) ?? 0
        let what = "node \(GraphStructureCheck.describe(node))"
        var shape: [Int] = []
        var inferred: Int?
        for (k, dim) in target.enumerated() {
            switch dim {
            case -1:
                guard inferred == nil else { throw invalid("\(what) has two -1 dims in its target shape \(target)") }
                inferred = k
                shape.append(1)
            case 0 where allowZero == 0:
                guard k < input.count else { throw invalid("\(what) copies dim \(k) of a rank-\(input.count) input") }
                shape.append(input[k])
            default:
                guard dim >= 0 else { throw invalid("\(what) has invalid dim \(dim) in its target shape") }
                guard let exact = Int(exactly: dim) else { throw invalid("\(what) has invalid dim \(dim) in its target shape") }
                shape.append(exact)
            }
        }
        let known = Tensor.elementCount(of: shape)
        if let inferred {
            guard let known, known > 0, count % known == 0 else {
                throw invalid("\(what) cannot infer the -1 dim of \(target) for \(input) (\(count) elements)")
            }
            shape[inferred] = count / known
        } else if known != count {
            throw invalid("\(what) cannot reshape \(input) (\(count) elements) to \(target) (\(known.map(String.init) ?? "too many") elements)")
        }
        return shape
    }

    /// A failure that makes the model bad input (exit status 2), naming the model file.
    func invalid(_ reason: String) -> MatchFailure {
        .invalid(.malformed(path: codec.resolver.modelPath, reason: reason))
    }
}
