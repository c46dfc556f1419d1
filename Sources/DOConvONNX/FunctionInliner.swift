#if canImport(Glibc)
import Glibc
#endif
import CONNXProto
import CProtobufC
import DOConvCore

/// Brings DO-Conv layers that live in ONNX local functions (`ModelProto.functions`, as
/// `torch.onnx.export(..., export_modules_as_functions=...)` writes them) into the main graph,
/// so the ordinary fold can reach them: each call of such a function whose D and W arrive as
/// initializers or Constants at the call site is replaced, in place, by a copy of the
/// function's body. Inlining is per call site, since two calls of one function with different
/// weights are two different layers.
///
/// A copied body gets unique names for its internal values, the call's actual inputs and
/// outputs for the formal ones, and its attribute references (`ref_attr_name`) resolved from
/// the call's attributes or the function's defaults, as the ONNX function semantics define
/// them. Calls that cannot be inlined are reported with the reason.
struct FunctionInliner {
    let model: ONNXModel

    /// Bodies bigger than this are not what exporters write for one layer: not inlined.
    static let maxBodyNodes = 4096
    /// Subgraphs nested deeper than this are not searched for names or calls.
    static let maxDepth = 16
    /// All inlined bodies together stay under this many nodes, so a hostile file with many
    /// calls of a big body cannot make the graph explode; calls beyond it are reported.
    static let maxInlinedNodes = 1 << 20

    /// One call of a local function that will be (or was) inlined.
    struct Call {
        /// The call node in the main graph (owned by the graph until the inlining commits).
        var node: UnsafeMutablePointer<Onnx__NodeProto>
        var function: UnsafeMutablePointer<Onnx__FunctionProto>
        /// The readable place of the call: "function DOConv2d, call node /conv1/DOConv2d".
        var place: String
        /// The prefix of the names its copied body gets.
        var prefix: String
    }

    /// The unique id of a function, and of the function a node calls: (domain, name, overload).
    static func key(domain: UnsafePointer<CChar>?, name: UnsafePointer<CChar>?, overload: UnsafePointer<CChar>?) -> String {
        var domain = Proto.string(domain)
        if domain == "ai.onnx" { domain = "" }
        return domain + "\u{0}" + Proto.string(name) + "\u{0}" + Proto.string(overload)
    }

    static func key(of function: UnsafeMutablePointer<Onnx__FunctionProto>) -> String {
        key(domain: function.pointee.domain, name: function.pointee.name, overload: function.pointee.overload)
    }

    static func key(ofCall node: UnsafeMutablePointer<Onnx__NodeProto>) -> String {
        key(domain: node.pointee.domain, name: node.pointee.op_type, overload: node.pointee.overload)
    }

    /// True for an Einsum of one of the DO-Conv layouts.
    static func isComposition(_ node: UnsafeMutablePointer<Onnx__NodeProto>) -> Bool {
        let view = NodeView(pointer: node)
        guard view.isOp("Einsum"), let equation = view.stringAttribute("equation") else { return false }
        return KernelCompositionDetector.layout(ofEquation: equation) != nil
    }

    /// True when a node list holds a DO-Conv kernel composition.
    static func hasComposition(_ nodes: UnsafeMutableBufferPointer<UnsafeMutablePointer<Onnx__NodeProto>?>) -> Bool {
        nodes.contains { $0.map(isComposition) ?? false }
    }

    /// The local functions whose body composes a DO-Conv kernel, by key.
    func composingFunctions() -> [String: UnsafeMutablePointer<Onnx__FunctionProto>] {
        var found: [String: UnsafeMutablePointer<Onnx__FunctionProto>] = [:]
        for function in Proto.elements(model.proto.pointee.functions, model.proto.pointee.n_functions) {
            guard let function, Self.hasComposition(Proto.elements(function.pointee.node, function.pointee.n_node)) else { continue }
            // The first of duplicate ids wins, as for any reader that looks functions up by id.
            let key = Self.key(of: function)
            if found[key] == nil { found[key] = function }
        }
        return found
    }

