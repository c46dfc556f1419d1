import DOConvCore
import DOConvGraph
import DOConvKeras
import DOConvVerify

/// Keras HDF5 pairs (ORIGINAL with DOConv2D layers, FOLDED with plain Conv2D kernels):
/// structure (the same datasets, except each D removed and each kernel reshaped to
/// (M, N, Cin/g, Cout); every other dataset equal by value) and each folded kernel in float64.
/// A BatchNormalization fused into the conv before it (`--fuse-bn`) is checked with that
/// conv (KerasBatchNormCheck.swift). When a model config is at hand (stored in the file or
/// archive, or given with --config), both models also run end to end in float64
/// (KerasGraphBuilder.swift), on the same seeded random inputs.
public enum KerasEquivalence {
    /// One dataset: its path, a path that survives the fold's renaming of `.weights.h5`
    /// layer groups, its shape, and its values and element type when it is a float dataset.
    /// A weight as verification reads it: where it is, its shape, its values in float64.
    package struct Entry {
        package var path: String
        package var key: String
        package var shape: [Int]
        package var values: [Double]?
        package var elementType: ElementType?

        package init(path: String, key: String, shape: [Int], values: [Double]?, elementType: ElementType?) {
            (self.path, self.key, self.shape, self.values, self.elementType) = (path, key, shape, values, elementType)
        }
    }

    /// A pair of `.keras` archives: the weights inside, checked as a pair; the archive's own
    /// config names the layers.
    public static func verifyArchives(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        let a: KerasArchiveContents
        let b: KerasArchiveContents
        do {
            a = try KerasArchiveContents(path: original)
            b = try KerasArchiveContents(path: folded)
        } catch {
            throw VerifyError("\(error)")
        }
        defer { a.close(); b.close() }
        var archiveOptions = options
        archiveOptions.kerasConfigJSON = options.kerasConfigJSON ?? a.configJSON
        var report = try verify(original: a.weightsPath, folded: b.weightsPath, options: archiveOptions, foldedConfigJSON: b.configJSON)
        report.original = original
        report.folded = folded
        report.format = "Keras archive"
        report.structure = report.structure.map {
            $0.replacing(a.weightsPath, with: KerasArchiveContents.weightsEntry).replacing(b.weightsPath, with: KerasArchiveContents.weightsEntry)
        }
        report.notes.append("checked the archives' \(KerasArchiveContents.weightsEntry); \(KerasArchiveContents.configEntry) is not compared")
        return report
    }

    /// A pair of Keras HDF5 files.
    public static func verify(original originalPath: String, folded foldedPath: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try verify(original: originalPath, folded: foldedPath, options: options, foldedConfigJSON: nil)
    }

    /// A pair of Keras HDF5 files; `foldedConfigJSON` is FOLDED's own config when it is kept
    /// beside the weights (a `.keras` archive's `config.json`).
    static func verify(original originalPath: String, folded foldedPath: String, options: VerifyOptions,
                       foldedConfigJSON: String?) throws(VerifyError) -> VerificationReport {
        let original: OriginalWeights
        do { original = try OriginalWeights(file: originalPath) } catch { throw VerifyError("\(error)") }
        return try verify(original: original, folded: foldedPath, options: options, foldedConfigJSON: foldedConfigJSON)
    }

    /// ORIGINAL's weights, however read, against a Keras HDF5 file FOLDED.
    package static func verify(original: OriginalWeights, folded foldedPath: String, options: VerifyOptions,
                               foldedConfigJSON: String? = nil) throws(VerifyError) -> VerificationReport {
        var check = try PairCheck(original: original, folded: foldedPath, options: options)
        try check.readLayers()
        check.findFusions()
        check.checkSeparablePairs()
        try check.checkStructure()
        check.checkKernels()
        // End to end: both models, each from its own config when it has one.
        let originalConfig = original.storedConfig.map { (json: $0, source: original.path) } ?? options.kerasConfigJSON.map { (json: $0, source: "--config") }
        try runEndToEnd(&check.report, original: KerasModelSource(path: original.path, format: original.format, entries: original.entries, config: originalConfig),
                        folded: foldedPath, foldedEntries: check.folded, foldedConfigJSON: foldedConfigJSON, options: options)
        return check.report
    }

