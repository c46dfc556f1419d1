import CONNXProto
import DOConvCore
import DOConvFileIO

/// Folds every DO-Conv layer of an ONNX model into a plain Conv kernel, in place.
public enum ONNXFolder {
    /// The metadata key under which a folded model records what was folded.
    public static let metadataKey = "doconv.folded"

    /// Finds every DO-Conv layer without changing the model (for reports). Layers inside
    /// calls of local functions are found on the graph with those calls inlined, which is
    /// undone before this returns.
    public static func detect(_ model: ONNXModel, options: FoldOptions = FoldOptions()) throws(ONNXError) -> Detection {
        // Matched as the fold matches: with identity arithmetic dropped (put back below).
        let identities = try dropIdentities(model)
        defer { identities.dropping?.undo() }
        let functions = try inlineFunctionCalls(model)
        defer { functions.inlining?.undo() }
        let index = GraphIndex(graph: model.graph)
        var (compositions, rejectedCompositions) = try KernelCompositionDetector(index: index, codec: model.codec).detect()
        if let inlining = functions.inlining { locate(&compositions, in: inlining, index: index) }
        var (pairs, rejectedPairs) = try FeatureCompositionDetector(index: index, codec: model.codec, foldSeparable: options.foldSeparable).detect()
        let selected = (options.selection.partition(compositions) { $0.detected.name }, options.selection.partition(pairs) { $0.detected.name })
        (compositions, pairs) = (selected.0.taken, selected.1.taken)
        rejectedCompositions += selected.0.left + selected.1.left
        let subgraphs = try SubgraphFolder(model: model, options: options).detect()
        let nested = NestedCompositionScan(model: model, coveredFunctions: functions.covered).scan()
        return Detection(layers: compositions.map(\.detected) + pairs.map(\.detected) + subgraphs.layers,
                         rejected: rejectedCompositions + rejectedPairs + subgraphs.rejected + functions.rejected + nested + identities.refused)
    }

    /// Identity arithmetic (`Add(x, 0)` and its kin, see `IdentityArithmetic`) dropped from the
    /// main graph, reversibly, and the look-alikes left with the reason.
    static func dropIdentities(_ model: ONNXModel) throws(ONNXError) -> (dropping: IdentityDropping?, refused: [RejectedCandidate]) {
        let index = GraphIndex(graph: model.graph)
        let (drops, refused) = try IdentityArithmetic(index: index, codec: model.codec).find()
        return (drops.isEmpty ? nil : IdentityDropping(drops, model: model, index: index), refused)
    }

    /// Marks the layers that come from an inlined call with the function and call node.
    private static func locate(_ matches: inout [KernelCompositionMatch], in inlining: Inlining, index: GraphIndex) {
        var place: [UnsafeMutableRawPointer: String] = [:]
        for copy in inlining.copies { for node in copy.nodes { place[UnsafeMutableRawPointer(node)] = copy.call.place } }
        for k in matches.indices {
            matches[k].location = matches[k].nodes.lazy.compactMap { place[UnsafeMutableRawPointer(index.nodes[$0].pointer)] }.first
        }
    }

    /// The calls of local functions that compose DO-Conv kernels, inlined into the main
    /// graph when their D and W are constants at the call site and the inlined composition
    /// folds (a trial detection tells; calls whose composition would not fold are put back
    /// and reported, so the model only changes where a layer is folded).
    static func inlineFunctionCalls(_ model: ONNXModel) throws(ONNXError) -> (inlining: Inlining?, rejected: [RejectedCandidate], covered: Set<String>) {
        let inliner = FunctionInliner(model: model)
        var (calls, rejected, covered) = inliner.plan()
        guard !calls.isEmpty else { return (nil, rejected, covered) }
        let trial = inliner.inline(calls)
        let failed: [Int: [RejectedCandidate]]
        do {
            failed = try unfoldableCalls(trial, model: model)
        } catch {
            trial.undo()
            throw error
        }
        if failed.isEmpty { return (trial, rejected, covered) }
        trial.undo()
        for (k, call) in calls.enumerated() {
            guard let reasons = failed[k] else { continue }
            let why = reasons.map(\.reason).joined(separator: "; ")
            rejected.append(RejectedCandidate(name: call.place, reason: "a DO-Conv kernel composition in a local function that does not fold: \(why)", isDOConvLayer: true))
        }
        calls = calls.enumerated().filter { failed[$0.offset] == nil }.map(\.element)
        return (calls.isEmpty ? nil : inliner.inline(calls), rejected, covered)
    }

