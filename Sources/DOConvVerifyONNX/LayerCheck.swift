import DOConvCore
import DOConvGraph
import Dispatch
import DOConvVerify

/// Checks each replaced Conv's kernel (and bias) numerically.
struct LayerCheck {
    let original: Graph
    let folded: Graph
    let detected: [DetectedLayer]
    let tolerance: Double?
    let patches: Int
    let seed: UInt64
    /// A feed for ORIGINAL, so that constants built from data-independent facts (a CastLike
    /// to a feed's type) compute too; the structure check has already required constancy.
    var feeds: [String: TensorValue] = [:]
    /// ORIGINAL with its constant work already computed (`precomputingConstants`), so that a
    /// kernel composed from D and W is read, not recomputed, by each check.
    var evaluator: ReferenceExecutor?

    private var originalExecutor: ReferenceExecutor { evaluator ?? ReferenceExecutor(graph: original) }

    /// Every replacement, checked on all cores (each check reads the graphs only).
    func check(_ replacements: [ReplacedConv]) -> [LayerResult] {
        let results = UnsafeMutableBufferPointer<LayerResult?>.allocate(capacity: replacements.count)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        // One work item per layer: the pool hands them out as cores free up, so a few large
        // layers (ResNet's last stage) do not all land on one core.
        // Each check reads the graphs only and writes its own slot.
        nonisolated(unsafe) let (slots, checker) = (results, self)
        DispatchQueue.concurrentPerform(iterations: replacements.count) { k in slots[k] = checker.check(replacements[k]) }
        return results.compactMap { $0 }
    }

    /// A constant of ORIGINAL, evaluated by the reference executor.
    private func constant(_ name: String) -> Result<TensorValue, ExecutionError> {
        Result { () throws(ExecutionError) -> TensorValue in
            guard let value = try originalExecutor.evaluate([name], feeds: feeds)[name] else { throw .missingValue(name) }
            return value
        }
    }

    private func check(_ r: ReplacedConv) -> LayerResult {
        if r.isLinearBlock {
            var block = LinearBlockCheck(structure: original, original: originalExecutor.graph, folded: folded, tolerance: tolerance, images: patches, seed: seed)
            block.feeds = feeds
            return block.check(r)
        }
        let fNode = folded.nodes[r.foldedNode]
        var result = LayerResult(name: fNode.name.isEmpty ? fNode.outputs.first ?? "" : fNode.name,
                                 conv: StructureDiff.label(fNode), description: "Conv")
        guard let foldedKernel = folded.initializers[r.foldedWeight], foldedKernel.type.isFloat else {
            result.problems.append("FOLDED's kernel '\(r.foldedWeight)' is not a float initializer")
            return result
        }
        let tol = tolerance ?? foldedKernel.type.defaultTolerance
        let f = foldedKernel.doubles
        guard var graph = graphKernel(of: r, into: &result) else { return result }
        var expected = reference(for: r, graph: graph, foldedNode: fNode, foldedType: foldedKernel.type, tolerance: tol, into: &result)
        // A BatchNormalization folded in: scale each output row, shift the bias.
        var rowScale: [Double]?
        if let position = r.batchNormPosition {
            guard let fused = fuseBatchNorm(original.nodes[r.chain[position]], into: &graph, reference: &expected.kernel, result: &result) else { return result }
            rowScale = fused
        }
        guard foldedKernel.shape == graph.shape else {
            result.problems.append("FOLDED's kernel has shape \(foldedKernel.shape), ORIGINAL's layer computes \(graph.shape)")
            return result
        }
        result.kernel = ErrorStats.compare(expected: expected.kernel, actual: f, shape: graph.shape, tolerance: tol)
        if let layer = expected.layer {
            result.graphKernel = ErrorStats.compare(expected: graph.kernel, actual: f, shape: graph.shape, tolerance: tol)
            result.probe = NaiveFold.probe(layer, kernel: f, scale: rowScale, patches: patches, seed: seed, tolerance: tol)
        } else {
            result.probe = NaiveFold.probe(reference: expected.kernel, kernel: f, shape: graph.shape, patches: patches, seed: seed, tolerance: tol)
        }
        checkBias(of: r, expected: graph.bias, tolerance: tol, into: &result)
        return result
    }

    /// ORIGINAL's kernel (and bias) as its graph computes them.
    struct GraphKernel {
        var kernel: [Double]
        var shape: [Int]
        var bias: [Double]?
    }