    /// A SeparableConv2D layer group of ORIGINAL (depthwise (M, N, Cin, Dmul) and pointwise
    /// (1, 1, Cin * Dmul, Cout) kernels) that FOLDED holds as one Conv2D kernel (M, N, Cin, Cout).
    struct SeparablePair {
        var group: String
        var depthwise: Entry
        var pointwise: Entry
        var kernel: Entry
        var originalKeys: Set<String>
        var foldedKeys: Set<String>
        /// ORIGINAL's other datasets of the group (the bias) and FOLDED's beside the kernel.
        var originalRest: [Entry]
        var foldedRest: [Entry]

        /// The layer's name: the group's last component ("@name" for `.weights.h5`).
        var layerName: String {
            group.split(separator: "/").last(where: { $0 != "vars" }).map { $0.hasPrefix("@") ? String($0.dropFirst()) : String($0) } ?? group
        }

        /// Everything else of the group (the bias) must be there unchanged, wherever the
        /// renumbering put it; the bias of a fused BatchNormalization (ORIGINAL's and FOLDED's
        /// keys) is left out, it is checked with the fusion.
        func differences(leavingOut originalBias: String?, folded foldedBias: String?) -> [String] {
            var differences: [String] = []
            var rest = foldedRest.filter { $0.key != foldedBias }
            for entry in originalRest where entry.key != originalBias {
                if let k = rest.firstIndex(where: { $0.shape == entry.shape && $0.values == entry.values }) {
                    rest.remove(at: k)
                } else {
                    differences.append("dataset '\(entry.path)' of SeparableConv2D group '\(group)' is missing or changed in FOLDED")
                }
            }
            for entry in rest { differences.append("dataset '\(entry.path)' of FOLDED's group '\(group)' does not exist in ORIGINAL") }
            return differences
        }
    }

    static func separablePairs(original: [Entry], folded: [Entry]) -> [SeparablePair] {
        let originalGroups = Dictionary(grouping: original, by: { parentPath($0.key) })
        let foldedGroups = Dictionary(grouping: folded, by: { parentPath($0.key) })
        var pairs: [SeparablePair] = []
        for (group, entries) in originalGroups.sorted(by: { $0.key < $1.key }) where !isOptimizer(group) {
            guard let after = foldedGroups[group] else { continue }
            let rank4 = entries.filter { $0.shape.count == 4 && $0.values != nil }
            var found: (Entry, Entry)?
            for dw in rank4 {
                for pw in rank4 where pw.key != dw.key && pw.shape[0] == 1 && pw.shape[1] == 1 && pw.shape[2] == dw.shape[2] * dw.shape[3] {
                    let named = dw.key.contains("depthwise") && pw.key.contains("pointwise")
                    if found == nil || named { found = (dw, pw) }
                }
            }
            guard let (dw, pw) = found else { continue }
            let hwio = [dw.shape[0], dw.shape[1], dw.shape[2], pw.shape[3]]
            let unchanged = after.contains { $0.key == dw.key && $0.shape == dw.shape } && after.contains { $0.key == pw.key && $0.shape == pw.shape }
            guard !unchanged else { continue }
            // The folded kernel: prefer a dataset named like a kernel, then the depthwise slot.
            let candidates = after.filter { $0.shape == hwio && $0.values != nil }
            guard let kernel = candidates.first(where: { $0.key.hasSuffix("kernel:0") || $0.key.hasSuffix("kernel") }) ?? candidates.first(where: { $0.key == dw.key }) ?? candidates.first else {
                continue
            }
            pairs.append(SeparablePair(group: group, depthwise: dw, pointwise: pw, kernel: kernel, originalKeys: Set(entries.map(\.key)),
                                       foldedKeys: Set(after.map(\.key)),
                                       originalRest: entries.filter { $0.key != dw.key && $0.key != pw.key },
                                       foldedRest: after.filter { $0.key != kernel.key }))
        }
        return pairs
    }

