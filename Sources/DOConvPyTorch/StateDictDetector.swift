import DOConvCore

/// A DO-Conv layer of a state dict: `P.W`, `P.D` and the identity `P.d_diag` (or
/// `P.D_diag`), as the reference `DOConv2d` module registers them.
public struct CheckpointLayer {
    /// The state dict holding the layer (a checkpoint may hold several: model, ema).
    public let dict: PickleObject
    /// The module path P ("layer1.0.conv2"; "W" for a bare layer's state dict).
    public let prefix: String
    public let wKey: String
    public let dKey: String?
    public let identityKey: String?
    public let dtype: TorchDType
    public let detected: DetectedLayer

    /// The layer named "PATH/P" after the dict it sits in (P alone for the root dict).
    func named(by path: String) -> CheckpointLayer {
        guard !path.isEmpty else { return self }
        var detected = detected
        detected.name = path + "/" + prefix
        return CheckpointLayer(dict: dict, prefix: prefix, wKey: wKey, dKey: dKey, identityKey: identityKey, dtype: dtype, detected: detected)
    }
}

extension Checkpoint {
    /// The DO-Conv layers of every state dict in the checkpoint, and the look-alikes.
    /// `kernelSizes`: `--kernel-size P=MxN`, P as in the dict or without a container prefix.
    public func doConvLayers(kernelSizes: [String: [Int]] = [:]) throws(PyTorchError) -> (layers: [CheckpointLayer], rejected: [RejectedCandidate]) {
        try StateDictDetector(files: CheckpointSet(self), kernelSizes: kernelSizes).detect()
    }
}

/// Finds DO-Conv layers in every dict of a checkpoint that holds tensors by name.
public struct StateDictDetector {
    let files: CheckpointSet
    /// `--kernel-size P=MxN`: P as in the state dict, or without a container prefix.
    let kernelSizes: [String: [Int]]
    /// `--only` / `--exclude`.
    var selection = LayerSelection()

    public init(files: CheckpointSet, kernelSizes: [String: [Int]], selection: LayerSelection = LayerSelection()) {
        self.files = files
        self.kernelSizes = kernelSizes
        self.selection = selection
    }

    public func detect() throws(PyTorchError) -> (layers: [CheckpointLayer], rejected: [RejectedCandidate]) {
        var layers: [CheckpointLayer] = []
        var rejected: [RejectedCandidate] = []
        var unknownSizes: [(name: String, area: Int)] = []
        var paths: [ObjectIdentifier: String] = [:]
        var insideObject: (className: String, layer: String, objectPath: String)?
        var namesInsideObjects: [String] = []
        for place in Self.dictsWithPaths(in: files.root, skippingOptimizerState: true) {
            paths[ObjectIdentifier(place.dict)] = place.path
            let before = layers.count
            // Layers inside a pickled module are named by where the module sits and their
            // module path in it ("model/model.0.conv"), for messages and --exclude alike.
            let naming: (String) -> String
            if let object = place.enclosing {
                naming = { Self.objectLayerName(dictPath: place.path, objectPath: object.path, prefix: $0) }
            } else {
                naming = { place.path.isEmpty ? $0 : place.path + "/" + $0 }
            }
            try detect(in: place.dict, naming: naming, layers: &layers, rejected: &rejected, unknownSizes: &unknownSizes)
            // A module's own code reads its W and D: a layer inside a pickled object stays.
            if let object = place.enclosing, let found = layers[before...].first {
                if insideObject == nil { insideObject = (object.className, naming(found.prefix), object.path) }
                namesInsideObjects += layers[before...].map { naming($0.prefix) }
                layers.removeSubrange(before...)
            }
        }
        if let (className, layer, objectPath) = insideObject {
            // Advice that fits the file: a checkpoint that also holds state dicts has one.
            let flags = (namesInsideObjects.contains(objectPath) ? "--exclude '\(objectPath)' " : "") + "--exclude '\(objectPath)/*'"
            let advice = layers.isEmpty || objectPath.isEmpty ? "save model.state_dict() and fold that"
                : "the checkpoint's state dicts fold: pass \(flags) to carry the object unfolded"
            throw .layerInsideObject(path: files.path, className: className, layer: layer, advice: advice)
        }
        // Layers of several state dicts (a model and its EMA) are named by their dict too.
        if Set(layers.map { ObjectIdentifier($0.dict) }).count > 1 {
            layers = layers.map { $0.named(by: paths[ObjectIdentifier($0.dict)] ?? "") }
        }
        // One error naming every layer whose kernel size is open, not one run per layer.
        guard unknownSizes.isEmpty else { throw .ambiguousKernelSize(path: files.path, layers: unknownSizes) }
        return (layers, rejected)
    }

