import DOConvGraph
import DOConvVerify

/// A view of a graph for the structure and per-layer checks in which the nodes of control-flow
/// subgraphs (If branches, Loop and Scan bodies) sit in the main node list, just before the
/// node that owns them, and their initializers among the main graph's. ONNX value names are
/// unique across nested scopes, so nothing collides, and a DO-Conv kernel computation inside a
/// branch that reads D and W from the outer scope then looks exactly like one in the main
/// graph: the fold's replacement of it is checked by the same rules.
///
/// The view is not run end to end: a flattened graph would execute every branch. The owner
/// keeps, in place of each subgraph attribute, a summary of the subgraph's interface (name,
/// inputs, outputs with types), so a changed interface is still a difference; the subgraph's
/// inputs (a Loop's iteration count, say) count as values fed from outside.
enum SubgraphFlattening {
    /// Subgraphs nested deeper than this stay as they are (the importer refuses deeper ones).
    static let maxDepth = 16

    /// The flattened view, and how many subgraphs were flattened.
    static func flatten(_ graph: Graph) -> (graph: Graph, subgraphs: Int) {
        var result = graph
        var count = 0
        var initializers: [(String, TensorValue)] = []
        var innerInputs: [ValueInfo] = []
        var innerOutputs: [ValueInfo] = []
        result.nodes = flatten(graph.nodes, depth: 0, count: &count, initializers: &initializers, inputs: &innerInputs, outputs: &innerOutputs)
        guard count > 0 else { return (graph, 0) }
        for (name, value) in initializers where result.initializers[name] == nil {
            result.initializerOrder.append(name)
            result.initializers[name] = value
        }
        // Inner inputs are fed by the owner at run time: to the checks they are feeds. Inner
        // outputs leave the subgraph: a replacement must not swallow them.
        let known = Set(result.inputs.map(\.name))
        result.inputs += innerInputs.filter { !known.contains($0.name) }
        let knownOutputs = Set(result.outputs.map(\.name))
        result.outputs += innerOutputs.filter { !knownOutputs.contains($0.name) }
        return (result, count)
    }

    private static func flatten(_ nodes: [Node], depth: Int, count: inout Int, initializers: inout [(String, TensorValue)],
                                inputs: inout [ValueInfo], outputs: inout [ValueInfo]) -> [Node] {
        var result: [Node] = []
        for node in nodes {
            guard depth < maxDepth, node.attributes.contains(where: { isGraph($0.value) }) else {
                result.append(node)
                continue
            }
            var owner = node
            for k in owner.attributes.indices {
                let subgraphs: [Graph]
                switch owner.attributes[k].value {
                case .graph(let g): subgraphs = [g]
                case .graphs(let gs): subgraphs = gs
                default: continue
                }
                for g in subgraphs {
                    count += 1
                    result += flatten(g.nodes, depth: depth + 1, count: &count, initializers: &initializers, inputs: &inputs, outputs: &outputs)
                    initializers += g.initializerOrder.compactMap { name in g.initializers[name].map { (name, $0) } }
                    inputs += g.inputs.filter { g.initializers[$0.name] == nil }
                    outputs += g.outputs
                }
                let summary = subgraphs.map(interface).joined(separator: "; ")
                owner.attributes[k].value = .other(summary: "subgraph \(summary) (its nodes compared in line)", bytes: Array(summary.utf8))
            }
            result.append(owner)
        }
        return result
    }

    private static func isGraph(_ value: Attribute) -> Bool {
        switch value {
        case .graph, .graphs: return true
        default: return false
        }
    }

    /// "'then' (inputs: ...; outputs: y float [1, 4, 8, 8])".
    private static func interface(_ g: Graph) -> String {
        func list(_ infos: [ValueInfo]) -> String { infos.map { "\($0.name) \(StructureDiff.describe($0))" }.joined(separator: ", ") }
        return "'\(g.name)' (inputs: \(list(g.inputs)); outputs: \(list(g.outputs)))"
    }
}
