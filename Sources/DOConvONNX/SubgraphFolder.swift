import CONNXProto
import DOConvCore

/// Finds and folds DO-Conv layers inside control-flow subgraphs (the bodies and branches of
/// If, Loop and Scan, at any depth up to `maxDepth`), whose D and W come from the body's own
/// initializers or an enclosing graph's.
///
/// Each subgraph with a DO-Conv Einsum is matched with the same detector as the main graph,
/// seeing the enclosing graphs' initializers as constants (a 1x1 layer, only a Reshape of W,
/// is not searched for in subgraphs). A folded kernel goes into the main graph's initializers
/// (visible from every subgraph, and counted with the model's parameters); D and W of an
/// enclosing graph are removed only once nothing in the whole model reads them.
struct SubgraphFolder {
    let model: ONNXModel
    let options: FoldOptions

    /// Subgraphs nested deeper than this are not searched (a hostile file could recurse).
    static let maxDepth = 16

    /// One subgraph with what its nodes see from outside, and where it is.
    private struct Scope {
        var graph: UnsafeMutablePointer<Onnx__GraphProto>
        var outer: [String: UnsafeMutablePointer<Onnx__TensorProto>]
        /// The graphs around it, the main graph first.
        var enclosingGraphs: [UnsafeMutablePointer<Onnx__GraphProto>]
        /// "If choose/then_branch", for names in reports.
        var location: String
    }

    /// Every subgraph below the main graph that holds a DO-Conv composition (an Einsum of
    /// one of the layouts), parents before children.
    private func scopes() -> [Scope] {
        var found: [Scope] = []
        // The initializers of each enclosing graph, innermost last: built once per graph, so
        // the work stays linear in the model however many subgraphs share the outer ones.
        typealias Initializers = [String: UnsafeMutablePointer<Onnx__TensorProto>]
        func visit(_ graph: UnsafeMutablePointer<Onnx__GraphProto>, enclosing: [Initializers], graphs: [UnsafeMutablePointer<Onnx__GraphProto>],
                   location: String, depth: Int) {
            guard depth < Self.maxDepth else { return }
            var own: Initializers = [:]
            for tensor in Proto.elements(graph.pointee.initializer, graph.pointee.n_initializer) {
                if let tensor { own[TensorCodec.name(tensor)] = tensor }
            }
            let chain = enclosing + [own]
            for node in Proto.elements(graph.pointee.node, graph.pointee.n_node) {
                guard let node else { continue }
                let view = NodeView(pointer: node)
                for (branch, sub) in view.subgraphs {
                    let here = (location.isEmpty ? "" : location + "/") + "\(view.opType) \(view.name.isEmpty ? "?" : view.name)/\(branch)"
                    let nodes = Proto.elements(sub.pointee.node, sub.pointee.n_node)
                    if FunctionInliner.hasComposition(nodes) {
                        // Only the outer initializers this subgraph's nodes read.
                        var outer: Initializers = [:]
                        for reader in nodes {
                            guard let reader else { continue }
                            for input in Proto.elements(reader.pointee.input, reader.pointee.n_input) {
                                let name = Proto.string(input)
                                if outer[name] == nil, let tensor = chain.reversed().lazy.compactMap({ $0[name] }).first { outer[name] = tensor }
                            }
                        }
                        found.append(Scope(graph: sub, outer: outer, enclosingGraphs: graphs + [graph], location: here))
                    }
                    visit(sub, enclosing: chain, graphs: graphs + [graph], location: here, depth: depth + 1)
                }
            }
        }
        visit(model.graph, enclosing: [], graphs: [], location: "", depth: 0)
        return found
    }

    /// `name` placed in its subgraph.
    private static func placed(_ name: String, _ scope: Scope) -> String { "\(scope.location)/\(name)" }

    /// The layers in subgraphs and the look-alikes there, without changing the model.
    func detect() throws(ONNXError) -> (layers: [DetectedLayer], rejected: [RejectedCandidate]) {
        var layers: [DetectedLayer] = []
        var rejected: [RejectedCandidate] = []
        for scope in scopes() {
            let (matches, refused) = try detect(in: scope)
            layers += matches.map(\.detected)
            rejected += refused
        }
        return (layers, rejected)
    }

    /// The subgraph's index, seeing the enclosing graphs' values (built afresh: an earlier
    /// fold may have rewritten an enclosing body).
    private func index(of scope: Scope) -> GraphIndex {
        var chain: [GraphIndex] = []
        for graph in scope.enclosingGraphs { chain.append(GraphIndex(graph: graph, enclosing: chain)) }
        return GraphIndex(graph: scope.graph, outerInitializers: scope.outer, enclosing: chain)
    }

