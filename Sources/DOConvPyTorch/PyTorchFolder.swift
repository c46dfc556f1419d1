import DOConvCore

/// Options of a checkpoint fold.
public struct PyTorchFoldOptions: Sendable {
    public var fold = FoldOptions()
    /// Kernel sizes by layer (`--kernel-size P=MxN`).
    public var kernelSizes: [String: [Int]] = [:]
    /// Keep the key `P.W` for the folded kernel (eval code that reads W as a 4-D kernel)
    /// instead of nn.Conv2d's `P.weight`.
    public var keepNames = false

    public init() {}
}

/// A folded checkpoint, ready to be written (or not, when verification failed).
public struct PyTorchFoldResult {
    public let summary: FoldSummary
    let checkpoint: Checkpoint

    /// Writes the folded checkpoint to `path` atomically, in the input's container.
    public func write(to path: String) throws(PyTorchError) {
        try CheckpointWriter.write(checkpoint, to: path)
    }
}

/// Folds every DO-Conv layer of a PyTorch checkpoint (pickled state dicts, or
/// safetensors) into the kernel an `nn.Conv2d` at the same path loads.
public enum PyTorchFolder {
    /// Finds every DO-Conv layer without writing anything (for reports).
    public static func detect(path: String, options: PyTorchFoldOptions = PyTorchFoldOptions()) throws(PyTorchError) -> Detection {
        let checkpoint = try Checkpoint(path: path)
        let (layers, rejected) = try StateDictDetector(checkpoint: checkpoint, kernelSizes: options.kernelSizes).detect()
        return Detection(layers: layers.map(\.detected), rejected: rejected)
    }

    /// Detects, folds and verifies every layer, and edits the checkpoint's tree: `P.W`
    /// becomes `P.weight` (the folded kernel, at W's place in key order), `P.D` and its
    /// identity go, and optimizer state, whose slots were shaped for D and W, is dropped.
    public static func fold(path: String, options: PyTorchFoldOptions = PyTorchFoldOptions()) throws(PyTorchError) -> PyTorchFoldResult {
        let checkpoint = try Checkpoint(path: path)
        let (layers, rejected) = try StateDictDetector(checkpoint: checkpoint, kernelSizes: options.kernelSizes).detect()
        var summary = FoldSummary(rejected: rejected)
        (summary.parametersBefore, summary.bytesBefore) = try totals(checkpoint)
        var edits: [ObjectIdentifier: (renamed: [String: (String, PickleObject)], removed: Set<String>)] = [:]
        for found in layers {
            let (node, record) = try fold(found, checkpoint: checkpoint, options: options.fold)
            summary.layers.append(record)
            // W, D and the identity were read for the last time.
            for key in [found.wKey, found.dKey, found.identityKey].compactMap({ $0 }) { checkpoint.releaseStorage(of: found.dict, key: key) }
            let newKey = options.keepNames ? found.wKey : String(found.wKey.dropLast()) + "weight"
            var edit = edits[ObjectIdentifier(found.dict)] ?? ([:], [])
            edit.renamed[found.wKey] = (newKey, node)
            edit.removed.formUnion([found.dKey, found.identityKey].compactMap { $0 })
            edits[ObjectIdentifier(found.dict)] = edit
            let g = record.geometry
            let removed = g.trainedParameterCount + (found.identityKey == nil ? 0 : g.dCount) - g.kernelCount
            summary.parametersAfter -= removed
            summary.bytesAfter -= removed * found.dtype.byteWidth
        }
        for dict in StateDictDetector.dicts(in: checkpoint.root) {
            guard let edit = edits[ObjectIdentifier(dict)], case let .dict(entries, ordered) = dict.kind else { continue }
            dict.kind = .dict(entries: entries.compactMap { entry in
                guard let key = entry.key.string else { return entry }
                if edit.removed.contains(key) { return nil }
                if let (newKey, node) = edit.renamed[key] { return (key: PickleObject(.string(newKey)), value: node) }
                return entry
            }, ordered: ordered)
        }
        if !layers.isEmpty {
            for key in dropOptimizerState(checkpoint.root) {
                summary.notes.append("optimizer state dropped ('\(key)'): its slots were shaped for D and W")
            }
        }
        summary.parametersAfter += summary.parametersBefore
        summary.bytesAfter += summary.bytesBefore
        if checkpoint.container == .legacy && !layers.isEmpty {
            summary.notes.append("written in torch's legacy format, as read (torch.load reads it in every version)")
        }
        return PyTorchFoldResult(summary: summary, checkpoint: checkpoint)
    }

    /// Folds one layer into a new storage of W's element type and verifies the kernel as
    /// stored; returns the tensor node that replaces W.
    private static func fold(_ found: CheckpointLayer, checkpoint: Checkpoint, options: FoldOptions) throws(PyTorchError) -> (PickleObject, FoldedLayer) {
        let layer = found.detected.layer
        let g = layer.geometry
        let type = found.detected.elementType
        let storage = TorchStorage(key: checkpoint.freshStorageKey(), dtype: found.dtype, count: g.kernelCount) { out in
            if type == .float32 {
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
            if type == .float32 {
                report = LayerProbe.compare(layer: layer, kernel: storage.bytes.bindMemory(to: Float.self), patches: options.probePatches, seed: options.seed)
            } else {
                let stored = (try? ElementCodec.decode(storage.bytes, as: type, count: g.kernelCount)) ?? []
                report = LayerProbe.compare(layer: layer, kernel: stored, patches: options.probePatches, seed: options.seed)
            }
            record.relativeError = report.relativeError
        }
        let shape = [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth]
        return (checkpoint.makeTensorNode(storage: storage, shape: shape), record)
    }

    /// Elements and bytes of every tensor in the checkpoint's dicts.
    private static func totals(_ checkpoint: Checkpoint) throws(PyTorchError) -> (Int, Int) {
        var parameters = 0
        var bytes = 0
        for dict in StateDictDetector.dicts(in: checkpoint.root, skippingOptimizerState: true) {
            for entry in dict.dictEntries ?? [] {
                guard let tensor = try checkpoint.tensor(entry.value, key: entry.key.string ?? "?") else { continue }
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
