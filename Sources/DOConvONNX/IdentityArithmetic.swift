#if canImport(Glibc)
import Glibc
#endif
import CONNXProto
import DOConvCore

/// Arithmetic that computes its data operand unchanged: Add of a constant zero (either side),
/// Sub of a constant zero, Mul by a constant one (either side), Div by a constant one.
/// Exporters keep them where the model's code starts a sum at the Python number 0
/// (MobileOne's `identity_out = 0`, YOLOv6's `+ id_out`): TorchScript writes `Add(x,
/// Constant 0.0)`, which stands between the branches of a block and the sum that ends it.
///
/// The fold drops them from the main graph before anything is matched (their readers read the
/// data operand), when the constant cannot change the result's shape: a scalar, a one-element
/// tensor of no higher rank than the data operand, or a tensor that broadcasts into the data
/// operand's declared shape without enlarging it.
struct IdentityArithmetic {
    let index: GraphIndex
    let codec: TensorCodec

    /// One operation to drop.
    struct Drop {
        var node: Int
        /// The operand the result equals, and the result.
        var data: String
        var output: String
        var kind: Kind
        /// What computed the constant: removed once nothing reads it.
        var constantNodes: Set<Int>
        var constantInitializers: Set<String>
    }

    enum Kind: String, CaseIterable {
        case addZero = "Add of a constant zero"
        case subtractZero = "Sub of a constant zero"
        case multiplyOne = "Mul by a constant one"
        case divideOne = "Div by a constant one"
    }

    /// Ranks are inferred through at most this many producers (a cyclic graph is refused at load).
    static let maxDepth = 64

    private var constants: ConstantResolver { ConstantResolver(index: index, codec: codec) }

    /// The operations to drop and the ones left, with the reason. Only float constants count:
    /// integer shape arithmetic is not a block's business.
    func find() throws(ONNXError) -> (drops: [Drop], refused: [RejectedCandidate]) {
        var drops: [Drop] = [], refused: [RejectedCandidate] = []
        for (k, node) in index.nodes.enumerated() {
            guard node.isStandardDomain, let kind = Self.kind(of: node.opType) else { continue }
            let inputs = node.inputs, outputs = node.outputs
            guard inputs.count == 2, outputs.count == 1, !outputs[0].isEmpty, !inputs.contains(where: \.isEmpty) else { continue }
            // Sub and Div drop only a constant on the right.
            let slots = kind == .subtractZero || kind == .divideOne ? [1] : [1, 0]
            for slot in slots {
                guard let value = try identityConstant(inputs[slot], kind: kind) else { continue }
                let data = inputs[1 - slot]
                if constants.isPlain(data) { break } // constant work: not ours to simplify
                let label = node.name.isEmpty ? "\(node.opType) (output '\(outputs[0])')" : "\(node.opType) '\(node.name)'"
                if let reason = blocker(output: outputs[0], data: data, constantShape: value.shape) {
                    refused.append(RejectedCandidate(name: label, reason: "\(kind.rawValue) left in place: \(reason)"))
                } else {
                    drops.append(Drop(node: k, data: data, output: outputs[0], kind: kind, constantNodes: value.nodes, constantInitializers: value.initializers))
                }
                break
            }
        }
        return (drops, refused)
    }

    static func kind(of opType: String) -> Kind? {
        switch opType {
        case "Add": return .addZero
        case "Sub": return .subtractZero
        case "Mul": return .multiplyOne
        case "Div": return .divideOne
        default: return nil
        }
    }

    /// The constant `name` when every element is the operation's identity (0 or 1).
    private func identityConstant(_ name: String, kind: Kind) throws(ONNXError) -> ConstantValue? {
        guard constants.isPlain(name) else { return nil }
        let value: ConstantValue
        do { value = try constants.float(name) } catch {
            switch error {
            case .rejected: return nil
            case .invalid(let error): throw error
            }
        }
        let identity: Float = kind == .addZero || kind == .subtractZero ? 0 : 1
        guard value.storage.count > 0, (0..<value.storage.count).allSatisfy({ value.storage[$0] == identity }) else { return nil }
        if let exact = value.exact, !exact.allSatisfy({ $0 == Double(identity) }) { return nil }
        return value
    }