    private func detect(in scope: Scope) throws(ONNXError) -> (matches: [KernelCompositionMatch], rejected: [RejectedCandidate]) {
        let index = index(of: scope)
        let (matches, rejected) = try KernelCompositionDetector(index: index, codec: model.codec).detect()
        let placedMatches = matches.map { match -> KernelCompositionMatch in
            var match = match
            match.name = Self.placed(match.name, scope)
            match.location = scope.location
            return match
        }
        return (placedMatches, rejected.map { RejectedCandidate(name: Self.placed($0.name, scope), reason: $0.reason, isDOConvLayer: $0.isDOConvLayer) })
    }

    /// Folds every layer in every subgraph; `taken` holds every value name of the model.
    func fold(taken: inout Set<String>) throws(ONNXError) -> (layers: [FoldedLayer], rejected: [RejectedCandidate]) {
        var layers: [FoldedLayer] = []
        var rejected: [RejectedCandidate] = []
        var outerCandidates = Set<String>()
        let readBefore = TensorWalk.subgraphInputNames(of: model.graph)
        for scope in scopes() {
            let (matches, refused) = try detect(in: scope)
            rejected += refused
            guard !matches.isEmpty else { continue }
            let index = index(of: scope)
            var edit = GraphEdit()
            layers += try ONNXFolder.foldCompositions(matches, index: index, model: model, options: options, taken: &taken, edit: &edit).layers
            // The kernels go to the main graph: a subgraph sees every enclosing graph's values.
            let kernels = edit.newInitializers
            edit.newInitializers = []
            let graph = model.graph
            for (tensor, external) in kernels {
                graph.pointee.initializer = Proto.appending(tensor, to: graph.pointee.initializer, count: graph.pointee.n_initializer)
                graph.pointee.n_initializer += 1
                if external { model.externalizeOnSave.insert(UnsafeMutableRawPointer(tensor)) }
            }
            outerCandidates.formUnion(edit.candidateInitializers.filter { scope.outer[$0] != nil })
            GraphRewrite.apply(edit, to: model, graph: scope.graph, index: index)
        }
        if !layers.isEmpty { removeUnreadChains(readBefore: readBefore, candidates: &outerCandidates) }
        removeUnread(outerCandidates)
        return (layers, rejected)
    }

    /// Removes the main graph's constant chains (`Identity`, `Cast`, `Constant`, ... of
    /// initializers) that only folded subgraphs read: values subgraphs read before the fold and
    /// nothing reads now. Their initializers join `candidates`.
    private func removeUnreadChains(readBefore: Set<String>, candidates: inout Set<String>) {
        let index = GraphIndex(graph: model.graph)
        let resolver = ConstantResolver(index: index, codec: model.codec)
        var edit = GraphEdit()
        for value in readBefore where index.producer[value] != nil && index.uses(of: value).isEmpty && !index.isPinned(value) {
            guard let constant = try? resolver.float(value) else { continue }
            edit.candidateNodes.formUnion(constant.nodes)
            edit.candidateInitializers.formUnion(constant.initializers)
        }
        guard !edit.candidateNodes.isEmpty else { return }
        candidates.formUnion(edit.candidateInitializers)
        GraphRewrite.apply(edit, to: model, index: index)
    }

    /// Removes the main graph's initializers among `candidates` that nothing in the model
    /// reads any more (with their graph inputs and value_info). Candidates of intermediate
    /// subgraphs stay where they are.
    private func removeUnread(_ candidates: Set<String>) {
        guard !candidates.isEmpty else { return }
        let graph = model.graph
        var read = TensorWalk.subgraphInputNames(of: graph)
        for node in Proto.elements(graph.pointee.node, graph.pointee.n_node) {
            guard let node else { continue }
            for input in Proto.elements(node.pointee.input, node.pointee.n_input) { read.insert(Proto.string(input)) }
        }
        for output in Proto.elements(graph.pointee.output, graph.pointee.n_output) {
            if let output { read.insert(Proto.string(output.pointee.name)) }
        }
        let unread = candidates.subtracting(read)
        guard !unread.isEmpty else { return }
        graph.pointee.n_initializer = Proto.removeMessages(graph.pointee.initializer, count: graph.pointee.n_initializer) {
            unread.contains(TensorCodec.name($0))
        }
        graph.pointee.n_input = Proto.removeMessages(graph.pointee.input, count: graph.pointee.n_input) {
            unread.contains(Proto.string($0.pointee.name))
        }
        graph.pointee.n_value_info = Proto.removeMessages(graph.pointee.value_info, count: graph.pointee.n_value_info) {
            unread.contains(Proto.string($0.pointee.name))
        }
    }
}
