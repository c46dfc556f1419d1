import DOConvCore

/// Options of a checkpoint fold.
public struct PyTorchFoldOptions: Sendable {
    public var fold = FoldOptions()
    /// Kernel sizes by layer (`--kernel-size P=MxN`).
    public var kernelSizes: [String: [Int]] = [:]
    /// Keep the key `P.W` for the folded kernel (eval code that reads W as a 4-D kernel)
    /// instead of nn.Conv2d's `P.weight`.
    public var keepNames = false
    /// Refuse pickles that name globals outside torch's weights-only allowlist, instead of
    /// carrying those objects through (`--strict-pickle`).
    public var strictPickle = false

    public init() {}
}

/// A folded checkpoint, ready to be written (or not, when verification failed).
public struct PyTorchFoldResult {
    public private(set) var summary: FoldSummary
    let files: CheckpointSet

    /// Writes the folded checkpoint to `path` atomically, in the input's container (a
    /// sharded one as shards and index); returns notes on what was written.
    @discardableResult
    public func write(to path: String) throws(PyTorchError) -> [String] {
        try files.write(to: path, parameterDelta: summary.parametersAfter - summary.parametersBefore,
                        byteDelta: summary.bytesAfter - summary.bytesBefore)
    }
}

/// Folds every DO-Conv layer of a PyTorch checkpoint (pickled state dicts, safetensors, or
/// a sharded checkpoint's shards) into the kernel an `nn.Conv2d` at the same path loads.
public enum PyTorchFolder {
    /// Finds every DO-Conv layer without writing anything (for reports).
    public static func detect(path: String, options: PyTorchFoldOptions = PyTorchFoldOptions()) throws(PyTorchError) -> Detection {
        let files = try CheckpointSet.read(path: path, strictPickle: options.strictPickle)
        let (layers, rejected) = try StateDictDetector(files: files, kernelSizes: options.kernelSizes, selection: options.fold.selection).detect()
        return Detection(layers: layers.map(\.detected), rejected: rejected)
    }

    /// Detects, folds and verifies every layer, and edits the checkpoint's tree: `P.W`
    /// becomes `P.weight` (the folded kernel, at W's place in key order), `P.D` and its
    /// identity go, and optimizer state, whose slots were shaped for D and W, is dropped.
    /// A fold that would write a key the dict already holds is refused.
    public static func fold(path: String, options: PyTorchFoldOptions = PyTorchFoldOptions()) throws(PyTorchError) -> PyTorchFoldResult {
        let files = try CheckpointSet.read(path: path, strictPickle: options.strictPickle)
        let (layers, rejected) = try StateDictDetector(files: files, kernelSizes: options.kernelSizes, selection: options.fold.selection).detect()
        try checkKeys(layers, keepNames: options.keepNames, path: path)
        var summary = FoldSummary(rejected: rejected)
        (summary.parametersBefore, summary.bytesBefore) = try totals(files)
        var edits: [ObjectIdentifier: (renamed: [String: (String, PickleObject)], removed: Set<String>)] = [:]
        for found in layers {
            let (node, record) = try fold(found, files: files, options: options.fold)
            summary.layers.append(record)
            // W, D and the identity were read for the last time.
            for key in [found.wKey, found.dKey, found.identityKey].compactMap({ $0 }) { releaseStorage(of: found.dict, key: key, files: files) }
            var edit = edits[ObjectIdentifier(found.dict)] ?? ([:], [])
            edit.renamed[found.wKey] = (newKey(found, keepNames: options.keepNames), node)
            edit.removed.formUnion([found.dKey, found.identityKey].compactMap { $0 })
            edits[ObjectIdentifier(found.dict)] = edit
            let g = record.geometry
            let removed = g.trainedParameterCount + (found.identityKey == nil ? 0 : g.dCount) - g.kernelCount
            summary.parametersAfter -= removed
            summary.bytesAfter -= removed * found.dtype.byteWidth
        }
        for dict in StateDictDetector.dicts(in: files.root) {
            guard let edit = edits[ObjectIdentifier(dict)], case let .dict(entries, ordered) = dict.kind else { continue }
            dict.kind = .dict(entries: entries.compactMap { entry in
                guard let key = entry.key.string else { return entry }
                if edit.removed.contains(key) { return nil }
                if let (newKey, node) = edit.renamed[key] { return (key: PickleObject(.string(newKey)), value: node) }
                return entry
            }, ordered: ordered)
        }
        files.redistribute()
        if !layers.isEmpty {
            for key in dropOptimizerState(files.root) {
                summary.notes.append("optimizer state dropped ('\(key)'): its slots were shaped for D and W")
            }
        }
        summary.parametersAfter += summary.parametersBefore
        summary.bytesAfter += summary.bytesBefore
        summary.notes += notes(layers: layers, files: files)
        return PyTorchFoldResult(summary: summary, files: files)
    }