    /// The pair's kernel K[m, n, c, o] = sum_s dw[m, n, c, s] * pw[0, 0, c * Dmul + s, o] in
    /// float64, against FOLDED's; and patches through the layer both ways.
    static func checkSeparable(_ pair: SeparablePair, tolerance: Double?, options: VerifyOptions) -> LayerResult {
        let (h, w, cin, dmul) = (pair.depthwise.shape[0], pair.depthwise.shape[1], pair.depthwise.shape[2], pair.depthwise.shape[3])
        let cout = pair.pointwise.shape[3]
        let mn = h * w
        var result = LayerResult(name: pair.layerName, conv: pair.kernel.path, description: separableDescription(pair))
        let dw = pair.depthwise.values ?? []
        let pw = pair.pointwise.values ?? []
        // OIHW (Cout, Cin, M, N), both.
        let expected = separableComposition(pair)
        let actual = oihw(pair.kernel.values ?? [], hwio: pair.kernel.shape)
        // Half-precision storage rounds the folded kernel: the looser of the types involved.
        let types = [pair.depthwise.elementType, pair.pointwise.elementType, pair.kernel.elementType].compactMap { $0 }
        let tol = tolerance ?? types.map(\.defaultTolerance).max() ?? ElementType.float32.defaultTolerance
        result.kernel = ErrorStats.compare(expected: expected, actual: actual, shape: [cout, cin, h, w], tolerance: tol)
        // Probe: depthwise features, then the pointwise combination, against the folded kernel.
        var random = SeededGenerator(seed: options.seed)
        var probe = ErrorStats(tolerance: tol)
        for p in 0..<max(1, options.probePatches) {
            let patch = (0..<(cin * mn)).map { _ in Double.random(in: -1...1, using: &random) }
            var features = [Double](repeating: 0, count: cin * dmul)
            for c in 0..<cin { for s in 0..<dmul { for m in 0..<mn { features[c * dmul + s] += dw[(m * cin + c) * dmul + s] * patch[c * mn + m] } } }
            var viaFeatures = [Double](repeating: 0, count: cout)
            var viaKernel = [Double](repeating: 0, count: cout)
            for o in 0..<cout {
                for j in 0..<(cin * dmul) { viaFeatures[o] += pw[j * cout + o] * features[j] }
                for c in 0..<cin { for m in 0..<mn { viaKernel[o] += actual[(o * cin + c) * mn + m] * patch[c * mn + m] } }
            }
            probe.add(expected: viaFeatures, actual: viaKernel, shape: [cout], context: "patch \(p + 1)")
        }
        result.probe = probe
        return result
    }

    /// "SeparableConv2D 3x3, depth_multiplier 9 (depthwise + 1x1 feature composition)".
    static func separableDescription(_ pair: SeparablePair) -> String {
        "SeparableConv2D \(pair.depthwise.shape[0])x\(pair.depthwise.shape[1]), depth_multiplier \(pair.depthwise.shape[3]) (depthwise + 1x1 feature composition)"
    }

    /// The pair as one kernel in OIHW (Cout, Cin, M, N), float64:
    /// K[o, c, m] = sum_s dw[m, c, s] * pw[c * Dmul + s, o].
    static func separableComposition(_ pair: SeparablePair) -> [Double] {
        let (h, w, cin, dmul) = (pair.depthwise.shape[0], pair.depthwise.shape[1], pair.depthwise.shape[2], pair.depthwise.shape[3])
        let cout = pair.pointwise.shape[3]
        let mn = h * w
        let dw = pair.depthwise.values ?? []
        let pw = pair.pointwise.values ?? []
        guard dw.count == mn * cin * dmul, pw.count == cin * dmul * cout else { return [] }
        var kernel = [Double](repeating: 0, count: cout * cin * mn)
        for m in 0..<mn {
            for c in 0..<cin {
                for o in 0..<cout {
                    var sum = 0.0
                    for s in 0..<dmul { sum += dw[(m * cin + c) * dmul + s] * pw[(c * dmul + s) * cout + o] }
                    kernel[(o * cin + c) * mn + m] = sum
                }
            }
        }
        return kernel
    }