    /// A layer inside a pickled module: where the module sits, then the layer's module path
    /// in it. The dict "model/_modules/0/_parameters" of the object at "model", with W at
    /// "W", is "model/0"; at the top level it is "0".
    static func objectLayerName(dictPath: String, objectPath: String, prefix: String) -> String {
        let inner = objectPath.isEmpty ? dictPath : String(dictPath.dropFirst(min(dictPath.count, objectPath.count + 1)))
        let parts = inner.split(separator: "/").filter { !["_modules", "_parameters", "_buffers"].contains($0) }.map(String.init)
        let module = (parts + (prefix == "W" ? [] : [prefix])).joined(separator: ".")
        if module.isEmpty { return objectPath.isEmpty ? "W" : objectPath }
        return objectPath.isEmpty ? module : objectPath + "/" + module
    }

    /// Every dict in the tree, each once, in the order a depth-first walk meets them;
    /// optionally not those inside optimizer state.
    public static func dicts(in root: PickleObject, skippingOptimizerState: Bool = false) -> [PickleObject] {
        dictsWithPaths(in: root, skippingOptimizerState: skippingOptimizerState).map(\.dict)
    }

    /// The same, each with where it sits ("" for the root, "state_dict", "model/ema", "[0]")
    /// and the outermost carried object around it (a pickled module), if any: its class and
    /// where it sits.
    static func dictsWithPaths(in root: PickleObject, skippingOptimizerState: Bool)
        -> [(dict: PickleObject, path: String, enclosing: (className: String, path: String)?)] {
        var seen = Set<ObjectIdentifier>()
        var found: [(PickleObject, String, (className: String, path: String)?)] = []
        var stack: [(PickleObject, String, (className: String, path: String)?)] = [(root, "", nil)]
        while let (object, path, enclosing) = stack.popLast() {
            guard seen.insert(ObjectIdentifier(object)).inserted else { continue }
            if skippingOptimizerState && PyTorchFolder.isOptimizerState(object) { continue }
            let join = { (part: String) in path.isEmpty ? part : path + "/" + part }
            switch object.kind {
            case let .dict(entries, _):
                found.append((object, path, enclosing))
                stack += entries.reversed().map { ($0.value, join($0.key.string ?? $0.key.int.map(String.init) ?? "?"), enclosing) }
            case let .list(items), let .tuple(items):
                stack += items.enumerated().reversed().map { ($1, path + "[\($0)]", enclosing) }
            default:
                let inside = enclosing ?? object.carriedClass.map { (className: $0, path: path) }
                stack += PickleTreeCheck.children(of: object).reversed().map { ($0, path, inside) }
            }
        }
        return found
    }

