import DOConvCore
import DOConvPyTorch
import DOConvVerify

/// PyTorch checkpoint pairs (ORIGINAL with DOConv2d state dicts, FOLDED with plain kernels),
/// pickled, safetensors or sharded: structure (the same objects and keys in the same order,
/// except each layer's `P.W` holding the folded kernel as `P.weight` or `P.W`, `P.D` and its
/// identity removed, and optimizer state dropped; every other tensor equal bit for bit, every
/// other value equal) and each folded kernel against a float64 recomputation. Which tensors
/// form a layer, and its kernel size, come from ORIGINAL and the user's flags alone
/// (`CheckpointLayerReading`), never from the fold's detector or from FOLDED. No graph, so no
/// end-to-end check.
public enum CheckpointEquivalence {
    public static func verify(original originalPath: String, folded foldedPath: String, options: VerifyOptions, format: String) throws(VerifyError) -> VerificationReport {
        var report = VerificationReport(original: originalPath, folded: foldedPath, format: format)
        report.endToEndSkipped = "checkpoints hold no graph to run; the verdict rests on the structure and per-layer checks"
        let original: CheckpointSet
        let folded: CheckpointSet
        do {
            original = try CheckpointSet.read(path: originalPath, strictPickle: options.strictPickle)
            folded = try CheckpointSet.read(path: foldedPath, strictPickle: options.strictPickle)
        } catch {
            throw VerifyError("\(error)")
        }
        var walk = Walk(original: original, folded: folded, options: options)
        walk.compare(original.root, folded.root, at: "", insideObject: nil)
        if let failure = walk.failure { throw VerifyError("\(originalPath): \(failure)") }
        report.structure = walk.differences
        report.layers = walk.results
        // Optimizer state may go only where the fold folded something (its slots were shaped
        // for D and W).
        if !walk.droppedOptimizerState.isEmpty {
            if walk.results.isEmpty {
                report.structure += walk.droppedOptimizerState.map { "optimizer state '\($0)' is missing from FOLDED, though ORIGINAL has no DO-Conv layer to fold" }
            } else {
                report.notes.append("optimizer state is not in FOLDED (the fold drops it: its slots were shaped for D and W)")
            }
        }
        if walk.expandedDroppedState {
            report.notes.append("optimizer state is only in FOLDED, the plain input (doconv-expand drops it: its slots were shaped for the plain weights)")
        }
        report.structureSummary = "\(walk.tensorsCompared) tensors equal, \(walk.results.count) kernel\(walk.results.count == 1 ? "" : "s") folded, \(walk.removed) D and identity tensors removed"
        return report
    }

    /// `doconv-expand`'s pair, PLAIN and EXPANDED (PLAIN holds no DO-Conv layer, EXPANDED
    /// does), checked as EXPANDED folded back into PLAIN: each layer composed in float64 must
    /// give PLAIN's kernel, every other tensor must be equal. Kernel sizes come from PLAIN's
    /// kernels (the expansion's input) where no flag gives them. Nil for any other pair.
    public static func verifyExpansion(plain: String, expanded: String, options given: VerifyOptions, format: String) throws(VerifyError) -> VerificationReport? {
        let sets: (CheckpointSet, CheckpointSet)
        do { sets = (try CheckpointSet.read(path: plain, strictPickle: given.strictPickle), try CheckpointSet.read(path: expanded, strictPickle: given.strictPickle)) } catch {
            throw VerifyError("\(error)")
        }
        guard !holdsLayers(sets.0), holdsLayers(sets.1) else { return nil }
        var options = given
        options.expandedPair = true
        for dict in StateDictDetector.dicts(in: sets.0.root, skippingOptimizerState: true) {
            for entry in dict.dictEntries ?? [] {
                guard let key = entry.key.string, key.hasSuffix(".weight"), options.kernelSizes[String(key.dropLast(".weight".count))] == nil,
                      let tensor = try? sets.0.tensor(entry.value, key: key), tensor.shape.count == 4 else { continue }
                options.kernelSizes[String(key.dropLast(".weight".count))] = [tensor.shape[2], tensor.shape[3]]
            }
        }
        var report = try verify(original: expanded, folded: plain, options: options, format: format)
        report.notes.append("ORIGINAL holds no DO-Conv layer and FOLDED does: checked as doconv-expand's pair, FOLDED folded back into ORIGINAL")
        return report
    }

    /// Whether any dict of the checkpoint holds a DO-Conv layer, as this module reads them.
    static func holdsLayers(_ files: CheckpointSet) -> Bool {
        for dict in StateDictDetector.dicts(in: files.root, skippingOptimizerState: true) {
            guard let entries = dict.dictEntries else { continue }
            // A W beside a D is a layer whatever its kernel size; a 1x1 layer's W has Dmul 1.
            for entry in entries {
                guard let key = entry.key.string, key == "W" || key.hasSuffix(".W"),
                      let w = try? files.tensor(entry.value, key: key), w.shape.count == 3 else { continue }
                let base = String(key.dropLast())
                if w.shape[2] == 1 || entries.contains(where: { $0.key.string == base + "D" }) { return true }
            }
        }
        return false
    }

