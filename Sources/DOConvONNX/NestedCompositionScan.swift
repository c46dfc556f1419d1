import CONNXProto
import DOConvCore

/// DO-Conv kernel compositions that sit where the fold does not reach: in the bodies of
/// local functions (`ModelProto.functions`, as `torch.onnx.export(...,
/// export_modules_as_functions=...)` writes them) that the main graph does not call, and in
/// control-flow subgraphs inside function bodies. Each is reported as a layer that was not
/// folded, so a model is never called free of DO-Conv layers while it still recomputes
/// kernels at every inference. (The main graph's own subgraphs are `SubgraphFolder`'s.)
///
/// Functions the main graph calls are accounted for call by call by `FunctionInliner`
/// (inlined and folded, or reported with the reason): `coveredFunctions` names them, and
/// only the subgraphs inside their bodies are searched here.
struct NestedCompositionScan {
    let model: ONNXModel
    /// Keys (`FunctionInliner.key`) of the functions whose calls the inliner accounted for.
    var coveredFunctions: Set<String> = []

    /// Subgraphs nested deeper than this are not searched (a hostile file could recurse).
    static let maxDepth = 16

    func scan() -> [RejectedCandidate] {
        var found: [RejectedCandidate] = []
        let callCounts = callSites()
        for function in Proto.elements(model.proto.pointee.functions, model.proto.pointee.n_functions) {
            guard let function else { continue }
            let name = Proto.string(function.pointee.name)
            let calls = callCounts[FunctionInliner.key(of: function), default: 0]
            let place = "local function '\(name)' (\(calls) call\(calls == 1 ? "" : "s"))"
            let body = Proto.elements(function.pointee.node, function.pointee.n_node)
            if coveredFunctions.contains(FunctionInliner.key(of: function)) {
                scanSubgraphs(of: body, location: "function \(name)", depth: 0, into: &found)
            } else {
                scan(nodes: body, location: "function \(name)", place: place, depth: 0, into: &found)
            }
        }
        return found
    }

    /// Calls of each local function (by `FunctionInliner.key`) anywhere in the model: the
    /// main graph, its subgraphs and the function bodies, at most `maxDepth` deep.
    private func callSites() -> [String: Int] {
        var counts: [String: Int] = [:]
        func count(_ nodes: UnsafeMutableBufferPointer<UnsafeMutablePointer<Onnx__NodeProto>?>, depth: Int) {
            for node in nodes {
                guard let node else { continue }
                counts[FunctionInliner.key(ofCall: node), default: 0] += 1
                guard depth < Self.maxDepth else { continue }
                for (_, g) in NodeView(pointer: node).subgraphs { count(Proto.elements(g.pointee.node, g.pointee.n_node), depth: depth + 1) }
            }
        }
        count(Proto.elements(model.graph.pointee.node, model.graph.pointee.n_node), depth: 0)
        for function in Proto.elements(model.proto.pointee.functions, model.proto.pointee.n_functions) {
            if let function { count(Proto.elements(function.pointee.node, function.pointee.n_node), depth: 0) }
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
            for (branch, graph) in view.subgraphs {
                let here = (location.isEmpty ? "" : location + "/") + "\(view.opType) \(view.name.isEmpty ? "?" : view.name)/\(branch)"
                scan(nodes: Proto.elements(graph.pointee.node, graph.pointee.n_node), location: here,
                     place: "the '\(branch)' subgraph of \(view.opType) node '\(view.name)'", depth: depth + 1, into: &found)
            }
        }
    }
}