    private func detect(in dict: PickleObject, naming: (String) -> String, layers: inout [CheckpointLayer], rejected: inout [RejectedCandidate],
                        unknownSizes: inout [(name: String, area: Int)]) throws(PyTorchError) {
        guard let entries = dict.dictEntries else { return }
        var byKey: [String: PickleObject] = [:]
        for entry in entries { if let key = entry.key.string { byKey[key] = entry.value } }
        for entry in entries {
            guard let key = entry.key.string, key == "W" || key.hasSuffix(".W") else { continue }
            let base = String(key.dropLast()) // "P." or ""
            let name = base.isEmpty ? "W" : String(base.dropLast())
            guard let w = try files.tensor(entry.value, key: key) else { continue }
            if let reason = selection.refusal(of: naming(name)) {
                rejected.append(.init(name: naming(name), reason: reason, isDOConvLayer: true))
                continue
            }
            let dKey = byKey[base + "D"] != nil ? base + "D" : nil
            guard w.shape.count == 3 else {
                if dKey != nil { rejected.append(.init(name: name, reason: "\(key) has shape \(w.shape); DOConv2d's W is (Cout, Cin/g, Dmul)")) }
                continue
            }
            guard let type = w.dtype.elementType else {
                rejected.append(.init(name: name, reason: "\(key) holds \(w.dtype.rawValue) values, not floating point"))
                continue
            }
            let (cout, cinPerGroup, dmul) = (w.shape[0], w.shape[1], w.shape[2])
            guard let dKey, let dNode = byKey[dKey] else {
                guard dmul == 1 else {
                    rejected.append(.init(name: name, reason: "\(key) has Dmul \(dmul) but there is no \(base)D"))
                    continue
                }
                // A 1x1 layer: its kernel is W reshaped. Groups cannot be told without D;
                // the kernel is the same for any, so it is described with groups 1.
                let geometry = DOConvGeometry(inChannels: cinPerGroup, outChannels: cout, groups: 1, kernelHeight: 1, kernelWidth: 1, depthMultiplier: 1)
                layers.append(try layer(dict: dict, prefix: name, wKey: key, dKey: nil, identityKey: nil, w: w, d: nil, geometry: geometry, type: type))
                continue
            }
            guard let d = try files.tensor(dNode, key: dKey) else { continue }
            guard d.shape.count == 3, d.shape[2] == dmul, cinPerGroup > 0, d.shape[0] % cinPerGroup == 0,
                  cout % (d.shape[0] / cinPerGroup) == 0, d.shape[1] > 0 else {
                throw .inconsistentLayer(path: files.path, layer: name, reason: "D \(d.shape) and W \(w.shape) disagree: DOConv2d's D is (Cin, M*N, Dmul) and W (Cout, Cin/g, Dmul)")
            }
            guard d.dtype == w.dtype else {
                throw .inconsistentLayer(path: files.path, layer: name, reason: "D (\(d.dtype.rawValue)) and W (\(w.dtype.rawValue)) disagree in element type")
            }
            let (cin, area) = (d.shape[0], d.shape[1])
            guard let (m, n) = try kernelSize(layer: name, area: area) else {
                unknownSizes.append((name, area))
                continue
            }
            let geometry = DOConvGeometry(inChannels: cin, outChannels: cout, groups: cin / cinPerGroup, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
            let identityKey = [base + "d_diag", base + "D_diag"].first { byKey[$0] != nil }
            var identity: TorchTensor?
            if let identityKey, let node = byKey[identityKey] {
                identity = try files.tensor(node, key: identityKey)
                guard identity?.shape == d.shape else {
                    throw .inconsistentLayer(path: files.path, layer: name, reason: "\(identityKey) \(identity?.shape ?? []) and D \(d.shape) disagree in shape")
                }
            }
            let composed = try composedD(d: d, identity: identity, geometry: geometry, layer: name)
            layers.append(try layer(dict: dict, prefix: name, wKey: key, dKey: dKey, identityKey: identityKey, w: w, d: composed, geometry: geometry, type: type))
        }
    }

    /// D + d_diag, as the layer adds them (or D + the identity offset, when a fork does not
    /// store it).
    private func composedD(d: TorchTensor, identity: TorchTensor?, geometry: DOConvGeometry, layer: String) throws(PyTorchError) -> FloatValues {
        do {
            let trained = try d.floatValues()
            guard let identity else {
                var values = trained.array
                IdentityOffset.add(to: &values, layout: .pytorch, geometry: geometry)
                return FloatValues(values)
            }
            let offset = try identity.floatValues()
            return FloatValues(count: trained.count) { out in
                for k in 0..<trained.count { out[k] = trained[k] + offset[k] }
            }
        } catch {
            throw .inconsistentLayer(path: files.path, layer: layer, reason: "\(error)")
        }
    }

    private func layer(dict: PickleObject, prefix: String, wKey: String, dKey: String?, identityKey: String?, w: TorchTensor,
                       d: FloatValues?, geometry: DOConvGeometry, type: ElementType) throws(PyTorchError) -> CheckpointLayer {
        do {
            let layer = try DOConvLayer(layout: .pytorch, geometry: geometry, d: d, w: try w.floatValues())
            let detected = DetectedLayer(name: prefix, form: .kernelComposition, layer: layer, elementType: type, stride: [], dilation: [])
            return CheckpointLayer(dict: dict, prefix: prefix, wKey: wKey, dKey: dKey, identityKey: identityKey, dtype: w.dtype, detected: detected)
        } catch {
            throw .inconsistentLayer(path: files.path, layer: prefix, reason: "\(error)")
        }
    }

    /// M x N from `--kernel-size` (by P, or by P without a container prefix such as
    /// `module.`), else the square root of M*N; nil when neither gives it.
    private func kernelSize(layer: String, area: Int) throws(PyTorchError) -> (Int, Int)? {
        let given = kernelSizes[layer] ?? kernelSizes.filter { layer.hasSuffix("." + $0.key) }.max { $0.key.count < $1.key.count }?.value
        if let given {
            guard given.count == 2, given[0].multipliedReportingOverflow(by: given[1]) == (area, false) else {
                throw .inconsistentLayer(path: files.path, layer: layer, reason: "--kernel-size \(given.map(String.init).joined(separator: "x")) does not give D's M*N = \(area)")
            }
            return (given[0], given[1])
        }
        let root = Int(Double(area).squareRoot().rounded())
        return root * root == area ? (root, root) : nil
    }
}