    /// The main-graph calls to inline, and the calls of composing functions that cannot be
    /// (reported as DO-Conv layers that were not folded).
    /// `covered` holds the keys of the composing functions that the main graph calls: their
    /// compositions are accounted for call by call here, not by `NestedCompositionScan`.
    func plan() -> (calls: [Call], rejected: [RejectedCandidate], covered: Set<String>) {
        let functions = composingFunctions()
        guard !functions.isEmpty else { return ([], [], []) }
        let index = GraphIndex(graph: model.graph)
        var calls: [Call] = []
        var rejected: [RejectedCandidate] = []
        var prefixes = Set<String>()
        var covered = Set<String>()
        var budget = Self.maxInlinedNodes
        for node in index.nodes {
            let key = Self.key(ofCall: node.pointer)
            guard let function = functions[key] else { continue }
            covered.insert(key)
            let functionName = Proto.string(function.pointee.name)
            let callName = node.name.isEmpty ? (node.outputs.first ?? node.opType) : node.name
            let place = "function \(functionName), call node \(callName)"
            if let reason = refusal(call: node, function: function, index: index) {
                rejected.append(RejectedCandidate(name: place, reason: "a DO-Conv kernel composition in local function '\(functionName)': \(reason)", isDOConvLayer: true))
                continue
            }
            let size = Int(function.pointee.n_node)
            guard size <= budget else {
                rejected.append(RejectedCandidate(name: place, reason: "a DO-Conv kernel composition in local function '\(functionName)': "
                    + "inlining it would take the inlined calls over \(Self.maxInlinedNodes) nodes", isDOConvLayer: true))
                continue
            }
            budget -= size
            let prefix = GraphRewrite.freshName(callName, taken: &prefixes)
            calls.append(Call(node: node.pointer, function: function, place: place, prefix: prefix))
        }
        // A function also called from a subgraph or another function body keeps a call the
        // inliner does not reach: `NestedCompositionScan` reports its composition then.
        return (calls, rejected, covered.subtracting(calledFunctionKeys(includeMainNodes: false)))
    }

    /// Why `call` cannot be inlined, or nil when it can.
    private func refusal(call: NodeView, function: UnsafeMutablePointer<Onnx__FunctionProto>, index: GraphIndex) -> String? {
        let body = Proto.elements(function.pointee.node, function.pointee.n_node)
        guard body.count <= Self.maxBodyNodes else { return "its body has \(body.count) nodes, more than doconv inlines" }
        let formalInputs = Proto.elements(function.pointee.input, function.pointee.n_input).map { Proto.string($0) }
        guard call.inputs.count <= formalInputs.count, call.outputs.count <= Int(function.pointee.n_output) else {
            return "call node passes more inputs or outputs than the function declares"
        }

        // The body must run the same operators inlined as it does in the function: every
        // domain it uses needs the same opset version in the model.
        var modelOpsets: [String: Int64] = [:]
        for opset in Proto.elements(model.proto.pointee.opset_import, model.proto.pointee.n_opset_import) {
            if let opset { modelOpsets[Self.normalizedDomain(opset.pointee.domain)] = opset.pointee.version }
        }
        var functionOpsets: [String: Int64] = [:]
        for opset in Proto.elements(function.pointee.opset_import, function.pointee.n_opset_import) {
            if let opset { functionOpsets[Self.normalizedDomain(opset.pointee.domain)] = opset.pointee.version }
        }

        // Every value a body node reads must be a formal input or an earlier body output
        // (functions have no outer scope), and no body node may hold a subgraph (its outer
        // references would need renaming too).
        var defined = Set(formalInputs)
        var producer: [String: Int] = [:]
        for (k, node) in body.enumerated() {
            guard let node else { return "its body has an empty node" }
            let view = NodeView(pointer: node)
            let domain = Self.normalizedDomain(node.pointee.domain)
            if let version = functionOpsets[domain], modelOpsets[domain] != version {
                let shown = domain.isEmpty ? "the default domain" : "domain '\(domain)'"
                return "the function uses opset \(version) of \(shown), the model \(modelOpsets[domain].map(String.init) ?? "none")"
            }
            for attribute in Proto.elements(node.pointee.attribute, node.pointee.n_attribute) {
                guard let attribute else { continue }
                if attribute.pointee.g != nil || attribute.pointee.n_graphs > 0 {
                    return "its body node '\(view.name)' holds a subgraph (\(view.opType)), which doconv does not inline"
                }
            }
            for input in view.inputs where !input.isEmpty && !defined.contains(input) {
                return "its body node '\(view.name)' reads '\(input)', which the function does not define"
            }
            for output in view.outputs where !output.isEmpty {
                defined.insert(output)
                producer[output] = k
            }
        }

        // Each output the call takes must be computed by a body node: an output that is
        // a formal input passed through would leave the call's output without a producer.
        for (slot, formal) in Proto.elements(function.pointee.output, function.pointee.n_output).enumerated() {
            let name = Proto.string(formal)
            if slot < call.outputs.count, !call.outputs[slot].isEmpty, producer[name] == nil {
                return "its output '\(name)' is not computed by a node of its body"
            }
        }

        // D and W: the formal inputs the compositions are computed from must be constants at
        // this call site, or the fold could not use them anyway.
        var sources = Set<Int>()
        var visited = Set<String>()
        var pending: [String] = []
        for node in body {
            if let node, Self.isComposition(node) { pending += NodeView(pointer: node).inputs }
        }
        while let value = pending.popLast() {
            guard !value.isEmpty, visited.insert(value).inserted else { continue }
            if let k = producer[value], let node = body[k] {
                pending += NodeView(pointer: node).inputs
            } else if let slot = formalInputs.firstIndex(of: value) {
                sources.insert(slot)
            }
        }
        for slot in sources.sorted() {
            let actual = slot < call.inputs.count ? call.inputs[slot] : ""
            let role = "the composition's input '\(formalInputs[slot])'"
            if actual.isEmpty { return "\(role) is not passed by the call" }
            if index.initializers[actual] != nil { continue }
            if let k = index.producer[actual] {
                let producerNode = index.nodes[k]
                if producerNode.isOp("Constant") { continue }
                return "\(role) is '\(actual)', computed by \(producerNode.opType) node '\(producerNode.name)', not a constant"
            }
            return "\(role) is '\(actual)', a graph input, not a constant"
        }
        return nil
    }