    /// The inlined calls (by position) whose compositions the detector does not match, with
    /// what it said about their nodes.
    private static func unfoldableCalls(_ inlining: Inlining, model: ONNXModel) throws(ONNXError) -> [Int: [RejectedCandidate]] {
        let index = GraphIndex(graph: model.graph)
        let (matches, rejected) = try KernelCompositionDetector(index: index, codec: model.codec).detect()
        let matched = Set(matches.flatMap { $0.nodes.map { UnsafeMutableRawPointer(index.nodes[$0].pointer) } })
        var failed: [Int: [RejectedCandidate]] = [:]
        for (k, copy) in inlining.copies.enumerated() {
            let einsums = copy.nodes.filter(FunctionInliner.isComposition)
            guard einsums.contains(where: { !matched.contains(UnsafeMutableRawPointer($0)) }) else { continue }
            let own = rejected.filter { $0.name.hasPrefix(copy.call.prefix + "/") }
            failed[k] = own.isEmpty ? [RejectedCandidate(name: copy.call.place, reason: "its kernel does not reach a Conv weight as a DO-Conv layer does")] : own
        }
        return failed
    }

    /// Detects, folds and verifies every layer, then rewrites the graph (and, with
    /// `fuseBatchNorm`, folds each BatchNormalization into the Conv before it). The caller
    /// decides whether to save: a summary with failures must not be written.
    ///
    /// Calls of local functions whose composition folds are inlined first (see
    /// `inlineFunctionCalls`); a function no node calls any more afterwards is removed.
    /// With `reparameterize` (`--reparam`), blocks of linear branches and chains of linear
    /// stages then merge into single Convs (see `Reparameterizer`), which also fuses every
    /// BatchNormalization that follows a Conv. Before any of it, identity arithmetic
    /// (`Add(x, 0)`, see `IdentityArithmetic`) is dropped from the main graph, and noted, when
    /// the fold changes anything else.
    public static func fold(_ model: ONNXModel, options: FoldOptions = FoldOptions(), fuseBatchNorm: Bool = false,
                            reparameterize: Bool = false) throws(ONNXError) -> FoldSummary {
        try foldReporting(model, options: options, fuseBatchNorm: fuseBatchNorm, reparameterize: reparameterize).summary
    }

    /// `fold`, with the float32 kernels of the main graph's compositions computed and probed
    /// by `pending`'s thread rather than before this returns (see `PendingKernels`). Their
    /// layers' `relativeError` is nil until `DeferredFold.finished(_:)` puts in the probes' results.
    static func foldDeferringKernels(_ model: ONNXModel, options: FoldOptions, pending: PendingKernels) throws(ONNXError) -> DeferredFold {
        let (summary, _, deferred) = try foldReporting(model, options: options, fuseBatchNorm: false, reparameterize: false, pending: pending)
        return DeferredFold(summary: summary, deferredLayers: deferred)
    }

    /// A summary whose deferred layers still wait for their probes.
    struct DeferredFold {
        var summary: FoldSummary
        /// The indices in `summary.layers` of the layers `PendingKernels` computes, in the
        /// order of its jobs.
        let deferredLayers: [Int]

        /// The summary with the probes' results in (waiting for them).
        func finished(_ pending: PendingKernels) -> FoldSummary {
            pending.completing(summary, deferredLayers: deferredLayers)
        }
    }