    /// The kernel ORIGINAL's graph computes for the replacement (a pair's composed, or the
    /// head conv's weight), evaluated by the reference executor; nil, with a problem, when
    /// it cannot be.
    private func graphKernel(of r: ReplacedConv, into result: inout LayerResult) -> GraphKernel? {
        let head = original.nodes[r.chain[0]]
        if r.isPair {
            let pw = original.nodes[r.chain[1]]
            switch (constant(head.inputs[safe: 1] ?? ""), constant(pw.inputs[safe: 1] ?? "")) {
            case (.success(let wd), .success(let wp)):
                guard let pair = Self.pairKernel(depthwise: wd, depthwiseGroups: Self.group(head), pointwise: wp, pointwiseGroups: Self.group(pw)) else {
                    result.problems.append("ORIGINAL's \(StructureDiff.label(head)) and \(StructureDiff.label(pw)) are not a depthwise + 1x1 pair (weights \(wd.shape), \(wp.shape))")
                    return nil
                }
                var graph = GraphKernel(kernel: pair.0, shape: pair.1)
                let bd = (head.inputs[safe: 2]).flatMap { $0.isEmpty ? nil : try? constant($0).get().doubles }
                let bp = (pw.inputs[safe: 2]).flatMap { $0.isEmpty ? nil : try? constant($0).get().doubles }
                if bd != nil || bp != nil {
                    graph.bias = Self.pairBias(pointwise: wp, pointwiseGroups: Self.group(pw), depthwiseBias: bd, pointwiseBias: bp)
                }
                result.description = "depthwise + 1x1 Conv pair"
                return graph
            default:
                result.problems.append("ORIGINAL's pair weights are not constants the reference executor can compute")
                return nil
            }
        }
        var graph: GraphKernel
        switch constant(r.originalWeight) {
        case .success(let k):
            graph = GraphKernel(kernel: k.doubles, shape: k.shape)
        case .failure(let error):
            result.problems.append("ORIGINAL's kernel '\(r.originalWeight)' cannot be computed: \(error)")
            return nil
        }
        if let name = head.inputs[safe: 2], !name.isEmpty, r.batchNormPosition != nil {
            switch constant(name) {
            case .success(let b): graph.bias = b.doubles
            case .failure(let error): result.problems.append("ORIGINAL's bias '\(name)' cannot be computed: \(error)")
            }
        }
        return graph
    }

    /// What FOLDED's kernel is held against: the DO-Conv layer detection found for this
    /// kernel (the one whose naive recomputation is closest to ORIGINAL's graph kernel) with
    /// that recomputation, else the graph kernel itself. A float64 kernel is always held
    /// against the graph kernel, computed from the float64 initializers (the detected
    /// layer holds D and W rounded to float32, so it only names the layer).
    private func reference(for r: ReplacedConv, graph: GraphKernel, foldedNode fNode: Node, foldedType: DataType, tolerance tol: Double,
                           into result: inout LayerResult) -> (kernel: [Double], layer: DOConvLayer?) {
        let wantsForm: DOConvForm = r.isPair ? .featureComposition : .kernelComposition
        // Layers with equal weights (two branches of an If reading one D and W) tie: the one
        // named after this Conv or its kernel value wins.
        func named(_ k: Int) -> Bool {
            let name = detected[k].name
            return name == fNode.name || name == r.originalWeight || name.hasSuffix("/" + r.originalWeight)
        }
        var best: (index: Int, error: Double, kernel: [Double])?
        // The layer named after this Conv is tried first; when it reproduces the kernel the
        // others (same shape, other weights) need not be recomputed.
        let candidates = detected.indices.filter { detected[$0].form == wantsForm }.sorted { named($0) && !named($1) }
        for k in candidates {
            let g = detected[k].layer.geometry
            guard [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth] == graph.shape else { continue }
            let naive = NaiveFold.kernel(detected[k].layer)
            let error = ErrorStats.compare(expected: graph.kernel, actual: naive, shape: graph.shape, tolerance: 1).worstRelative
            let current = best?.error ?? .infinity
            if error < current || (error == current && named(k) && !(best.map { named($0.index) } ?? false)) { best = (k, error, naive) }
            if named(k), error <= min(1e-6, tol) { break }
        }
        if let best, best.error <= max(1e-4, tol) {
            let d = detected[best.index]
            let g = d.layer.geometry
            result.name = d.name
            result.description = "\(g.kind.rawValue) \(g.kernelHeight)x\(g.kernelWidth), groups \(g.groups), Dmul \(g.depthMultiplier) (\(d.layer.layout.rawValue) \(d.form.rawValue))"
            return foldedType == .double ? (graph.kernel, nil) : (best.kernel, d.layer)
        }
        if r.chain.count == 1 || r.batchNormPosition == 1 {
            if let best {
                result.problems.append("the detected DO-Conv layer '\(detected[best.index].name)' does not reproduce ORIGINAL's kernel (relative error \(Report.format(best.error)))")
            }
            if !r.isPair {
                let producer = original.producers[r.originalWeight].map { original.nodes[$0].opType }
                result.description = producer.map { "Conv with a kernel computed by \($0) (no DO-Conv layer detected)" } ?? "Conv with a replaced initializer kernel"
            }
        }
        return (graph.kernel, nil)
    }