    /// Whether a Keras HDF5 file holds DOConv2D layers: its stored config names one, or a
    /// layer holds a 3-D `D`.
    static func holdsDOConvLayers(_ path: String) -> Bool {
        guard let file = try? WeightFile(path: path) else { return false }
        if let json = file.storedConfig, let config = try? KerasModelConfig(json: json, source: path), config.layers.contains(where: \.isDOConv) {
            return true
        }
        let entries = (try? entries(of: path, values: false)) ?? []
        return entries.contains { !isOptimizer($0.path) && $0.shape.count == 3 && ["D", "D:0"].contains($0.key.split(separator: "/").last.map(String.init) ?? "") }
    }

    /// Each Conv2D of `config` whose kernel dataset in the file at `path` is 3-D (an expanded
    /// layer's W, (Dmul, Cin/g, Cout)), with that Dmul.
    static func depthMultipliers(of path: String, conv2Ds config: KerasModelConfig) -> [String: Int] {
        let entries = (try? entries(of: path, values: false)) ?? []
        var found: [String: Int] = [:]
        for layer in config.layers where layer.className == "Conv2D" {
            let kernel = entries.first { entry in
                let parts = entry.key.split(separator: "/").map(String.init)
                return parts.contains(layer.name) && ["kernel", "kernel:0"].contains(parts.last ?? "") && entry.shape.count == 3
            }
            if let kernel { found[layer.name] = kernel.shape[0] }
        }
        return found
    }

    static func isOptimizer(_ path: String) -> Bool {
        path.hasPrefix("/optimizer_weights") || path.hasPrefix("/optimizer/") || path == "/optimizer"
    }