    /// Why the operation must stay: its result is needed by name, or the constant could
    /// broadcast the data operand to a larger shape.
    private func blocker(output: String, data: String, constantShape: [Int]) -> String? {
        if index.graphOutputs.contains(output) { return "its result '\(output)' is a graph output" }
        if index.subgraphReads.contains(output) { return "its result '\(output)' is read inside a subgraph" }
        if constantShape.isEmpty { return nil }
        if constantShape.allSatisfy({ $0 == 1 }) {
            guard let rank = rank(of: data, depth: 0) else { // at least this: enough to rule out growth
                return "the constant has shape \(constantShape) and the rank of '\(data)' is not known, so the result's rank could grow"
            }
            return rank >= constantShape.count ? nil : "the constant of shape \(constantShape) would raise the rank of '\(data)' (\(rank))"
        }
        guard let declared = index.declaredShapes[data], declared.count >= constantShape.count else {
            return "the constant has shape \(constantShape) and the shape of '\(data)' is not declared, so broadcasting could enlarge it"
        }
        for (c, d) in zip(constantShape.reversed(), declared.reversed()) where c != 1 && c != d {
            return "the constant of shape \(constantShape) broadcasts beyond the declared shape of '\(data)'"
        }
        return nil
    }

    /// A lower bound of a value's rank (its rank, but for broadcasting arithmetic): declared,
    /// or carried through ops that keep their input's rank.
    private func rank(of value: String, depth: Int) -> Int? {
        if let shape = index.declaredShapes[value] { return shape.count }
        if let tensor = index.initializers[value] { return tensor.pointee.n_dims }
        guard depth < Self.maxDepth, let k = index.producer[value] else { return nil }
        if constants.isPlain(value), let constant = try? constants.float(value) { return constant.shape.count }
        let node = index.nodes[k]
        guard node.isStandardDomain, let first = node.inputs.first, !first.isEmpty else { return nil }
        switch node.opType {
        case "Conv", "ConvTranspose":
            return node.inputs.count >= 2 ? rank(of: node.inputs[1], depth: depth + 1) ?? node.intsAttribute("kernel_shape").map { $0.count + 2 } : nil
        case "BatchNormalization", "InstanceNormalization", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Clip",
             "Elu", "Selu", "Gelu", "Softplus", "Mish", "Identity", "Dropout", "Neg", "Abs", "Erf", "Exp", "Sqrt", "MaxPool", "AveragePool",
             "GlobalAveragePool", "GlobalMaxPool", "LpNormalization":
            return rank(of: first, depth: depth + 1)
        case "Add", "Sub", "Mul", "Div":
            // At least the first operand's (broadcasting only raises it): enough to know a
            // constant cannot raise it, and one path keeps the walk linear.
            return rank(of: first, depth: depth + 1)
        default:
            return nil
        }
    }
}

/// Identity arithmetic dropped from the main graph, kept reversible until the fold knows
/// whether it changes anything else: a model the fold otherwise leaves alone is written back
/// unchanged. Like `Inlining`, valid only while the node list is the one `drop` made.
final class IdentityDropping {
    private let graph: UnsafeMutablePointer<Onnx__GraphProto>
    private let originalNodes: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__NodeProto>?>?
    private let originalCount: Int
    private let dropped: [UnsafeMutablePointer<Onnx__NodeProto>]
    /// Inputs rewired from a dropped result to its data operand, with the old name.
    private let rewired: [(node: UnsafeMutablePointer<Onnx__NodeProto>, slot: Int, old: String)]
    /// The nodes computing the constants (main graph pointers) and the initializers.
    private let constantNodes: [UnsafeMutablePointer<Onnx__NodeProto>]
    private let constantInitializers: Set<String>
    private let removedValues: Set<String>
    /// How many of each kind were dropped, for the summary.
    let counts: [(kind: IdentityArithmetic.Kind, count: Int)]
    private var settled = false