    /// Scales each output row of the graph kernel and of `reference` by the
    /// BatchNormalization's gamma / sqrt(var + eps) and shifts the graph bias; returns the
    /// scales, or nil (with a problem) when its parameters are not constants of the right size.
    private func fuseBatchNorm(_ bn: Node, into graph: inout GraphKernel, reference: inout [Double], result: inout LayerResult) -> [Double]? {
        let values = bn.inputs.dropFirst().map { constant($0) }.compactMap { try? $0.get().doubles }
        let cout = graph.shape.first ?? 0
        guard values.count == 4, values.allSatisfy({ $0.count == cout }) else {
            result.problems.append("ORIGINAL's \(StructureDiff.label(bn)) parameters are not \(cout)-channel constants")
            return nil
        }
        let epsilon: Double
        switch bn[attribute: "epsilon"] {
        case .float(let e)?: epsilon = e
        default: epsilon = Double(Float(1e-5))
        }
        let (gamma, beta, mean, variance) = (values[0], values[1], values[2], values[3])
        let k = (0..<cout).map { gamma[$0] / (variance[$0] + epsilon).squareRoot() }
        let row = graph.kernel.count / max(cout, 1)
        for o in 0..<cout where row > 0 {
            for j in (o * row)..<min(graph.kernel.count, (o + 1) * row) { graph.kernel[j] *= k[o] }
            for j in (o * row)..<min(reference.count, (o + 1) * row) { reference[j] *= k[o] }
        }
        let b = graph.bias ?? [Double](repeating: 0, count: cout)
        graph.bias = (0..<cout).map { (b[$0] - mean[$0]) * k[$0] + beta[$0] }
        result.description += " + \(StructureDiff.label(bn)) fused"
        return k
    }

    /// The bias, where the replacement made a new one: against ORIGINAL's (fused) bias, or zero.
    private func checkBias(of r: ReplacedConv, expected: [Double]?, tolerance tol: Double, into result: inout LayerResult) {
        guard r.chain.count > 1 else { return }
        let newBias = r.foldedBias.isEmpty || original.initializers[r.foldedBias] != nil ? nil : folded.initializers[r.foldedBias]
        switch (expected, newBias) {
        case (let expected?, let actual?):
            if actual.count == expected.count {
                result.bias = ErrorStats.compare(expected: expected, actual: actual.doubles, shape: actual.shape, tolerance: tol)
            } else {
                result.problems.append("FOLDED's bias has \(actual.count) values, expected \(expected.count)")
            }
        case (let expected?, nil):
            if expected.contains(where: { $0 != 0 }) { result.problems.append("FOLDED's Conv has no bias where ORIGINAL adds one") }
        case (nil, let actual?):
            result.bias = ErrorStats.compare(expected: [Double](repeating: 0, count: actual.count), actual: actual.doubles, shape: actual.shape, tolerance: tol)
        case (nil, nil):
            break
        }
    }

    static func group(_ node: Node) -> Int {
        if case .int(let g)? = node[attribute: "group"] { return Int(g) }
        return 1
    }

    /// The kernel of a depthwise conv (Cin * Dmul, 1, M, N; groups Cin) followed by a 1x1 conv
    /// (Cout, Cin * Dmul / G, 1, 1; groups G), as one conv (Cout, Cin / G, M, N), float64.
    static func pairKernel(depthwise wd: TensorValue, depthwiseGroups cin: Int, pointwise wp: TensorValue, pointwiseGroups groups: Int) -> ([Double], [Int])? {
        guard wd.rank == 4, wp.rank == 4, wd.shape[1] == 1, cin > 0, wd.shape[0] % cin == 0, wp.shape[2] == 1, wp.shape[3] == 1,
              groups > 0, cin % groups == 0, wp.shape[0] % groups == 0 else { return nil }
        let dmul = wd.shape[0] / cin
        let (m, n, cout) = (wd.shape[2], wd.shape[3], wp.shape[0])
        let (inPerGroup, outPerGroup) = (cin / groups, cout / groups)
        guard wp.shape[1] == inPerGroup * dmul else { return nil }
        let (d, w) = (wd.doubles, wp.doubles)
        let mn = m * n
        var kernel = [Double](repeating: 0, count: cout * inPerGroup * mn)
        for o in 0..<cout {
            for c in 0..<inPerGroup {
                let channel = (o / outPerGroup) * inPerGroup + c
                for s in 0..<dmul {
                    let weight = w[o * inPerGroup * dmul + c * dmul + s]
                    for k in 0..<mn { kernel[(o * inPerGroup + c) * mn + k] += weight * d[(channel * dmul + s) * mn + k] }
                }
            }
        }
        return (kernel, [cout, inPerGroup, m, n])
    }

    /// The pair's bias: bp[o] + sum over the group's depthwise features j of Wp[o, j] * bd[j].
    static func pairBias(pointwise wp: TensorValue, pointwiseGroups groups: Int, depthwiseBias bd: [Double]?, pointwiseBias bp: [Double]?) -> [Double] {
        let cout = wp.shape[0]
        let features = wp.shape[1]
        let w = wp.doubles
        return (0..<cout).map { o in
            var sum = bp?[o] ?? 0
            if let bd {
                let first = (o / (cout / groups)) * features
                for j in 0..<features where first + j < bd.count { sum += w[o * features + j] * bd[first + j] }
            }
            return sum
        }
    }

}
