import CONNXProto
import DOConvCore

/// DO-Conv kernel compositions that sit where the fold does not reach yet: in the bodies
/// of local functions (`ModelProto.functions`, as `torch.onnx.export(...,
/// export_modules_as_functions=...)` writes them) and in control-flow subgraphs (If, Loop,
/// Scan). Each is reported as a layer that was not folded, so a model is never called free
/// of DO-Conv layers while it still recomputes kernels at every inference.
struct NestedCompositionScan {
    let model: ONNXModel

    /// Subgraphs nested deeper than this are not searched (a hostile file could recurse).
    static let maxDepth = 16

    func scan() -> [RejectedCandidate] {
        var found: [RejectedCandidate] = []
        let callCounts = callSites()
        for function in Proto.elements(model.proto.pointee.functions, model.proto.pointee.n_functions) {
            guard let function else { continue }
            let name = Proto.string(function.pointee.name)
            let calls = callCounts[name, default: 0]
            let place = "local function '\(name)' (\(calls) call\(calls == 1 ? "" : "s"))"
            scan(nodes: Proto.elements(function.pointee.node, function.pointee.n_node), location: "function \(name)", place: place, depth: 0, into: &found)
        }
        scanSubgraphs(of: Proto.elements(model.graph.pointee.node, model.graph.pointee.n_node), location: "", depth: 0, into: &found)
        return found
    }

    /// Calls of each local function in the main graph (by op type; functions live in their
    /// own domains, which the exporters do not share with standard ops).
    private func callSites() -> [String: Int] {
        var counts: [String: Int] = [:]
        for node in Proto.elements(model.graph.pointee.node, model.graph.pointee.n_node) {
            guard let node else { continue }
            counts[NodeView(pointer: node).opType, default: 0] += 1
        }
        return counts
    }

    private func scan(nodes: UnsafeMutableBufferPointer<UnsafeMutablePointer<Onnx__NodeProto>?>, location: String, place: String, depth: Int,
                      into found: inout [RejectedCandidate]) {
        for node in nodes {
            guard let node else { continue }
            let view = NodeView(pointer: node)
            if view.isOp("Einsum"), let equation = view.stringAttribute("equation"), KernelCompositionDetector.layout(ofEquation: equation) != nil {
                let name = view.name.isEmpty ? (view.outputs.first ?? "Einsum") : view.name
                found.append(RejectedCandidate(
                    name: location.isEmpty ? name : "\(location)/\(name)",
                    reason: "a DO-Conv kernel composition (Einsum '\(equation)') inside \(place): doconv does not fold there yet",
                    isDOConvLayer: true))
            }
        }
        scanSubgraphs(of: nodes, location: location, depth: depth, into: &found)
    }

    private func scanSubgraphs(of nodes: UnsafeMutableBufferPointer<UnsafeMutablePointer<Onnx__NodeProto>?>, location: String, depth: Int,
                               into found: inout [RejectedCandidate]) {
        guard depth < Self.maxDepth else { return }
        for node in nodes {
            guard let node else { continue }
            let view = NodeView(pointer: node)
            for attribute in Proto.elements(node.pointee.attribute, node.pointee.n_attribute) {
                guard let attribute else { continue }
                let graphs = ([attribute.pointee.g].compactMap { $0 }) + Proto.elements(attribute.pointee.graphs, attribute.pointee.n_graphs).compactMap { $0 }
                for graph in graphs {
                    let branch = Proto.string(attribute.pointee.name)
                    let here = (location.isEmpty ? "" : location + "/") + "\(view.opType) \(view.name.isEmpty ? "?" : view.name)/\(branch)"
                    scan(nodes: Proto.elements(graph.pointee.node, graph.pointee.n_node), location: here,
                         place: "the '\(branch)' subgraph of \(view.opType) node '\(view.name)'", depth: depth + 1, into: &found)
                }
            }
        }
    }
}