    static func parentPath(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    /// Where a legacy file's `layer_names` / `weight_names` attributes, which Keras loads
    /// it by, disagree with the datasets it holds: a listed layer group or weight that is not
    /// there, or a dataset of a listed layer that no weight name lists.
    static func weightNameProblems(path: String, entries: [Entry], side: String) throws -> [String] {
        let root = try HDF5File.openReadOnly(path: path).root()
        let container: HDF5Group
        if root.hasAttribute("model_config"), root.hasChild("model_weights") {
            container = try root.group("model_weights")
        } else if root.hasAttribute("layer_names") {
            container = root
        } else {
            return [] // .weights.h5 lists no names
        }
        var problems: [String] = []
        for layer in try container.strings("layer_names").values {
            guard container.hasChild(layer), try container.kind(of: layer) == .group else {
                problems.append("layer_names of \(side) lists '\(layer)', which has no group")
                continue
            }
            let group = try container.group(layer)
            let listed = group.hasAttribute("weight_names") ? try group.strings("weight_names").values : []
            var listedPaths = Set<String>()
            for name in listed {
                guard let dataset = try? group.dataset(name) else {
                    problems.append("weight_names of \(side)'s layer '\(layer)' lists '\(name)', which is not a dataset")
                    continue
                }
                listedPaths.insert(dataset.path)
            }
            for entry in entries where entry.path.hasPrefix(group.path + "/") && !listedPaths.contains(entry.path) {
                problems.append("dataset '\(entry.path)' of \(side) is not in its layer's weight_names, so Keras does not load it")
            }
        }
        return problems
    }

    /// Every dataset of the file, depth first; with `values` false their shapes only (for
    /// questions about the layout, which need not read the weights).
    static func entries(of path: String, values readValues: Bool = true) throws -> [Entry] {
        let file = try HDF5File.openReadOnly(path: path)
        var result: [Entry] = []
        func walk(_ group: HDF5Group, key: String) throws {
            for name in try group.childNames() {
                switch try group.kind(of: name) {
                case .group:
                    let child = try group.group(name)
                    // Keras 3 .weights.h5 layer groups are named by class and position, which
                    // the fold renumbers: key them by the layer name recorded in vars/@name.
                    var childKey = (key == "/" ? "/" : key + "/") + name
                    if group.path == "/layers", child.hasChild("vars"), let recorded = try? child.group("vars").string("name") {
                        childKey = (key == "/" ? "/" : key + "/") + "@" + recorded
                    }
                    try walk(child, key: childKey)
                case .dataset:
                    let dataset = try group.dataset(name)
                    let type = try dataset.elementType()
                    let values = type != nil && readValues ? try dataset.doubles() : nil
                    result.append(Entry(path: dataset.path, key: (key == "/" ? "/" : key + "/") + name, shape: try dataset.shape(), values: values, elementType: type))
                case .other:
                    continue
                }
            }
        }
        try walk(try file.root(), key: "/")
        return result
    }
}

/// One side of a Keras pair as the end-to-end step reads it: its datasets and its config.
struct KerasModelSource {
    var path: String
    var format: KerasFileFormat?
    var entries: [KerasEquivalence.Entry]
    var config: (json: String, source: String)?
}

extension KerasEquivalence {
    /// Builds ORIGINAL's and FOLDED's graphs and compares every model output on seeded random
    /// inputs, as the ONNX path does. ORIGINAL that cannot be built (no config, a layer the
    /// converter does not implement) skips the step; FOLDED that cannot be built fails it.
    static func runEndToEnd(_ report: inout VerificationReport, original: KerasModelSource, folded foldedPath: String,
                            foldedEntries: [Entry], foldedConfigJSON: String?, options: VerifyOptions) throws(VerifyError) {
        let rest = "; the verdict rests on the structure and per-layer checks"
        if let tolerance = options.tolerance, !(tolerance >= 0) { throw VerifyError("the tolerance must be a non-negative number") }
        guard options.inputs > 0 else { report.endToEndSkipped = "disabled (--inputs 0)"; return }
        guard let config = original.config, let format = original.format else {
            report.endToEndSkipped = "ORIGINAL holds no model config (pass the model's JSON with --config)" + rest
            return
        }
        let originalGraph: Graph
        do {
            originalGraph = try KerasGraphBuilder(configJSON: config.json, source: config.source, entries: original.entries, format: format,
                                                  adaptToWeights: false).build()
        } catch {
            report.endToEndSkipped = "the Keras model cannot be run: \(error)" + rest
            return
        }
        // FOLDED: its own config (full-model file, archive), else ORIGINAL's, read against
        // FOLDED's weights (a folded layer holds a plain kernel, a fused BatchNormalization none).
        let foldedFormat: KerasFileFormat?
        let foldedStored: String?
        do {
            let foldedFile = try WeightFile(path: foldedPath)
            (foldedFormat, foldedStored) = (foldedFile.format, foldedFile.storedConfig)
        } catch {
            throw VerifyError("\(error)")
        }
        let foldedConfig = foldedStored.map { (json: $0, source: foldedPath) } ?? foldedConfigJSON.map { (json: $0, source: "FOLDED's config") }
        let feeds = try EndToEnd.feeds(for: originalGraph, dims: options.dims, count: options.inputs, seed: options.seed)
        let shapes = (try? EndToEnd.shapes(of: originalGraph, dims: options.dims)) ?? []
        report.inputsDescription = "\(feeds.count) seeded random input\(feeds.count == 1 ? "" : "s") (seed \(options.seed)): "
            + shapes.map { "'\($0.0.name)' \($0.0.type.map { "\($0)" } ?? "float32") \($0.1)" }.joined(separator: ", ")
        if foldedConfig == nil { report.notes.append("FOLDED holds no config: its weights run in ORIGINAL's model") }
        let foldedGraph: Graph
        do {
            guard let foldedFormat else { throw KerasGraphError.invalid("FOLDED is none of the Keras weight layouts") }
            var builder = try KerasGraphBuilder(configJSON: (foldedConfig ?? config).json, source: (foldedConfig ?? config).source,
                                                entries: foldedEntries, format: foldedFormat, adaptToWeights: foldedConfig == nil)
            builder.outputNames = originalGraph.outputs.map(\.name)
            foldedGraph = try builder.build()
        } catch {
            report.endToEndProblems.append("FOLDED cannot be run as a Keras model: \(error)")
            return
        }
        let unsupported = ReferenceExecutor(graph: originalGraph).unsupportedNodes.map { "ORIGINAL's \($0)" }
            + ReferenceExecutor(graph: foldedGraph).unsupportedNodes.map { "FOLDED's \($0)" }
        guard unsupported.isEmpty else {
            report.endToEndSkipped = "the reference executor cannot run \(unsupported.prefix(5).joined(separator: "; "))" + rest
            return
        }
        // The graphs compute in float64 from the stored weights: half-precision storage (the
        // fold rounds its kernels to it) needs that type's tolerance, as the layer checks do.
        let storedTypes = (original.entries + foldedEntries).compactMap(\.elementType)
        let tolerance = options.tolerance ?? storedTypes.map(\.defaultTolerance).max()
        let (outputs, skipped, problems) = EndToEnd.compare(original: ReferenceExecutor(graph: originalGraph).precomputingConstants(),
                                                            folded: ReferenceExecutor(graph: foldedGraph).precomputingConstants(),
                                                            feeds: feeds, tolerance: tolerance)
        report.outputs = outputs
        report.endToEndProblems += problems
        if let skipped { report.endToEndSkipped = skipped + rest }
    }

