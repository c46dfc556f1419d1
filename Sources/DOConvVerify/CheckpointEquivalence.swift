import DOConvCore
import DOConvPyTorch

/// PyTorch checkpoint pairs (ORIGINAL with DOConv2d state dicts, FOLDED with plain kernels),
/// pickled or safetensors: structure (the same objects and keys in the same order, except
/// each layer's `P.W` holding the folded kernel as `P.weight` or `P.W`, `P.D` and its
/// identity removed, and optimizer state dropped; every other tensor equal bit for bit, every
/// other value equal) and each folded kernel in float64. No graph, so no end-to-end check.
public enum CheckpointEquivalence {
    public static func verify(original originalPath: String, folded foldedPath: String, options: VerifyOptions, format: String) throws(VerifyError) -> VerificationReport {
        var report = VerificationReport(original: originalPath, folded: foldedPath, format: format)
        report.endToEndSkipped = "checkpoints hold no graph to run; the verdict rests on the structure and per-layer checks"
        let original: CheckpointSet
        let folded: CheckpointSet
        let layers: [CheckpointLayer]
        do {
            original = try CheckpointSet.read(path: originalPath, strictPickle: options.strictPickle)
            folded = try CheckpointSet.read(path: foldedPath, strictPickle: options.strictPickle)
            // FOLDED's 4-D kernels tell the kernel sizes that M*N alone leaves open.
            layers = try StateDictDetector(files: original, kernelSizes: try kernelSizes(in: folded), selection: options.selection).detect().layers
        } catch {
            throw VerifyError("\(error)")
        }
        var walk = Walk(original: original, folded: folded, options: options)
        walk.layersByDict = Dictionary(grouping: layers) { ObjectIdentifier($0.dict) }
        walk.compare(original.root, folded.root, at: "")
        report.structure = walk.differences
        report.layers = walk.results
        if walk.optimizerDropped { report.notes.append("optimizer state is not in FOLDED (the fold drops it: its slots were shaped for D and W)") }
        report.structureSummary = "\(walk.tensorsCompared) tensors equal, \(walk.results.count) kernel\(walk.results.count == 1 ? "" : "s") folded, \(walk.removed) D and identity tensors removed"
        return report
    }

    /// `P -> [M, N]` for every 4-D tensor named `P.weight` or `P.W`.
    static func kernelSizes(in checkpoint: CheckpointSet) throws -> [String: [Int]] {
        var sizes: [String: [Int]] = [:]
        for dict in StateDictDetector.dicts(in: checkpoint.root, skippingOptimizerState: true) {
            for entry in dict.dictEntries ?? [] {
                guard let key = entry.key.string, let tensor = try checkpoint.tensor(entry.value, key: key), tensor.shape.count == 4 else { continue }
                for suffix in [".weight", ".W"] where key.hasSuffix(suffix) {
                    sizes[String(key.dropLast(suffix.count))] = Array(tensor.shape[2...])
                }
            }
        }
        return sizes
    }

    /// Both trees walked side by side.
    struct Walk {
        let original: CheckpointSet
        let folded: CheckpointSet
        let options: VerifyOptions
        var layersByDict: [ObjectIdentifier: [CheckpointLayer]] = [:]
        var differences: [String] = []
        var results: [LayerResult] = []
        var optimizerDropped = false
        var tensorsCompared = 0
        var removed = 0
        private var visited = Set<ObjectIdentifier>()

        init(original: CheckpointSet, folded: CheckpointSet, options: VerifyOptions) {
            self.original = original
            self.folded = folded
            self.options = options
        }

        mutating func compare(_ a: PickleObject, _ b: PickleObject, at path: String) {
            guard visited.insert(ObjectIdentifier(a)).inserted else { return }
            let name = path.isEmpty ? "the top-level object" : "'\(path)'"
            if let entries = a.dictEntries {
                guard let foldedEntries = b.dictEntries else { return differ("\(name) is a dict in ORIGINAL but not in FOLDED") }
                compareDict(a, entries, foldedEntries, at: path)
                return
            }
            let tensors: (TorchTensor?, TorchTensor?)
            do {
                tensors = (try original.tensor(a, key: path), try folded.tensor(b, key: path))
            } catch {
                return differ("\(error)")
            }
            switch tensors {
            case let (x?, y?): compareTensors(x, y, at: name)
            case (nil, nil):
                if let x = a.elements, let y = b.elements, x.count == y.count, case .list = a.kind {
                    for (k, (u, v)) in zip(x, y).enumerated() { compare(u, v, at: "\(path)[\(k)]") }
                } else if a.isShallowlyEqual(to: b) {
                    // The same node (a carried object, its arguments, its state): its
                    // children must match too, tensors by their bytes whatever their storages
                    // are called.
                    for (u, v) in zip(a.children, b.children) { compare(u, v, at: path) }
                } else {
                    differ("\(name) changed")
                }
            default: differ("\(name) is a tensor in only one of the files")
            }
        }

