import DOConvCore
import DOConvKeras
import DOConvVerify

extension KerasEquivalence {
    /// ORIGINAL's weights as a pair check reads them: every dataset of a Keras file, or
    /// weights read from another container laid out as a Keras file's datasets would be (a
    /// SavedModel's checkpoint as a legacy full model's `model_weights/LAYER/LAYER/W:0`).
    package struct OriginalWeights {
        package var path: String
        package var format: KerasFileFormat?
        /// The model config the container holds (a full model's, a SavedModel's metadata).
        package var storedConfig: String?
        package var entries: [Entry]
        /// Whether `path` is an HDF5 file, whose layer_names and weight_names are checked.
        var isHDF5: Bool

        /// Weights given as entries, read from something that is not an HDF5 file.
        package init(path: String, format: KerasFileFormat, storedConfig: String?, entries: [Entry]) {
            (self.path, self.format, self.storedConfig, self.entries, isHDF5) = (path, format, storedConfig, entries, false)
        }

        /// Every dataset of a Keras HDF5 file.
        init(file path: String) throws {
            let file = try WeightFile(path: path)
            (self.path, format, storedConfig, entries, isHDF5) = (path, file.format, file.storedConfig, try KerasEquivalence.entries(of: path), true)
        }
    }

    /// One Keras pair being checked, in named steps: what both files hold, ORIGINAL's
    /// DOConv2D layers (read by verify-equivalence itself), the datasets each step has
    /// accounted for, and the report the steps fill.
    struct PairCheck {
        let originalWeights: OriginalWeights
        let foldedPath: String
        let options: VerifyOptions
        var originalPath: String { originalWeights.path }
        var original: [Entry] { originalWeights.entries }
        let folded: [Entry]
        /// ORIGINAL's config (stored, else --config), which names the layers as for the fold.
        let config: KerasModelConfig?
        var foldedByKey: [String: Entry]
        var report: VerificationReport

        /// ORIGINAL key of each DOConv2D's W -> the layer; its kernel keeps that key.
        var kernels: [String: KerasOriginalLayer] = [:]
        /// ORIGINAL's D datasets, which FOLDED must not hold.
        var dropped = Set<String>()
        var separable: [SeparablePair] = []
        var fusions: [BatchNormFusion] = []
        /// Datasets a step has checked, which the structure step then leaves alone.
        var handledOriginal = Set<String>()
        var handledFolded = Set<String>()