    /// The key the folded kernel is written under.
    static func newKey(_ found: CheckpointLayer, keepNames: Bool) -> String {
        keepNames ? found.wKey : String(found.wKey.dropLast()) + "weight"
    }

    /// Refuses a fold that would write a key its dict already holds (an unrelated
    /// `P.weight` beside `P.W`), which would lose one of the two tensors.
    static func checkKeys(_ layers: [CheckpointLayer], keepNames: Bool, path: String) throws(PyTorchError) {
        for (_, group) in Dictionary(grouping: layers, by: { ObjectIdentifier($0.dict) }) {
            guard let dict = group.first?.dict else { continue }
            let keys = Set((dict.dictEntries ?? []).compactMap(\.key.string))
            let leaving = Set(group.flatMap { [$0.wKey, $0.dKey, $0.identityKey].compactMap { $0 } })
            var written = Set<String>()
            for found in group {
                let key = newKey(found, keepNames: keepNames)
                if (key != found.wKey && keys.contains(key) && !leaving.contains(key)) || !written.insert(key).inserted {
                    throw .keyCollision(path: path, layer: found.detected.name, newKey: key, wKey: found.wKey)
                }
            }
        }
    }

    /// What the summary says beyond the layers: 1x1 layers taken by name and shape, the
    /// Python objects carried, the container written.
    private static func notes(layers: [CheckpointLayer], files: CheckpointSet) -> [String] {
        var notes: [String] = []
        let byName = layers.filter { $0.dKey == nil }.map(\.detected.name)
        if !byName.isEmpty {
            notes.append("1x1 layers taken by name and shape alone (a 3-D W with Dmul 1 and no D): \(byName.joined(separator: ", ")); leave any that is not a DO-Conv layer with --exclude")
        }
        let carried = files.carriedGlobals
        if !carried.isEmpty {
            notes.append("Python objects carried through unexecuted (\(carried.joined(separator: ", "))): load the output as the input loads, with torch.load(weights_only=False) or torch.serialization.add_safe_globals")
        }
        if files.files.contains(where: { $0.container == .legacy }) && !layers.isEmpty {
            notes.append("written in torch's legacy format, as read (torch.load reads it in every version)")
        }
        return notes
    }

    /// Lets the input pages of the tensor at `key` in `dict` go (it was read for the last time).
    private static func releaseStorage(of dict: PickleObject, key: String, files: CheckpointSet) {
        guard let value = dict.dictEntries?.first(where: { $0.key.string == key })?.value,
              let tensor = try? files.tensor(value, key: key) else { return }
        tensor.storage.releaseMappedPages()
    }

    /// Folds one layer into a new storage of W's element type and verifies the kernel as
    /// stored; returns the tensor node that replaces W.
    private static func fold(_ found: CheckpointLayer, files: CheckpointSet, options: FoldOptions) throws(PyTorchError) -> (PickleObject, FoldedLayer) {
        let layer = found.detected.layer
        // The kernel joins the file that holds W, tagged with W's device.
        guard let wNode = found.dict.dictEntries?.first(where: { $0.key.string == found.wKey })?.value else {
            throw .inconsistentLayer(path: files.path, layer: found.detected.name, reason: "\(found.wKey) is gone")
        }
        let checkpoint = files.file(holding: wNode)
        let g = layer.geometry
        let type = found.detected.elementType
        // float64 layers fold in float64, from the tensors as stored.
        let exactLayer = type == .float64 ? try float64Layer(found, files: files) : nil
        let exact = exactLayer?.foldedKernel()
        let storage = TorchStorage(key: checkpoint.freshStorageKey(), dtype: found.dtype, count: g.kernelCount) { out in
            if let exact {
                exact.withUnsafeBytes { out.copyMemory(from: $0) }
            } else if type == .float32 {
                layer.fold(into: out.bindMemory(to: Float.self))
            } else {
                let values = layer.foldedKernel().values
                values.withUnsafeBufferPointer { ElementCodec.encode($0, as: type, into: out) }
            }
        }
        var record = FoldedLayer(name: found.detected.name, layout: .pytorch, geometry: g, elementType: type, stride: [], dilation: [],
                                 tolerance: options.tolerance ?? type.defaultTolerance)
        if options.verify {
            // Probe the kernel as stored (after rounding to the element type), not as computed.
            let report: ProbeReport
            if let exactLayer, let exact {
                report = exactLayer.probe(kernel: exact, patches: options.probePatches, seed: options.seed)
            } else if type == .float32 {
                report = LayerProbe.compare(layer: layer, kernel: storage.bytes.bindMemory(to: Float.self), patches: options.probePatches, seed: options.seed)
            } else {
                let stored = (try? ElementCodec.decode(storage.bytes, as: type, count: g.kernelCount)) ?? []
                report = LayerProbe.compare(layer: layer, kernel: stored, patches: options.probePatches, seed: options.seed)
            }
            record.relativeError = report.relativeError
        }
        let shape = [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth]
        let node = checkpoint.makeTensorNode(storage: storage, shape: shape, location: checkpoint.storageLocation(of: wNode) ?? "cpu")
        files.adopt(node, besides: wNode)
        return (node, record)
    }