        private mutating func compareDict(_ dict: PickleObject, _ entries: [(key: PickleObject, value: PickleObject)],
                                          _ foldedEntries: [(key: PickleObject, value: PickleObject)], at path: String) {
            let layers = layersByDict[ObjectIdentifier(dict)] ?? []
            let removedKeys = Set(layers.flatMap { [$0.dKey, $0.identityKey].compactMap { $0 } })
            let layerByW = Dictionary(layers.map { ($0.wKey, $0) }, uniquingKeysWith: { a, _ in a })
            // What FOLDED should hold, in order: each ORIGINAL entry, except D and its identity
            // and optimizer state; a layer's W may be renamed.
            var expected: [(key: PickleObject, value: PickleObject, layer: CheckpointLayer?)] = []
            for entry in entries {
                if let key = entry.key.string, removedKeys.contains(key) { removed += 1; continue }
                if !layersByDict.isEmpty && PyTorchFolder.isOptimizerState(entry.value)
                    && !foldedEntries.contains(where: { $0.key.isEqual(to: entry.key) }) {
                    optimizerDropped = true
                    continue
                }
                expected.append((entry.key, entry.value, entry.key.string.flatMap { layerByW[$0] }))
            }
            let keyName = { (key: PickleObject) in key.string ?? "\(key.int.map(String.init) ?? "?")" }
            guard expected.count == foldedEntries.count else {
                let have = Set(foldedEntries.map { keyName($0.key) })
                let want = Set(expected.map { $0.layer.map { String($0.wKey.dropLast()) + "weight" } ?? keyName($0.key) })
                let missing = want.subtracting(have).sorted().prefix(5)
                let extra = have.subtracting(want).sorted().prefix(5)
                return differ("\(path.isEmpty ? "the top-level dict" : "dict '\(path)'") has \(foldedEntries.count) entries in FOLDED, expected \(expected.count)"
                              + (missing.isEmpty ? "" : "; missing: \(missing.joined(separator: ", "))") + (extra.isEmpty ? "" : "; unexpected: \(extra.joined(separator: ", "))"))
            }
            for (want, have) in zip(expected, foldedEntries) {
                let child = path.isEmpty ? keyName(want.key) : "\(path)/\(keyName(want.key))"
                if let layer = want.layer {
                    let renamed = String(layer.wKey.dropLast()) + "weight"
                    guard have.key.string == renamed || have.key.string == layer.wKey else {
                        differ("'\(child)': FOLDED has '\(keyName(have.key))' where the folded kernel '\(renamed)' belongs")
                        continue
                    }
                    check(layer, have.value, at: path.isEmpty ? keyName(have.key) : "\(path)/\(keyName(have.key))")
                    continue
                }
                guard want.key.isEqual(to: have.key) else {
                    differ("'\(child)': FOLDED has '\(keyName(have.key))' in its place")
                    continue
                }
                compare(want.value, have.value, at: child)
            }
        }

        private mutating func compareTensors(_ a: TorchTensor, _ b: TorchTensor, at name: String) {
            tensorsCompared += 1
            guard a.dtype == b.dtype, a.shape == b.shape else {
                return differ("tensor \(name) changed from \(a.dtype.rawValue) \(a.shape) to \(b.dtype.rawValue) \(b.shape)")
            }
            let same = a.withLogicalBytes { x in b.withLogicalBytes { y in x.elementsEqual(y) } }
            if !same { differ("tensor \(name) changed values") }
        }

        /// FOLDED's kernel for `layer` against a float64 recomputation from ORIGINAL's D and
        /// W, and random patches through the layer both ways.
        private mutating func check(_ layer: CheckpointLayer, _ node: PickleObject, at name: String) {
            let g = layer.detected.layer.geometry
            var result = LayerResult(name: layer.detected.name, conv: name,
                                     description: "\(g.kind.rawValue) \(g.kernelHeight)x\(g.kernelWidth), groups \(g.groups), Dmul \(g.depthMultiplier) (pytorch)")
            defer { results.append(result) }
            let expectedShape = [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth]
            guard let tensor = try? folded.tensor(node, key: name), let type = tensor.dtype.elementType else {
                result.problems.append("FOLDED has no float kernel at '\(name)'")
                return
            }
            guard tensor.shape == expectedShape, tensor.dtype == layer.dtype else {
                result.problems.append("FOLDED's kernel is \(tensor.dtype.rawValue) \(tensor.shape), expected \(layer.dtype.rawValue) (Cout, Cin/g, M, N) = \(expectedShape)")
                return
            }
            guard let values = try? tensor.withLogicalBytes({ (bytes) throws(TensorError) in try ElementCodec.decode(bytes, as: type, count: tensor.count) }) else {
                result.problems.append("FOLDED's kernel cannot be read")
                return
            }
            let kernel = values.map(Double.init)
            let tolerance = options.tolerance ?? type.defaultTolerance
            result.kernel = ErrorStats.compare(expected: NaiveFold.kernel(layer.detected.layer), actual: kernel, shape: expectedShape, tolerance: tolerance)
            result.probe = NaiveFold.probe(layer.detected.layer, kernel: kernel, scale: nil, patches: options.probePatches, seed: options.seed, tolerance: tolerance)
        }

        private mutating func differ(_ text: String) {
            differences.append(text)
        }
    }
}