    /// `optimizer.state_dict()` (a dict with `state` and `param_groups`), or a list of them.
    static func isOptimizerState(_ object: PickleObject) -> Bool {
        if let entries = object.dictEntries {
            let keys = Set(entries.compactMap { $0.key.string })
            return keys.contains("state") && keys.contains("param_groups")
        }
        if let items = object.elements, !items.isEmpty { return items.allSatisfy(isOptimizerState) }
        return false
    }

    /// Both trees walked side by side.
    struct Walk {
        let original: CheckpointSet
        let folded: CheckpointSet
        let options: VerifyOptions
        var differences: [String] = []
        /// What stops the check (a kernel size only a flag can give).
        var failure: String?
        /// Optimizer state ORIGINAL holds and FOLDED does not, by key.
        var droppedOptimizerState: [String] = []
        var results: [LayerResult] = []
        var tensorsCompared = 0
        var removed = 0
        /// doconv-expand's pair: optimizer state PLAIN holds and EXPANDED does not.
        var expandedDroppedState = false
        private var visited = Set<ObjectIdentifier>()

        init(original: CheckpointSet, folded: CheckpointSet, options: VerifyOptions) {
            self.original = original
            self.folded = folded
            self.options = options
        }

        /// Compares two nodes; `insideObject`: below a carried Python object (a pickled
        /// module), where the fold folds nothing.
        mutating func compare(_ a: PickleObject, _ b: PickleObject, at path: String, insideObject: (className: String, path: String)?) {
            guard failure == nil, visited.insert(ObjectIdentifier(a)).inserted else { return }
            let name = path.isEmpty ? "the top-level object" : "'\(path)'"
            if let entries = a.dictEntries {
                guard let foldedEntries = b.dictEntries else { return differ("\(name) is a dict in ORIGINAL but not in FOLDED") }
                compareDict(entries, foldedEntries, at: path, insideObject: insideObject)
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
                    for (k, (u, v)) in zip(x, y).enumerated() { compare(u, v, at: "\(path)[\(k)]", insideObject: insideObject) }
                } else if a.isShallowlyEqual(to: b) {
                    // The same node (a carried object, its arguments, its state): its
                    // children must match too, tensors by their bytes whatever their storages
                    // are called.
                    let inside = insideObject ?? a.carriedClass.map { (className: $0, path: path) }
                    for (u, v) in zip(a.children, b.children) { compare(u, v, at: path, insideObject: inside) }
                } else {
                    differ("\(name) changed")
                }
            default: differ("\(name) is a tensor in only one of the files")
            }
        }