    /// A float64 layer's kernel computed in float64: D plus its stored identity (or the
    /// identity offset), and W, read exactly.
    private static func float64Layer(_ found: CheckpointLayer, files: CheckpointSet) throws(PyTorchError) -> Float64Layer {
        let g = found.detected.layer.geometry
        func values(_ key: String?) throws(PyTorchError) -> [Double]? {
            guard let key, let node = found.dict.dictEntries?.first(where: { $0.key.string == key })?.value else { return nil }
            guard let tensor = try files.tensor(node, key: key), let exact = tensor.float64Values() else {
                throw .inconsistentLayer(path: files.path, layer: found.detected.name, reason: "\(key) is not a float64 tensor")
            }
            return exact
        }
        guard let w = try values(found.wKey) else { throw .inconsistentLayer(path: files.path, layer: found.detected.name, reason: "\(found.wKey) is gone") }
        var d = try values(found.dKey)
        if var composed = d {
            if let identity = try values(found.identityKey) {
                for k in composed.indices { composed[k] += identity[k] }
            } else {
                IdentityOffset.add(to: &composed, layout: .pytorch, geometry: g)
            }
            d = composed
        }
        do { return try Float64Layer(layout: .pytorch, geometry: g, d: d, w: w) } catch {
            throw .inconsistentLayer(path: files.path, layer: found.detected.name, reason: "\(error)")
        }
    }

    /// Elements and bytes of every tensor in the checkpoint's dicts.
    static func totals(_ files: CheckpointSet) throws(PyTorchError) -> (Int, Int) {
        var parameters = 0
        var bytes = 0
        for dict in StateDictDetector.dicts(in: files.root, skippingOptimizerState: true) {
            for entry in dict.dictEntries ?? [] {
                guard let tensor = try files.tensor(entry.value, key: entry.key.string ?? "?") else { continue }
                parameters += tensor.count
                bytes += tensor.count * tensor.dtype.byteWidth
            }
        }
        return (parameters, bytes)
    }

    /// Removes every dict entry whose value is optimizer state (`optimizer.state_dict()`:
    /// a dict with `state` and `param_groups`, or a list of them); returns their keys.
    static func dropOptimizerState(_ root: PickleObject) -> [String] {
        var dropped: [String] = []
        for dict in StateDictDetector.dicts(in: root) {
            guard case let .dict(entries, ordered) = dict.kind else { continue }
            let kept = entries.filter { !isOptimizerState($0.value) }
            guard kept.count < entries.count else { continue }
            dropped += entries.filter { isOptimizerState($0.value) }.map { $0.key.string ?? "?" }
            dict.kind = .dict(entries: kept, ordered: ordered)
        }
        return dropped
    }

    /// Whether `object` is optimizer state: `optimizer.state_dict()` or a list of them.
    public static func isOptimizerState(_ object: PickleObject) -> Bool {
        if let entries = object.dictEntries {
            let keys = Set(entries.compactMap { $0.key.string })
            return keys.contains("state") && keys.contains("param_groups")
        }
        if let items = object.elements, !items.isEmpty { return items.allSatisfy(isOptimizerState) }
        return false
    }
}