    private static func normalizedDomain(_ domain: UnsafePointer<CChar>?) -> String {
        let value = Proto.string(domain)
        return value == "ai.onnx" ? "" : value
    }

    /// Replaces every call of `calls` in the main graph by a copy of its function's body.
    /// The call nodes are kept until `Inlining.commit` (or restored by `Inlining.undo`).
    func inline(_ calls: [Call]) -> Inlining {
        let graph = model.graph
        var taken = Self.allNames(in: graph)
        let byNode = Dictionary(calls.map { (UnsafeMutableRawPointer($0.node), $0) }, uniquingKeysWith: { first, _ in first })
        var nodes: [UnsafeMutablePointer<Onnx__NodeProto>?] = []
        var copies: [(call: Call, nodes: [UnsafeMutablePointer<Onnx__NodeProto>])] = []
        var nodeNames = Set(Proto.elements(graph.pointee.node, graph.pointee.n_node).compactMap { $0.map { Proto.string($0.pointee.name) } })
        for node in Proto.elements(graph.pointee.node, graph.pointee.n_node) {
            guard let node, let call = byNode[UnsafeMutableRawPointer(node)],
                  let body = copyBody(of: call, taken: &taken, nodeNames: &nodeNames) else { nodes.append(node); continue }
            nodes += body.map { Optional($0) }
            copies.append((call, body))
        }
        let inlining = Inlining(graph: graph, originalNodes: graph.pointee.node, originalCount: graph.pointee.n_node, copies: copies)
        let array = malloc(max(nodes.count, 1) * MemoryLayout<UnsafeMutablePointer<Onnx__NodeProto>?>.stride)!
            .assumingMemoryBound(to: UnsafeMutablePointer<Onnx__NodeProto>?.self)
        array.initialize(from: nodes, count: nodes.count)
        graph.pointee.node = array
        graph.pointee.n_node = nodes.count
        return inlining
    }

    /// The body of `call`'s function, copied for this call site; nil (nothing allocated)
    /// when a node could not be copied, and the call then stays.
    private func copyBody(of call: Call, taken: inout Set<String>, nodeNames: inout Set<String>) -> [UnsafeMutablePointer<Onnx__NodeProto>]? {
        let function = call.function
        let view = NodeView(pointer: call.node)
        var rename: [String: String] = [:]
        let actualInputs = view.inputs
        for (slot, formal) in Proto.elements(function.pointee.input, function.pointee.n_input).enumerated() {
            rename[Proto.string(formal)] = slot < actualInputs.count ? actualInputs[slot] : ""
        }
        let actualOutputs = view.outputs
        for (slot, formal) in Proto.elements(function.pointee.output, function.pointee.n_output).enumerated() {
            let actual = slot < actualOutputs.count ? actualOutputs[slot] : ""
            // An output the call does not take still needs a name of its own in the graph.
            rename[Proto.string(formal)] = actual.isEmpty ? GraphRewrite.freshName("\(call.prefix)/\(Proto.string(formal))", taken: &taken) : actual
        }
        var copies: [UnsafeMutablePointer<Onnx__NodeProto>] = []
        for node in Proto.elements(function.pointee.node, function.pointee.n_node) {
            guard let node else { continue }
            guard let copy = Self.copy(node) else {
                copies.forEach { Proto.free($0) }
                return nil
            }
            for slot in 0..<copy.pointee.n_input {
                let name = Proto.string(copy.pointee.input[slot])
                guard !name.isEmpty, let target = rename[name] else { continue }
                Proto.replace(&copy.pointee.input[slot], with: target)
            }
            for slot in 0..<copy.pointee.n_output {
                let name = Proto.string(copy.pointee.output[slot])
                guard !name.isEmpty else { continue }
                let target = rename[name] ?? GraphRewrite.freshName("\(call.prefix)/\(name)", taken: &taken)
                rename[name] = target
                Proto.replace(&copy.pointee.output[slot], with: target)
            }
            let bodyName = Proto.string(copy.pointee.name)
            Proto.replace(&copy.pointee.name, with: GraphRewrite.freshName("\(call.prefix)/\(bodyName.isEmpty ? Proto.string(copy.pointee.op_type) : bodyName)", taken: &nodeNames))
            resolveAttributeReferences(in: copy, call: call)
            copies.append(copy)
        }
        return copies
    }

