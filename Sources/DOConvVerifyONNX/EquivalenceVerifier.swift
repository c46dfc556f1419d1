import DOConvCore
import DOConvGraph
import DOConvONNX
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import DOConvVerify

/// Checks that FOLDED computes what ORIGINAL computes, independently of the fold's code:
/// structure, each folded layer in float64, and the whole model end to end. The format
/// adapters (DOConvFormats) choose the check that fits the files.
public enum EquivalenceVerifier {
    /// Loads an ONNX model as IR, with bad files as one-line errors.
    public static func loadGraph(_ path: String) throws(VerifyError) -> Graph {
        do { return try ONNXGraphImport.load(path: path) } catch { throw VerifyError("\(error)") }
    }

    /// `layer` with D and W in arrays of its own rather than borrowed from a mapped file.
    static func owning(_ detected: DetectedLayer) throws -> DetectedLayer {
        var copy = detected
        let layer = detected.layer
        copy.layer = try DOConvLayer(layout: layer.layout, geometry: layer.geometry, d: layer.d.map { Array($0) }, w: Array(layer.w))
        return copy
    }

    /// The graph with its local-function calls expanded into their bodies, so that it holds
    /// only operators: what the structure check compares and the executor runs.
    static func expandingCalls(_ graph: Graph, path: String) throws(VerifyError) -> (graph: Graph, calls: Int) {
        do { return try FunctionInlining.inline(graph) } catch { throw VerifyError("\(path): \(error)") }
    }