    /// Runs one Keras model (`.h5`, `.weights.h5` with `configJSON`, or `.keras`) with the
    /// reference executor on given feeds (the oracle tests' hook); inputs that are not given
    /// are made as in the end-to-end check.
    public static func run(model path: String, configJSON: String?, feeds given: [String: TensorValue],
                           options: VerifyOptions = VerifyOptions()) throws(VerifyError) -> [String: TensorValue] {
        var weightsPath = path
        var archiveConfig: String?
        var archive: KerasArchiveContents?
        if path.hasSuffix(".keras") {
            do { archive = try KerasArchiveContents(path: path) } catch { throw VerifyError("\(error)") }
            weightsPath = archive?.weightsPath ?? path
            archiveConfig = archive?.configJSON
        }
        defer { archive?.close() }
        let graph: Graph
        do {
            let file = try WeightFile(path: weightsPath)
            guard let format = file.format else { throw VerifyError("\(path): none of the Keras weight layouts") }
            guard let json = file.storedConfig ?? configJSON ?? archiveConfig else { throw VerifyError("\(path): no model config (pass --config)") }
            graph = try KerasGraphBuilder(configJSON: json, source: path, entries: try entries(of: weightsPath), format: format, adaptToWeights: false).build()
        } catch let error as VerifyError {
            throw error
        } catch {
            throw VerifyError("\(path): \(error)")
        }
        var feeds = given
        let missing = graph.feedInputs.filter { feeds[$0.name] == nil }
        if !missing.isEmpty {
            let made = try EndToEnd.feeds(for: Graph(inputs: missing), dims: options.dims, count: 1, seed: options.seed)
            feeds.merge(made.first ?? [:]) { a, _ in a }
        }
        let executor = ReferenceExecutor(graph: ReferenceExecutor(graph: graph).precomputingConstants())
        do { return try executor.run(feeds) } catch { throw VerifyError("\(path): \(error)") }
    }
}