    /// Replaces each attribute that refers to a function attribute (`ref_attr_name`) by the
    /// call's attribute of that name, else the function's default, else drops it (the
    /// attribute is then absent, as ONNX defines it).
    private func resolveAttributeReferences(in node: UnsafeMutablePointer<Onnx__NodeProto>, call: Call) {
        let callView = NodeView(pointer: call.node)
        var kept = 0
        for k in 0..<node.pointee.n_attribute {
            guard let attribute = node.pointee.attribute[k] else { continue }
            let reference = Proto.string(attribute.pointee.ref_attr_name)
            if reference.isEmpty { node.pointee.attribute[kept] = attribute; kept += 1; continue }
            let source = callView.attribute(reference) ?? defaultAttribute(reference, of: call.function)
            if let source, let resolved = Self.copy(source) {
                Proto.replace(&resolved.pointee.name, with: Proto.string(attribute.pointee.name))
                Glibc.free(resolved.pointee.ref_attr_name)
                resolved.pointee.ref_attr_name = nil
                node.pointee.attribute[kept] = resolved
                kept += 1
            }
            Proto.free(attribute)
        }
        node.pointee.n_attribute = kept
    }

    private func defaultAttribute(_ name: String, of function: UnsafeMutablePointer<Onnx__FunctionProto>) -> UnsafeMutablePointer<Onnx__AttributeProto>? {
        for attribute in Proto.elements(function.pointee.attribute_proto, function.pointee.n_attribute_proto) {
            if let attribute, Proto.string(attribute.pointee.name) == name { return attribute }
        }
        return nil
    }

    /// A deep copy of a node, in memory of its own (packed and unpacked again, so nothing of
    /// it points into the mapped input file).
    static func copy(_ node: UnsafeMutablePointer<Onnx__NodeProto>) -> UnsafeMutablePointer<Onnx__NodeProto>? {
        var bytes = [UInt8](repeating: 0, count: onnx__node_proto__get_packed_size(node))
        let count = bytes.withUnsafeMutableBufferPointer { onnx__node_proto__pack(node, $0.baseAddress) }
        return bytes.withUnsafeBufferPointer { onnx__node_proto__unpack(ProtoMemory.allocator, count, $0.baseAddress) }
    }

    static func copy(_ attribute: UnsafeMutablePointer<Onnx__AttributeProto>) -> UnsafeMutablePointer<Onnx__AttributeProto>? {
        var bytes = [UInt8](repeating: 0, count: onnx__attribute_proto__get_packed_size(attribute))
        let count = bytes.withUnsafeMutableBufferPointer { onnx__attribute_proto__pack(attribute, $0.baseAddress) }
        return bytes.withUnsafeBufferPointer { onnx__attribute_proto__unpack(ProtoMemory.allocator, count, $0.baseAddress) }
    }