    /// Drops `drops` (found on `index`, which describes `model.graph`).
    init(_ drops: [IdentityArithmetic.Drop], model: ONNXModel, index: GraphIndex) {
        graph = model.graph
        originalNodes = graph.pointee.node
        originalCount = graph.pointee.n_node
        // Each result read as the operand it equals, through chains of such operations.
        var alias: [String: String] = [:]
        for drop in drops { alias[drop.output] = drop.data }
        func resolved(_ name: String) -> String {
            var name = name
            for _ in 0..<drops.count { guard let next = alias[name] else { break }; name = next }
            return name
        }
        let removed = Set(drops.map(\.node))
        var rewired: [(UnsafeMutablePointer<Onnx__NodeProto>, Int, String)] = []
        for (k, node) in index.nodes.enumerated() where !removed.contains(k) {
            for (slot, input) in node.inputs.enumerated() where alias[input] != nil {
                rewired.append((node.pointer, slot, input))
                NodeEdit.setInput(node.pointer, slot, to: resolved(input))
            }
        }
        self.rewired = rewired
        dropped = drops.map { index.nodes[$0.node].pointer }
        let kept = index.nodes.indices.filter { !removed.contains($0) }
        let list = malloc(max(1, kept.count) * MemoryLayout<UnsafeMutablePointer<Onnx__NodeProto>?>.stride)!
            .assumingMemoryBound(to: UnsafeMutablePointer<Onnx__NodeProto>?.self)
        for (slot, k) in kept.enumerated() { list[slot] = index.nodes[k].pointer }
        graph.pointee.node = list
        graph.pointee.n_node = kept.count
        constantNodes = drops.flatMap(\.constantNodes).map { index.nodes[$0].pointer }
        constantInitializers = Set(drops.flatMap(\.constantInitializers))
        removedValues = Set(drops.map(\.output))
        counts = IdentityArithmetic.Kind.allCases.compactMap { kind in
            let n = drops.filter { $0.kind == kind }.count
            return n == 0 ? nil : (kind, n)
        }
    }

    /// "dropped 26 identity operations before matching (26 Add of a constant zero)".
    var note: String {
        let total = counts.reduce(0) { $0 + $1.count }
        return "dropped \(total) identity operation\(total == 1 ? "" : "s") before matching (\(counts.map { "\($0.count) \($0.kind.rawValue)" }.joined(separator: ", ")))"
    }

    /// Puts the dropped nodes and the readers' inputs back.
    func undo() {
        guard !settled else { return }
        settled = true
        for (node, slot, old) in rewired.reversed() { NodeEdit.setInput(node, slot, to: old) }
        free(graph.pointee.node)
        graph.pointee.node = originalNodes
        graph.pointee.n_node = originalCount
    }

    /// Frees the dropped nodes and the old node list, then removes what computed their
    /// constants once nothing reads it, and the dropped results' value_info.
    func commit(model: ONNXModel) {
        guard !settled else { return }
        settled = true
        for node in dropped { Proto.free(node) }
        ProtoMemory.free(originalNodes)
        let index = GraphIndex(graph: graph)
        var edit = GraphEdit()
        let pointers = Set(constantNodes.map { UnsafeMutableRawPointer($0) })
        edit.candidateNodes = Set(index.nodes.indices.filter { pointers.contains(UnsafeMutableRawPointer(index.nodes[$0].pointer)) })
        edit.candidateInitializers = constantInitializers
        edit.removedValues = removedValues
        GraphRewrite.apply(edit, to: model, index: index)
    }
}
