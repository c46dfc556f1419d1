/// Expands every call of a local function into a copy of the function's body, as the ONNX
/// function semantics define a call: formal inputs and outputs bound to the call's actual
/// values, the body's other values renamed apart, attribute references (`ref_attr_name`)
/// taken from the call or else the function's default. Calls inside bodies and inside
/// control-flow subgraphs are expanded too, so the result holds only operators.
///
/// The verifier uses this on both models of a pair, so that a call the fold replaced by one
/// Conv compares with the body's own Conv, and the reference executor runs what a call
/// computes. Written from the ONNX IR specification, independent of the fold's inliner.
public struct FunctionInlining {
    /// Calls nested deeper than this (a function calling itself, say) are refused.
    public static let maxDepth = 16
    /// All expanded bodies together stay under this many nodes.
    public static let maxNodes = 1 << 20

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case tooDeep(FunctionKey)
        case tooLarge
        case tooManyInputs(call: String, FunctionKey)

        public var description: String {
            switch self {
            case .tooDeep(let key): return "calls of local function \(key) nest deeper than \(FunctionInlining.maxDepth) levels (recursive functions cannot run)"
            case .tooLarge: return "expanding the local function calls would exceed \(FunctionInlining.maxNodes) nodes"
            case .tooManyInputs(let call, let key): return "node '\(call)' passes more inputs or outputs than local function \(key) declares"
            }
        }
    }

    private var functions: [FunctionKey: LocalFunction] = [:]
    /// Value names in use (ONNX value names are unique across nested scopes).
    private var taken: Set<String>
    /// Node names in use, a namespace of their own.
    private var takenNodeNames: Set<String>
    private var expandedNodes = 0
    /// How many calls were expanded.
    public private(set) var calls = 0

    /// `graph` with every call of its local functions expanded, its function list emptied,
    /// and the number of calls expanded.
    public static func inline(_ graph: Graph) throws(Failure) -> (graph: Graph, calls: Int) {
        guard !graph.functions.isEmpty else { return (graph, 0) }
        var inliner = FunctionInlining(graph: graph)
        var result = graph
        result.nodes = try inliner.expand(graph.nodes, depth: 0)
        result.functions = []
        return (result, inliner.calls)
    }

    private init(graph: Graph) {
        // The first of functions with one id wins, as for any reader that looks them up by id.
        for function in graph.functions where functions[function.key] == nil { functions[function.key] = function }
        (taken, takenNodeNames) = Self.names(in: graph)
    }

    private mutating func expand(_ nodes: [Node], depth: Int) throws(Failure) -> [Node] {
        var result: [Node] = []
        result.reserveCapacity(nodes.count)
        for node in nodes {
            let key = FunctionKey(domain: node.domain, name: node.opType, overload: node.overload)
            guard let function = functions[key] else {
                result.append(try expandingSubgraphs(of: node, depth: depth))
                continue
            }
            guard depth < Self.maxDepth else { throw .tooDeep(key) }
            let body = try self.body(of: function, for: node)
            calls += 1
            expandedNodes += body.count
            guard expandedNodes <= Self.maxNodes else { throw .tooLarge }
            result += try expand(body, depth: depth + 1)
        }
        return result
    }

    /// The node with the calls inside its subgraph attributes expanded.
    private mutating func expandingSubgraphs(of node: Node, depth: Int) throws(Failure) -> Node {
        guard node.attributes.contains(where: { if case .graph = $0.value { return true }; if case .graphs = $0.value { return true }; return false }) else { return node }
        guard depth < Self.maxDepth else { return node }
        var copy = node
        for k in copy.attributes.indices {
            switch copy.attributes[k].value {
            case .graph(var g):
                g.nodes = try expand(g.nodes, depth: depth + 1)
                copy.attributes[k].value = .graph(g)
            case .graphs(let gs):
                var expanded: [Graph] = []
                for var g in gs {
                    g.nodes = try expand(g.nodes, depth: depth + 1)
                    expanded.append(g)
                }
                copy.attributes[k].value = .graphs(expanded)
            default: break
            }
        }
        return copy
    }

    /// A copy of `function`'s body bound to one call.
    private mutating func body(of function: LocalFunction, for call: Node) throws(Failure) -> [Node] {
        let callName = call.name.isEmpty ? (call.outputs.first { !$0.isEmpty } ?? call.opType) : call.name
        guard call.inputs.count <= function.inputs.count, call.outputs.count <= function.outputs.count else {
            throw .tooManyInputs(call: callName, function.key)
        }
        var rename: [String: String] = [:]
        for (slot, formal) in function.inputs.enumerated() where !formal.isEmpty {
            rename[formal] = slot < call.inputs.count ? call.inputs[slot] : ""
        }
        for (slot, formal) in function.outputs.enumerated() where !formal.isEmpty {
            let actual = slot < call.outputs.count ? call.outputs[slot] : ""
            rename[formal] = actual.isEmpty ? fresh("\(callName)/\(formal)") : actual
        }
        var body: [Node] = []
        for (index, original) in function.nodes.enumerated() {
            var node = original
            node.inputs = node.inputs.map { $0.isEmpty ? "" : rename[$0] ?? $0 }
            node.outputs = node.outputs.map { name -> String in
                guard !name.isEmpty else { return "" }
                if let bound = rename[name] { return bound }
                let new = fresh("\(callName)/\(name)")
                rename[name] = new
                return new
            }
            node.name = Self.fresh("\(callName)/\(original.name.isEmpty ? original.opType : original.name)", taken: &takenNodeNames)
            let references = index < function.attributeReferences.count ? function.attributeReferences[index] : []
            node.attributes = node.attributes.compactMap { attribute -> (name: String, value: Attribute)? in
                guard let reference = references.first(where: { $0.name == attribute.name })?.reference else {
                    return (attribute.name, Self.renamingOuterValues(attribute.value, rename))
                }
                let value = call[attribute: reference] ?? function.attributeDefaults.first { $0.name == reference }?.value
                return value.map { (attribute.name, $0) }
            }
            body.append(node)
        }
        return body
    }

    /// Subgraph attributes of a body node read the body's values by name: bind those too.
    private static func renamingOuterValues(_ value: Attribute, _ rename: [String: String]) -> Attribute {
        func renamed(_ g: Graph) -> Graph {
            var g = g
            g.nodes = g.nodes.map { node in
                var node = node
                node.inputs = node.inputs.map { rename[$0] ?? $0 }
                node.attributes = node.attributes.map { ($0.name, renamingOuterValues($0.value, rename)) }
                return node
            }
            g.outputs = g.outputs.map { info in var info = info; info.name = rename[info.name] ?? info.name; return info }
            return g
        }
        switch value {
        case .graph(let g): return .graph(renamed(g))
        case .graphs(let gs): return .graphs(gs.map(renamed))
        default: return value
        }
    }

    /// A value name not in use.
    private mutating func fresh(_ base: String) -> String { Self.fresh(base, taken: &taken) }

    /// `base`, or `base_1`, `base_2`, ... whichever is free; taken from then on.
    private static func fresh(_ base: String, taken: inout Set<String>) -> String {
        var candidate = base
        var k = 0
        while taken.contains(candidate) {
            k += 1
            candidate = "\(base)_\(k)"
        }
        taken.insert(candidate)
        return candidate
    }

    /// Every value name and node name of the graph and of its subgraphs (function bodies
    /// are renamed on expansion, so their names do not count).
    private static func names(in graph: Graph) -> (values: Set<String>, nodes: Set<String>) {
        var values = Set(graph.initializerOrder)
        var nodes = Set<String>()
        func add(_ g: Graph) {
            values.formUnion(g.initializerOrder)
            values.formUnion(g.inputs.map(\.name))
            values.formUnion(g.outputs.map(\.name))
            for node in g.nodes {
                nodes.insert(node.name)
                values.formUnion(node.inputs)
                values.formUnion(node.outputs)
                for attribute in node.attributes {
                    switch attribute.value {
                    case .graph(let sub): add(sub)
                    case .graphs(let subs): subs.forEach(add)
                    default: break
                    }
                }
            }
        }
        add(graph)
        values.remove("")
        return (values, nodes)
    }
}