    /// Every value name of the main graph and of the subgraphs below it (ONNX names are
    /// unique across nested scopes, so new names must avoid all of them).
    static func allNames(in graph: UnsafeMutablePointer<Onnx__GraphProto>) -> Set<String> {
        var names = Set<String>()
        func collect(_ g: UnsafeMutablePointer<Onnx__GraphProto>, depth: Int) {
            for list in [(g.pointee.input, g.pointee.n_input), (g.pointee.output, g.pointee.n_output), (g.pointee.value_info, g.pointee.n_value_info)] {
                for info in Proto.elements(list.0, list.1) { if let info { names.insert(Proto.string(info.pointee.name)) } }
            }
            for tensor in Proto.elements(g.pointee.initializer, g.pointee.n_initializer) { if let tensor { names.insert(TensorCodec.name(tensor)) } }
            for node in Proto.elements(g.pointee.node, g.pointee.n_node) {
                guard let node else { continue }
                for value in Proto.elements(node.pointee.input, node.pointee.n_input) { names.insert(Proto.string(value)) }
                for value in Proto.elements(node.pointee.output, node.pointee.n_output) { names.insert(Proto.string(value)) }
                guard depth < maxDepth else { continue }
                for attribute in Proto.elements(node.pointee.attribute, node.pointee.n_attribute) {
                    guard let attribute else { continue }
                    if let sub = attribute.pointee.g { collect(sub, depth: depth + 1) }
                    for sub in Proto.elements(attribute.pointee.graphs, attribute.pointee.n_graphs) { if let sub { collect(sub, depth: depth + 1) } }
                }
            }
        }
        collect(graph, depth: 0)
        return names
    }

    /// Function keys that something in the model still calls: nodes of the main graph
    /// (unless `includeMainNodes` is false), of its subgraphs and of the function bodies (a
    /// function's calls of itself aside).
    func calledFunctionKeys(includeMainNodes: Bool = true) -> Set<String> {
        var keys = Set<String>()
        func collect(_ nodes: UnsafeMutableBufferPointer<UnsafeMutablePointer<Onnx__NodeProto>?>, depth: Int) {
            for node in nodes {
                guard let node else { continue }
                if includeMainNodes || depth > 0 { keys.insert(Self.key(ofCall: node)) }
                guard depth < Self.maxDepth else { continue }
                for (_, g) in NodeView(pointer: node).subgraphs { collect(Proto.elements(g.pointee.node, g.pointee.n_node), depth: depth + 1) }
            }
        }
        collect(Proto.elements(model.graph.pointee.node, model.graph.pointee.n_node), depth: 0)
        for function in Proto.elements(model.proto.pointee.functions, model.proto.pointee.n_functions) {
            guard let function else { continue }
            let own = Self.key(of: function)
            for node in Proto.elements(function.pointee.node, function.pointee.n_node) {
                // A function calling itself does not keep itself alive.
                if let node, Self.key(ofCall: node) != own { keys.insert(Self.key(ofCall: node)) }
            }
        }
        return keys
    }

    /// Removes the functions among `candidates` (keys) that nothing calls any more, repeating
    /// while a removal leaves another uncalled. Returns how many were removed.
    @discardableResult
    func removeUncalledFunctions(among candidates: Set<String>) -> Int {
        var removed = 0
        while true {
            let called = calledFunctionKeys()
            let before = model.proto.pointee.n_functions
            model.proto.pointee.n_functions = Proto.removeMessages(model.proto.pointee.functions, count: model.proto.pointee.n_functions) { function in
                let key = Self.key(of: function)
                return candidates.contains(key) && !called.contains(key)
            }
            let now = before - model.proto.pointee.n_functions
            removed += now
            if now == 0 { return removed }
        }
    }
}

/// Calls replaced by copies of their function's body, undoable until committed.
final class Inlining {
    private let graph: UnsafeMutablePointer<Onnx__GraphProto>
    private let originalNodes: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__NodeProto>?>?
    private let originalCount: Int
    /// Each inlined call with the nodes that replaced it.
    let copies: [(call: FunctionInliner.Call, nodes: [UnsafeMutablePointer<Onnx__NodeProto>])]
    private var settled = false

    init(graph: UnsafeMutablePointer<Onnx__GraphProto>, originalNodes: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__NodeProto>?>?,
         originalCount: Int, copies: [(call: FunctionInliner.Call, nodes: [UnsafeMutablePointer<Onnx__NodeProto>])]) {
        self.graph = graph
        self.originalNodes = originalNodes
        self.originalCount = originalCount
        self.copies = copies
    }

    /// Puts the original node list back and frees the copies. Valid only while the graph's
    /// node list is the one `inline` made (no edit in between).
    func undo() {
        guard !settled else { return }
        settled = true
        for (_, nodes) in copies { nodes.forEach { Proto.free($0) } }
        Glibc.free(graph.pointee.node)
        graph.pointee.node = originalNodes
        graph.pointee.n_node = originalCount
    }

    /// Frees the replaced call nodes and the old node list: the inlining stays.
    func commit() {
        guard !settled else { return }
        settled = true
        for (call, _) in copies { Proto.free(call.node) }
        ProtoMemory.free(originalNodes)
    }
}