        init(original: OriginalWeights, folded foldedPath: String, options: VerifyOptions) throws(VerifyError) {
            originalWeights = original
            self.foldedPath = foldedPath
            self.options = options
            report = VerificationReport(original: original.path, folded: foldedPath, format: "Keras HDF5")
            do {
                folded = try entries(of: foldedPath)
                let source = original.storedConfig != nil ? original.path : "--config"
                config = try (original.storedConfig ?? options.kerasConfigJSON).map { try KerasModelConfig(json: $0, source: source) }
            } catch {
                throw VerifyError("\(error)")
            }
            foldedByKey = Dictionary(folded.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        }

        /// Each DOConv2D layer, read from ORIGINAL alone: its W dataset keeps its key and
        /// becomes the kernel, its D goes.
        mutating func readLayers() throws(VerifyError) {
            do {
                for layer in try KerasLayerReading.layers(of: original, format: originalWeights.format, config: config, options: options) {
                    kernels[layer.kernel.key] = layer
                    if let d = layer.d { dropped.insert(d.key) }
                    // A DO-DConv written as a DepthwiseConv2D: its kernel may be named so.
                    let depthwiseKey = DepthwiseForm.renamed(layer.kernel.key)
                    if foldedByKey[layer.kernel.key] == nil, depthwiseKey != layer.kernel.key, let after = foldedByKey[depthwiseKey] {
                        foldedByKey[layer.kernel.key] = after
                        handledFolded.insert(depthwiseKey)
                    }
                }
            } catch let error as VerifyError {
                throw VerifyError("\(originalPath): \(error.message)")
            } catch {
                throw VerifyError("\(error)")
            }
            separable = separablePairs(original: original, folded: folded)
        }

        /// BatchNormalization layers fused into the conv before them (--fuse-bn): only the
        /// config tells which layer feeds which, as for the fold.
        mutating func findFusions() {
            guard let format = originalWeights.format, let config else { return }
            let found = FusionFinder(config: config, format: format, original: original, folded: folded, doKernels: kernels,
                                     separable: separable, dropped: dropped).find()
            fusions = found.fusions
            report.structure += found.structure
            handledOriginal.formUnion(found.handled)
            for fusion in fusions {
                handledOriginal.formUnion(fusion.originalKeys)
                handledFolded.formUnion(fusion.foldedKeys)
            }
        }

        /// SeparableConv2D layers folded into one Conv2D kernel (a depthwise + 1x1 pair).
        mutating func checkSeparablePairs() {
            for pair in separable {
                handledOriginal.formUnion(pair.originalKeys)
                handledFolded.formUnion(pair.foldedKeys)
                let fusion = fusions.first { if case .separable(let fused) = $0.target { return fused.group == pair.group } else { return false } }
                // A fused BatchNormalization changes (or creates) the pair's bias: checked with it.
                report.structure += pair.differences(leavingOut: fusion?.originalBias?.key, folded: fusion?.foldedBias?.key)
                if let fusion {
                    report.layers.append(checkFusion(fusion, reference: separableReference(pair), options: options))
                } else {
                    report.layers.append(checkSeparable(pair, tolerance: options.tolerance, options: options))
                }
            }
        }

        /// Every dataset no other step accounts for: in FOLDED unchanged, and nothing added;
        /// D gone; and, in legacy files, weight_names naming exactly the datasets held.
        mutating func checkStructure() throws(VerifyError) {
            var optimizerDropped = false
            for entry in original where !handledOriginal.contains(entry.key) {
                guard let after = foldedByKey[entry.key] else {
                    if dropped.contains(entry.key) { continue }
                    if isOptimizer(entry.path) { optimizerDropped = true; continue }
                    report.structure.append("dataset '\(entry.path)' of ORIGINAL is missing from FOLDED")
                    continue
                }
                if dropped.contains(entry.key) {
                    report.structure.append("D dataset '\(entry.path)' is still in FOLDED")
                    continue
                }
                if kernels[entry.key] != nil { continue } // checked numerically by checkKernels
                if let difference = Self.difference(entry, after) { report.structure.append(difference) }
            }
            let originalKeys = Set(original.map(\.key))
            var plainOptimizerState = false
            for entry in folded where !originalKeys.contains(entry.key) && !handledFolded.contains(entry.key) {
                // doconv-expand's pair: FOLDED is the plain input, whose optimizer state the expansion dropped.
                if options.expandedPair && isOptimizer(entry.path) { plainOptimizerState = true; continue }
                report.structure.append("dataset '\(entry.path)' of FOLDED does not exist in ORIGINAL")
            }
            if plainOptimizerState { report.notes.append("optimizer state is only in FOLDED, the plain input (doconv-expand drops it: its slots were shaped for the plain kernels)") }
            if optimizerDropped { report.notes.append("optimizer state is not in FOLDED (the fold drops it: its slots were shaped for D and W)") }
            if original.contains(where: { $0.values == nil }) { report.notes.append("non-float datasets are compared by shape only") }
            // Keras loads a legacy file by its layer_names and weight_names: FOLDED's must name
            // exactly the datasets it holds.
            do {
                if originalWeights.isHDF5 {
                    let unloadable = try weightNameProblems(path: originalPath, entries: original, side: "ORIGINAL")
                    if let first = unloadable.first { throw VerifyError("\(originalPath): \(first)") }
                }
                report.structure += try weightNameProblems(path: foldedPath, entries: folded, side: "FOLDED")
            } catch let error as VerifyError {
                throw error
            } catch {
                throw VerifyError("\(error)")
            }
            report.notes.append("HDF5 attributes other than layer_names and weight_names (configs) are not compared")
            report.structureSummary = "\(folded.count) datasets against ORIGINAL's \(original.count), \(kernels.count) kernel\(kernels.count == 1 ? "" : "s") folded, \(dropped.count) D removed"
                + (separable.isEmpty ? "" : ", \(separable.count) SeparableConv2D pair\(separable.count == 1 ? "" : "s") folded")
                + (fusions.isEmpty ? "" : ", \(fusions.count) BatchNormalization fused")
            if !fusions.isEmpty {
                let list = fusions.map { "\($0.batchNorm.name) into \($0.conv.name)" }.joined(separator: ", ")
                report.notes.append("found \(fusions.count) BatchNormalization layer\(fusions.count == 1 ? "" : "s") fused into the conv before it "
                    + "(weights gone from FOLDED, the conv's kernel and bias checked with it): \(list)")
            }
        }

        /// How an untouched dataset differs between the files, if it does.
        static func difference(_ entry: Entry, _ after: Entry) -> String? {
            if entry.shape != after.shape { return "dataset '\(entry.path)' changed shape \(entry.shape) -> \(after.shape)" }
            if let a = entry.values, let b = after.values, let k = a.indices.first(where: { a[$0] != b[$0] && !(a[$0].isNaN && b[$0].isNaN) }) {
                return "dataset '\(entry.path)' changed: value at \(TensorIndex.of(k, in: entry.shape)) \(a[k]) -> \(b[k])"
            }
            if (entry.values == nil) != (after.values == nil) { return "dataset '\(entry.path)' changed element type" }
            return nil
        }

        /// Each folded kernel (and each fused plain Conv2D) against its float64 recomputation.
        mutating func checkKernels() {
            for (key, layer) in kernels.sorted(by: { $0.key < $1.key }) {
                if let fusion = fusions.first(where: { if case .doConv(let fused, _) = $0.target { return fused == key } else { return false } }) {
                    report.layers.append(checkFusion(fusion, reference: doConvReference(layer), options: options))
                } else {
                    report.layers.append(checkKernel(of: layer, at: key))
                }
            }
            for fusion in fusions {
                guard case .conv2D(let kernel) = fusion.target else { continue }
                report.layers.append(checkFusion(fusion, reference: plainReference(kernel), options: options))
            }
        }

        /// One DOConv2D's folded kernel: its shape, the recomputation, and the probe.
        func checkKernel(of layer: KerasOriginalLayer, at key: String) -> LayerResult {
            KerasEquivalence.checkFoldedKernel(of: layer, folded: foldedByKey[key], conv: foldedByKey[key]?.path ?? key, key: key, options: options)
        }
    }
}