    /// `fold`, with the candidates `--reparam` left apart from the others (for reports).
    static func foldReporting(_ model: ONNXModel, options: FoldOptions, fuseBatchNorm: Bool, reparameterize: Bool,
                              pending: PendingKernels? = nil) throws(ONNXError) -> (summary: FoldSummary, reparamRejected: [RejectedCandidate], deferred: [Int]) {
        // --fuse-bn and --reparam read the folded kernels to rescale and merge them.
        precondition(pending == nil || (!fuseBatchNorm && !reparameterize), "kernels deferred where they are read before writing")
        // Identity arithmetic goes first, so that every matcher sees the sums without it. It is
        // put back when nothing else changes (the model is then written as it was); on a
        // failure it stays dropped, which keeps the tree whole for its release.
        let identities = try dropIdentities(model)
        var identitiesSettled = false
        defer { if !identitiesSettled { identities.dropping?.commit(model: model) } }
        let functions = try inlineFunctionCalls(model)
        // Until the graph is rewritten a failure puts the calls back, so the tree stays whole.
        var inliningSettled = false
        defer { if !inliningSettled { functions.inlining?.undo() } }
        let totalsBefore = model.initializerTotals
        // Subgraphs first: their kernels join the main graph's initializers, and the main
        // graph's analysis below sees the outcome.
        var taken = FunctionInliner.allNames(in: model.graph)
        let subgraphs = try SubgraphFolder(model: model, options: options).fold(taken: &taken)
        let index = GraphIndex(graph: model.graph)
        var (compositions, rejectedCompositions) = try KernelCompositionDetector(index: index, codec: model.codec).detect()
        var (pairs, rejectedPairs) = try FeatureCompositionDetector(index: index, codec: model.codec, foldSeparable: options.foldSeparable).detect()
        // --only / --exclude: the layers left stay as they are, listed with the reason.
        let selected = (options.selection.partition(compositions) { $0.detected.name }, options.selection.partition(pairs) { $0.detected.name })
        (compositions, pairs) = (selected.0.taken, selected.1.taken)
        rejectedCompositions += selected.0.left + selected.1.left
        var summary = FoldSummary(rejected: rejectedCompositions + rejectedPairs + subgraphs.rejected + functions.rejected
            + NestedCompositionScan(model: model, coveredFunctions: functions.covered).scan())
        (summary.parametersBefore, summary.bytesBefore) = totalsBefore
        var edit = GraphEdit()

        let folded = try foldCompositions(compositions, index: index, model: model, options: options, taken: &taken, edit: &edit, pending: pending)
        let deferred = folded.deferred.map { $0 + summary.layers.count }
        summary.layers += folded.layers

        for pair in pairs {
            // The depthwise conv becomes the folded conv: its geometry, the pair's output,
            // the folded kernel and bias, and the 1x1 conv's groups.
            let pointwise = index.nodes[pair.pointwise]
            let base = pointwise.inputs[1]
            let kernel = TensorCodec.makeTensor(name: GraphRewrite.freshName(base + ".folded", taken: &taken), shape: [], type: pair.elementType, values: [])
            summary.layers.append(try fold(pair.detected, into: kernel, model: model, options: options))
            var layerRecord = summary.layers.removeLast()
            layerRecord.form = .featureComposition
            summary.layers.append(layerRecord)
            edit.newInitializers.append((kernel, pair.external))
            let kernelName = TensorCodec.name(kernel)
            var biasName: String?
            if let bias = pair.bias {
                let name = GraphRewrite.freshName(base + ".folded_bias", taken: &taken)
                edit.newInitializers.append((TensorCodec.makeTensor(name: name, shape: [bias.count], type: pair.elementType, doubles: bias), false))
                biasName = name
            }
            let output = pointwise.outputs[0]
            let groups = Int64(pair.layer.geometry.groups)
            edit.nodeChanges.append((pair.depthwise, { node in
                NodeEdit.setOutput(node, 0, to: output)
                NodeEdit.setInput(node, 1, to: kernelName)
                if let biasName { NodeEdit.setInput(node, 2, to: biasName) } else { NodeEdit.truncateInputs(node, to: 2) }
                NodeEdit.setInt(node, "group", groups)
            }))
            edit.removedNodes.insert(pair.pointwise)
            edit.removedValues.formUnion(index.nodes[pair.depthwise].outputs.prefix(1))
            edit.candidateInitializers.formUnion(pair.initializers)
        }

        if let inlining = functions.inlining {
            inlining.commit()
            inliningSettled = true
            FunctionInliner(model: model).removeUncalledFunctions(among: Set(inlining.copies.map { FunctionInliner.key(of: $0.call.function) }))
        }
        if !edit.isEmpty { GraphRewrite.apply(edit, to: model, index: index) }
        summary.layers += subgraphs.layers
        if fuseBatchNorm {
            let fused = try BatchNormFuser(model: model, tolerance: options.tolerance).fuse()
            summary.fusedBatchNorms = fused
            if !fused.isEmpty { summary.notes.append("fused \(fused.count) BatchNormalization into the Conv before it") }
        }
        var reparamRejected: [RejectedCandidate] = []
        if reparameterize {
            let (merged, rejected) = try Reparameterizer(model: model, options: options).run()
            summary.reparameterized = merged
            reparamRejected = identities.refused + rejected
            summary.rejected += rejected
        }
        summary.rejected += identities.refused
        let changed = !summary.layers.isEmpty || !summary.fusedBatchNorms.isEmpty || !summary.reparameterized.isEmpty
        if let dropping = identities.dropping {
            if changed {
                dropping.commit(model: model)
                summary.notes.append(dropping.note)
            } else {
                dropping.undo()
            }
        }
        identitiesSettled = true
        if changed {
            model.setMetadata(key: metadataKey, value: metadataValue(summary.layers))
        }
        (summary.parametersAfter, summary.bytesAfter) = model.initializerTotals
        return (summary, reparamRejected, deferred)
    }