        private mutating func compareDict(_ entries: [(key: PickleObject, value: PickleObject)],
                                          _ foldedEntries: [(key: PickleObject, value: PickleObject)], at path: String, insideObject: (className: String, path: String)?) {
            let dictName = path.isEmpty ? "the top-level dict" : "dict '\(path)'"
            let keyName = { (key: PickleObject) in key.string ?? "\(key.int.map(String.init) ?? "?")" }
            // A layer is named as the fold names it (and as --only/--exclude match it): by its
            // dict's path, or inside a pickled module by where the module sits and its module
            // path in it ("model/model.0.conv").
            let layerName = { (prefix: String) -> String in
                guard let object = insideObject else { return path.isEmpty ? prefix : path + "/" + prefix }
                let inner = object.path.isEmpty ? path : String(path.dropFirst(min(path.count, object.path.count + 1)))
                let parts = inner.split(separator: "/").filter { !["_modules", "_parameters", "_buffers"].contains($0) }.map(String.init)
                let module = (parts + (prefix == "W" ? [] : [prefix])).joined(separator: ".")
                if module.isEmpty { return object.path.isEmpty ? "W" : object.path }
                return object.path.isEmpty ? module : object.path + "/" + module
            }
            var layers: [OriginalLayer]
            do {
                layers = try CheckpointLayerReading.layers(in: entries, tensor: { try original.tensor($0, key: $1) }, name: layerName, options: options)
            } catch {
                failure = "\(error)"
                return
            }
            // The fold leaves a carried object (a pickled module) as it is, and refuses one that
            // holds a DO-Conv layer it was not told to leave.
            if let object = insideObject {
                if let layer = layers.first {
                    failure = "DO-Conv layer '\(layerName(layer.prefix))' sits inside a pickled \(object.className) object, which doconv-fold does not fold:"
                        + " save model.state_dict(), or pass the --exclude the fold was given"
                    return
                }
                layers = []
            }
            // doconv-expand's pair: FOLDED is the plain input, whose optimizer state the
            // expansion dropped.
            var foldedEntries = foldedEntries
            if options.expandedPair {
                let kept = foldedEntries.filter { entry in !isOptimizerState(entry.value) || entries.contains { $0.key.isEqual(to: entry.key) } }
                if kept.count < foldedEntries.count { expandedDroppedState = true }
                foldedEntries = kept
            }
            var seen = Set<String>()
            for key in foldedEntries.map({ keyName($0.key) }) where !seen.insert(key).inserted {
                differ("\(dictName) holds '\(key)' twice in FOLDED")
            }
            let removedKeys = Set(layers.flatMap { [$0.dKey, $0.identityKey].compactMap { $0 } })
            let layerByW = Dictionary(layers.map { ($0.wKey, $0) }, uniquingKeysWith: { a, _ in a })
            let originalKeys = Set(entries.compactMap { $0.key.string })
            for layer in layers where originalKeys.contains(layer.foldedKeys[0]) && !removedKeys.contains(layer.foldedKeys[0]) {
                differ("\(dictName): ORIGINAL holds '\(layer.foldedKeys[0])' beside the DO-Conv layer '\(layer.wKey)': no fold can hold both under one key")
            }
            // What FOLDED should hold, in order: each ORIGINAL entry, except D and its identity
            // and optimizer state; a layer's W may be renamed.
            var expected: [(key: PickleObject, value: PickleObject, layer: OriginalLayer?)] = []
            for entry in entries {
                if let key = entry.key.string, removedKeys.contains(key) { removed += 1; continue }
                if isOptimizerState(entry.value) && !foldedEntries.contains(where: { $0.key.isEqual(to: entry.key) }) {
                    droppedOptimizerState.append(path.isEmpty ? keyName(entry.key) : "\(path)/\(keyName(entry.key))")
                    continue
                }
                expected.append((entry.key, entry.value, entry.key.string.flatMap { layerByW[$0] }))
            }
            guard expected.count == foldedEntries.count else {
                let have = Set(foldedEntries.map { keyName($0.key) })
                let want = Set(expected.map { $0.layer?.foldedKeys[0] ?? keyName($0.key) })
                let missing = want.subtracting(have).sorted().prefix(5)
                let extra = have.subtracting(want).sorted().prefix(5)
                return differ("\(dictName) has \(foldedEntries.count) entries in FOLDED, expected \(expected.count)"
                              + (missing.isEmpty ? "" : "; missing: \(missing.joined(separator: ", "))") + (extra.isEmpty ? "" : "; unexpected: \(extra.joined(separator: ", "))"))
            }
            for (want, have) in zip(expected, foldedEntries) {
                let child = path.isEmpty ? keyName(want.key) : "\(path)/\(keyName(want.key))"
                if let layer = want.layer {
                    guard let key = have.key.string, layer.foldedKeys.contains(key) else {
                        differ("'\(child)': FOLDED has '\(keyName(have.key))' where the folded kernel '\(layer.foldedKeys[0])' belongs")
                        continue
                    }
                    check(layer, name: layerName(layer.prefix), have.value, at: path.isEmpty ? key : "\(path)/\(key)")
                    continue
                }
                guard want.key.isEqual(to: have.key) else {
                    differ("'\(child)': FOLDED has '\(keyName(have.key))' in its place")
                    continue
                }
                compare(want.value, have.value, at: child, insideObject: insideObject)
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

        /// FOLDED's kernel for `layer` against the float64 recomputation from ORIGINAL's D
        /// and W, and random patches through both kernels.
        private mutating func check(_ layer: OriginalLayer, name: String, _ node: PickleObject, at key: String) {
            var result = LayerResult(name: name, conv: key, description: layer.description)
            defer { results.append(result) }
            let expectedShape = layer.kernelShape
            guard let tensor = try? folded.tensor(node, key: key), let type = tensor.dtype.elementType else {
                result.problems.append("FOLDED has no float kernel at '\(key)'")
                return
            }
            guard tensor.shape == expectedShape, tensor.dtype == layer.w.dtype else {
                result.problems.append("FOLDED's kernel is \(tensor.dtype.rawValue) \(tensor.shape), expected \(layer.w.dtype.rawValue) (Cout, Cin/g, M, N) = \(expectedShape)")
                return
            }
            StoredKernelCheck.compare(&result, reference: { try CheckpointLayerReading.kernel(of: layer) },
                                      kernel: { try CheckpointLayerReading.values(of: tensor) }, shape: expectedShape, type: type, options: options)
        }

        private mutating func differ(_ text: String) {
            differences.append(text)
        }
    }
}