    /// ONNX pairs: structure, each replaced Conv, and both graphs run end to end.
    public static func verifyONNX(original originalPath: String, folded foldedPath: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        var report = VerificationReport(original: originalPath, folded: foldedPath, format: "ONNX")
        var original: Graph
        let folded: Graph
        let originalCalls: Int
        let foldedCalls: Int
        var detected: [DetectedLayer] = []
        do {
            // ORIGINAL's message tree (and its file's pages) lives only for its import and the
            // DO-Conv detection, before FOLDED's is read.
            do {
                let originalModel = try ONNXModel.load(path: originalPath)
                (original, originalCalls) = try expandingCalls(try ONNXGraphImport.graph(of: originalModel), path: originalPath)
                // Owned copies of D and W: the layers must not keep the file mapped.
                do { detected = try ONNXFolder.detect(originalModel).layers.map(Self.owning) } catch {
                    report.notes.append("DO-Conv detection failed on ORIGINAL (\(error)); layers are checked against ORIGINAL's own kernel computation")
                }
            }
            (folded, foldedCalls) = try expandingCalls(try ONNXGraphImport.load(path: foldedPath, sharing: original.initializers), path: foldedPath)
        } catch let error as VerifyError {
            throw error
        } catch {
            throw VerifyError("\(error)")
        }
        if originalCalls + foldedCalls > 0 {
            // A call the fold replaced by one Conv then compares with its body's own Conv.
            report.notes.append("local function calls expanded into their bodies before comparing: \(originalCalls) in ORIGINAL, \(foldedCalls) in FOLDED")
        }
        if let tolerance = options.tolerance, !(tolerance >= 0) { throw VerifyError("the tolerance must be a non-negative number") }
        // Validate inputs up front: a symbolic dim without a size is a usage error.
        let feeds = options.inputs > 0 ? try EndToEnd.feeds(for: original, dims: options.dims, count: options.inputs, seed: options.seed) : []

        // 1. Structure, with the nodes of If/Loop/Scan bodies compared in line.
        var (flatOriginal, subgraphs) = SubgraphFlattening.flatten(original)
        let flatFolded = SubgraphFlattening.flatten(folded).graph
        if subgraphs > 0 {
            report.notes.append("\(subgraphs) control-flow subgraph\(subgraphs == 1 ? "" : "s") of ORIGINAL compared node by node in line with the main graph")
        }
        let comparison = StructureDiff(original: flatOriginal, folded: flatFolded).compare()
        report.structure = comparison.differences
        report.notes += comparison.notes
        let removed = flatOriginal.nodes.count - flatFolded.nodes.count
        report.structureSummary = "\(flatFolded.nodes.count) nodes against ORIGINAL's \(flatOriginal.nodes.count), \(comparison.replaced.count) Conv\(comparison.replaced.count == 1 ? "" : "s") with a folded kernel, \(removed) node\(removed == 1 ? "" : "s") of kernel computation gone"

        // 2. Each replaced Conv.
        // ORIGINAL's constant work (kernels composed from D and W) is done once, for the layer
        // checks and every end-to-end input alike.
        let runOriginal = ReferenceExecutor(graph: original).precomputingConstants()
        let evaluated = subgraphs == 0 ? runOriginal : ReferenceExecutor(graph: flatOriginal).precomputingConstants()
        let layerFeeds = feeds.first ?? (try? EndToEnd.feeds(for: original, dims: options.dims, count: 1, seed: options.seed).first) ?? [:]
        let unsupported = ReferenceExecutor(graph: original).unsupportedNodes.map { "ORIGINAL's \($0)" }
            + ReferenceExecutor(graph: folded).unsupportedNodes.map { "FOLDED's \($0)" }
        let shapes = (try? EndToEnd.shapes(of: original, dims: options.dims)) ?? []
        // D and W are not read from here on (the checks read precomputed kernels, the runs
        // the precomputed graph): their float64 copies go.
        original.initializers = [:]
        flatOriginal.initializers = evaluated.initializers
        var check = LayerCheck(original: flatOriginal, folded: flatFolded, detected: detected, tolerance: options.tolerance,
                               patches: options.probePatches, seed: options.seed)
        check.feeds = layerFeeds
        check.evaluator = ReferenceExecutor(graph: evaluated)
        report.layers = check.check(comparison.replaced)
        if !comparison.droppedIdentities.isEmpty {
            report.structure += DroppedIdentityCheck(original: evaluated, feeds: layerFeeds).problems(comparison.droppedIdentities)
            let kinds = Dictionary(grouping: comparison.droppedIdentities, by: \.opType).sorted { $0.key < $1.key }.map { "\($0.value.count) \($0.key)" }
            report.notes.append("\(comparison.droppedIdentities.count) identity operation\(comparison.droppedIdentities.count == 1 ? "" : "s") dropped by the fold (\(kinds.joined(separator: ", "))): each result checked equal to its operand on the seeded input")
        }

        // 3. End to end.
        if options.inputs <= 0 {
            report.endToEndSkipped = "disabled (--inputs 0)"
        } else if !unsupported.isEmpty {
            let listed = unsupported.prefix(5).joined(separator: "; ") + (unsupported.count > 5 ? "; and \(unsupported.count - 5) more" : "")
            report.endToEndSkipped = "the reference executor cannot run \(listed); the verdict rests on the structure and per-layer checks"
        } else {
            report.inputsDescription = "\(feeds.count) seeded random input\(feeds.count == 1 ? "" : "s") (seed \(options.seed)): "
                + shapes.map { "'\($0.0.name)' \($0.0.type.map { "\($0)" } ?? "float32") \($0.1)" }.joined(separator: ", ")
            let (outputs, skipped, problems) = EndToEnd.compare(original: runOriginal, folded: ReferenceExecutor(graph: folded).precomputingConstants(),
                                                                feeds: feeds, tolerance: options.tolerance)
            report.outputs = outputs
            report.endToEndProblems = problems
            if let skipped { report.endToEndSkipped = skipped + "; the verdict rests on the structure and per-layer checks" }
        }
        return report
    }

    /// Runs one ONNX model with the reference executor on given feeds (the oracle tests'
    /// hook); inputs that are not given are made as in the end-to-end check.
    public static func run(model path: String, feeds given: [String: TensorValue], options: VerifyOptions = VerifyOptions()) throws(VerifyError) -> [String: TensorValue] {
        let graph = try expandingCalls(try loadGraph(path), path: path).graph
        let unsupported = ReferenceExecutor(graph: graph).unsupportedOps
        guard unsupported.isEmpty else { throw VerifyError("\(path): the reference executor does not implement \(unsupported.joined(separator: ", "))") }
        var feeds = given
        let missing = graph.feedInputs.filter { feeds[$0.name] == nil }
        if !missing.isEmpty {
            let made = try EndToEnd.feeds(for: Graph(inputs: missing), dims: options.dims, count: 1, seed: options.seed)
            feeds.merge(made.first ?? [:]) { a, _ in a }
        }
        do { return try ReferenceExecutor(graph: graph).run(feeds) } catch { throw VerifyError("\(path): \(error)") }
    }
}