    /// Folds each matched composition into a new kernel initializer (in `edit`) and rewires
    /// its Convs to it; the composition's nodes and initializers become removal candidates.
    /// With `pending`, the float32 kernels are left to its thread; `deferred` lists their
    /// indices in `layers`.
    static func foldCompositions(_ compositions: [KernelCompositionMatch], index: GraphIndex, model: ONNXModel, options: FoldOptions,
                                 taken: inout Set<String>, edit: inout GraphEdit,
                                 pending: PendingKernels? = nil) throws(ONNXError) -> (layers: [FoldedLayer], deferred: [Int]) {
        var layers: [FoldedLayer] = []
        var deferred: [Int] = []
        for match in compositions {
            let tensor = TensorCodec.makeTensor(name: GraphRewrite.freshName(match.kernelName, taken: &taken), shape: [], type: match.elementType, values: [])
            // D and W were read for the last time once folded (unless shared): their pages of
            // the input file need not stay in this process while the rest is folded.
            let sources = match.initializers.compactMap { index.initializers[$0].flatMap { try? model.codec.mappedRegion(of: $0) } }
            if let pending, let layer = try foldLater(match.detected, into: tensor, model: model, options: options, pending: pending, releasing: sources) {
                deferred.append(layers.count)
                layers.append(layer)
            } else {
                layers.append(try fold(match.detected, into: tensor, model: model, options: options))
                for (bytes, mapping) in sources { mapping.release(bytes) }
            }
            let name = TensorCodec.name(tensor)
            for use in index.uses(of: match.kernelValue) {
                edit.nodeChanges.append((use.node, { NodeEdit.setInput($0, use.slot, to: name) }))
            }
            edit.newInitializers.append((tensor, match.external))
            edit.candidateNodes.formUnion(match.nodes)
            edit.candidateInitializers.formUnion(match.initializers)
        }

        return (layers, deferred)
    }

    /// The blocks `--reparam` would merge and the candidates it would leave, found by running
    /// it on `model`, which it changes: for reports on a model that is not saved.
    public static func reparameterizationReport(_ model: ONNXModel, options: FoldOptions = FoldOptions()) throws(ONNXError) -> (blocks: [ReparameterizedBlock], refused: [RejectedCandidate]) {
        let (summary, refused, _) = try foldReporting(model, options: options, fuseBatchNorm: false, reparameterize: true)
        return (summary.reparameterized, refused)
    }

    /// Folds one layer into `tensor` (a fresh, empty initializer that gets the kernel) and
    /// verifies the kernel as stored.
    static func fold(_ detected: DetectedLayer, into tensor: UnsafeMutablePointer<Onnx__TensorProto>, model: ONNXModel, options: FoldOptions) throws(ONNXError) -> FoldedLayer {
        let exact = detected.elementType == .float64 ? detected.float64?.foldedKernel() : nil
        if let exact {
            let g = detected.layer.geometry
            TensorCodec.store(exact, shape: [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth], in: tensor)
        } else {
            try TensorCodec.storeKernel(of: detected.layer, type: detected.elementType, in: tensor, path: model.path)
        }
        var record = unprobedRecord(of: detected, options: options)
        if options.verify, let exact, let layer = detected.float64 {
            record.relativeError = layer.probe(kernel: exact, patches: options.probePatches, seed: options.seed).relativeError
        } else if options.verify {
            // Probe the kernel as stored (after rounding to the element type), not as computed.
            let stored = UnsafeRawBufferPointer(start: tensor.pointee.raw_data.data, count: tensor.pointee.raw_data.len)
            record.relativeError = KernelStorage.withStoredValues(stored, as: detected.elementType) { kernel in
                LayerProbe.compare(layer: detected.layer, kernel: kernel, patches: options.probePatches, seed: options.seed).relativeError
            }
        }
        return record
    }

    /// The record of a folded layer before its probe.
    private static func unprobedRecord(of detected: DetectedLayer, options: FoldOptions) -> FoldedLayer {
        FoldedLayer(name: detected.name, layout: detected.layer.layout, geometry: detected.layer.geometry, elementType: detected.elementType,
                    stride: detected.stride, dilation: detected.dilation, relativeError: nil,
                    tolerance: options.tolerance ?? detected.elementType.defaultTolerance)
    }

    /// `fold` for a float32 kernel, with the folding, its probe and the release of
    /// `releasing` (the pages of D and W) left to `pending`'s thread; nil for other element
    /// types (and big-endian machines), which `fold` does at once.
    private static func foldLater(_ detected: DetectedLayer, into tensor: UnsafeMutablePointer<Onnx__TensorProto>, model: ONNXModel,
                                  options: FoldOptions, pending: PendingKernels,
                                  releasing: [(bytes: UnsafeRawBufferPointer, mapping: MappedFile)]) throws(ONNXError) -> FoldedLayer? {
        #if _endian(little)
        guard detected.elementType == .float32 else { return nil }
        let layer = detected.layer
        let raw = try TensorCodec.placeKernel(of: layer, type: .float32, in: tensor, path: model.path)
        pending.addFold(of: layer, into: raw, verify: options.verify, patches: options.probePatches, seed: options.seed, keeping: model) {
            for (bytes, mapping) in releasing { mapping.release(bytes) }
        }
        return unprobedRecord(of: detected, options: options)
        #else
        return nil
        #endif
    }

    /// A compact JSON record of the folded layers.
    static func metadataValue(_ layers: [FoldedLayer]) -> String {
        let entries = layers.map { layer -> String in
            let g = layer.geometry
            return "{\"layer\":\(ReportFormat.jsonString(layer.name)),\"kind\":\"\(layer.kind.rawValue)\",\"layout\":\"\(layer.layout.rawValue)\","
                + "\"in_channels\":\(g.inChannels),\"out_channels\":\(g.outChannels),\"kernel\":[\(g.kernelHeight),\(g.kernelWidth)],"
                + "\"groups\":\(g.groups),\"d_mul\":\(g.depthMultiplier)}"
        }
        return "[" + entries.joined(separator: ",") + "]"
    }
}

extension ONNXModel {
    /// Saves the model to `path` atomically (see `ModelWriter.save`).
    public func save(to path: String) throws(ONNXError) {
        try ModelWriter.save(self, to: path)
    }
}
