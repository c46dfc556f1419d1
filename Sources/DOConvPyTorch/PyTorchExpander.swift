import DOConvCore

/// The reverse of the fold for PyTorch checkpoints (`doconv-expand`): each 4-D conv weight
/// `P.weight` (Cout, Cin/g, M, N) becomes the reference `DOConv2d`'s `P.W` (Cout, Cin/g,
/// Dmul) at its place in key order, followed by `P.D` (Cin, M*N, Dmul) and the identity
/// `P.d_diag`, so that the DO-Conv model loads the checkpoint with strict key and shape
/// matching and computes exactly the plain model's function (see `DOConvExpansion`).
/// A 1x1 conv becomes `P.W` (Cout, Cin/g, 1) alone. Every other entry stays; optimizer
/// state, whose slots were shaped for `weight`, is dropped.
public enum PyTorchExpander {
    /// One conv of the plain checkpoint and how it is expanded.
    struct Candidate {
        let dict: PickleObject
        /// "layer1.0.conv1." ("" for a bare conv's dict).
        let base: String
        let name: String
        let node: PickleObject
        let tensor: TorchTensor
        var geometry: DOConvGeometry
        /// The identity's key spelling (`d_diag`, or `D_diag` as some forks write it).
        var identityName = "d_diag"
    }

    /// What `--like` says of a layer: a DO-Conv layer there, with its groups (when it has a
    /// D to tell them), Dmul and identity spelling.
    struct TemplateLayer {
        let outChannels: Int
        let inChannelsPerGroup: Int
        let groups: Int?
        let depthMultiplier: Int
        let identityName: String?
    }

    public static func expand(path: String, options: ExpandOptions) throws(PyTorchError) -> PyTorchFoldResult {
        let files = try CheckpointSet.read(path: path)
        let template = try options.template.map { (template) throws(PyTorchError) in try templateLayers(template) }
        var summary = FoldSummary()
        (summary.parametersBefore, summary.bytesBefore) = try PyTorchFolder.totals(files)
        let candidates = try plan(files, options: options, template: template, rejected: &summary.rejected)
        var edits: [ObjectIdentifier: [String: [(String, PickleObject)]]] = [:]
        for (k, candidate) in candidates.enumerated() {
            let (entries, record) = try expand(candidate, files: files, options: options, seed: options.seed &+ UInt64(k))
            summary.layers.append(record)
            edits[ObjectIdentifier(candidate.dict), default: [:]][candidate.base + "weight"] = entries
        }
        for dict in StateDictDetector.dicts(in: files.root) {
            guard let edit = edits[ObjectIdentifier(dict)], case let .dict(entries, ordered) = dict.kind else { continue }
            dict.kind = .dict(entries: entries.flatMap { entry -> [(key: PickleObject, value: PickleObject)] in
                guard let key = entry.key.string, let replacement = edit[key] else { return [entry] }
                return replacement.map { (key: PickleObject(.string($0.0)), value: $0.1) }
            }, ordered: ordered)
        }
        files.redistribute()
        if !candidates.isEmpty {
            for key in PyTorchFolder.dropOptimizerState(files.root) {
                summary.notes.append("optimizer state dropped ('\(key)'): its slots were shaped for the plain weights")
            }
        }
        // Counted from the layers, not re-read: the tree now holds storages made here.
        (summary.parametersAfter, summary.bytesAfter) = (summary.parametersBefore, summary.bytesBefore)
        for candidate in candidates {
            let g = candidate.geometry
            let added = g.wCount + (g.kernelArea > 1 ? 2 * g.dCount : 0) - g.kernelCount
            summary.parametersAfter += added
            summary.bytesAfter += added * candidate.tensor.dtype.byteWidth
        }
        summary.notes += notes(candidates, options: options)
        return PyTorchFoldResult(summary: summary, files: files)
    }

    /// The convs to expand, each with its geometry; the others in `rejected` with the
    /// reason. Layers whose groups nothing settles are one error naming them all.
    static func plan(_ files: CheckpointSet, options: ExpandOptions, template: [String: TemplateLayer]?,
                     rejected: inout [RejectedCandidate]) throws(PyTorchError) -> [Candidate] {
        var candidates: [Candidate] = []
        var unsettled: [String] = []
        for place in StateDictDetector.dictsWithPaths(in: files.root, skippingOptimizerState: true) {
            guard let entries = place.dict.dictEntries else { continue }
            let keys = Set(entries.compactMap(\.key.string))
            for entry in entries {
                guard let key = entry.key.string, key == "weight" || key.hasSuffix(".weight"),
                      let tensor = try files.tensor(entry.value, key: key), tensor.shape.count == 4 else { continue }
                let base = String(key.dropLast("weight".count))
                let layer = base.isEmpty ? "weight" : String(base.dropLast())
                let name = place.path.isEmpty ? layer : place.path + "/" + layer
                func leave(_ reason: String) { rejected.append(RejectedCandidate(name: name, reason: reason, isDOConvLayer: false)) }
                if let object = place.enclosing {
                    // A pickled module's own code reads `weight`: renaming it would break that
                    // class. Named by where the module sits and its module path ("model/model.3").
                    let inner = place.path.dropFirst(object.path.count).split(separator: "/")
                        .filter { !["_modules", "_parameters", "_buffers"].contains($0) }.map(String.init) + (base.isEmpty ? [] : [layer])
                    let module = (object.path.isEmpty ? "" : object.path + "/") + inner.joined(separator: ".")
                    rejected.append(RejectedCandidate(name: module, reason: "inside a pickled \(object.className) object: expand its state_dict() instead", isDOConvLayer: false))
                    continue
                }
                guard tensor.dtype.elementType != nil else { leave("a \(tensor.dtype.rawValue) tensor, not a floating-point kernel"); continue }
                if keys.contains(base + "W") { leave("already a DO-Conv layer (\(base)W beside it)"); continue }
                if let refusal = options.selection.refusal(of: name) { leave(refusal); continue }
                let (cout, perGroup, m, n) = (tensor.shape[0], tensor.shape[1], tensor.shape[2], tensor.shape[3])
                let area = m * n
                var templateLayer: TemplateLayer?
                if let template {
                    guard let match = Self.match(layer, in: template) else { leave("not a DO-Conv layer in --like \(options.template ?? "")"); continue }
                    guard match.outChannels == cout, match.inChannelsPerGroup == perGroup else {
                        throw .expansion(path: files.path, reason: "layer '\(name)': --like's layer has W (\(match.outChannels), \(match.inChannelsPerGroup), Dmul), the weight is (\(cout), \(perGroup), \(m), \(n)): not this network's DO-Conv twin")
                    }
                    templateLayer = match
                }
                let groups: Int
                if let settled = (area > 1 ? templateLayer?.groups : nil) ?? options.givenGroups(of: name) {
                    groups = settled
                } else if area > 1, perGroup == 1, cout > 1 {
                    // (32, 1, 3, 3): a depthwise conv of 32 channels, or a conv of one.
                    unsettled.append(name)
                    continue
                } else {
                    groups = 1
                }
                guard groups >= 1, cout % groups == 0, perGroup.multipliedReportingOverflow(by: groups).overflow == false else {
                    throw .expansion(path: files.path, reason: "layer '\(name)': \(groups) groups do not divide its \(cout) output channels")
                }
                let depthMultiplier = templateLayer?.depthMultiplier ?? (area == 1 ? 1 : options.depthMultiplier ?? area)
                guard depthMultiplier >= area else {
                    throw .expansion(path: files.path, reason: "layer '\(name)': Dmul \(depthMultiplier) is below its M x N = \(m)x\(n): no DO-Conv layer starts as this conv exactly")
                }
                let geometry = DOConvGeometry(inChannels: perGroup * groups, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: depthMultiplier)
                do { try DOConvExpansion.checkSize(geometry) } catch { throw .inconsistentLayer(path: files.path, layer: name, reason: "\(error)") }
                for added in [base + "W", base + "D", base + (templateLayer?.identityName ?? "d_diag")] where keys.contains(added) {
                    throw .expansion(path: files.path, reason: "layer '\(name)': the checkpoint already holds '\(added)', which the expansion would write; pass --exclude \(name) to leave it")
                }
                var candidate = Candidate(dict: place.dict, base: base, name: name, node: entry.value, tensor: tensor, geometry: geometry)
                candidate.identityName = templateLayer?.identityName ?? "d_diag"
                candidates.append(candidate)
            }
        }
        if !unsettled.isEmpty { throw .expansion(path: files.path, reason: ExpandOptions.unsettledGroups(unsettled)) }
        return candidates
    }

    /// The template's layer for `layer`: the same path, or one path ending with the other
    /// (a `module.` or `model.` prefix on either side).
    static func match(_ layer: String, in template: [String: TemplateLayer]) -> TemplateLayer? {
        if let exact = template[layer] { return exact }
        let matches = template.filter { layer.hasSuffix("." + $0.key) || $0.key.hasSuffix("." + layer) }
        return matches.count == 1 ? matches.first?.value : nil
    }

    /// The DO-Conv layers of a freshly initialized DO-Conv model's weights, by module path:
    /// `P.W` (Cout, Cin/g, Dmul) with `P.D` (Cin, M*N, Dmul) when M*N > 1, read by shape.
    static func templateLayers(_ path: String) throws(PyTorchError) -> [String: TemplateLayer] {
        let files = try CheckpointSet.read(path: path)
        var layers: [String: TemplateLayer] = [:]
        for dict in StateDictDetector.dicts(in: files.root, skippingOptimizerState: true) {
            guard let entries = dict.dictEntries else { continue }
            var shapes: [String: [Int]] = [:]
            for entry in entries {
                guard let key = entry.key.string, let tensor = try files.tensor(entry.value, key: key) else { continue }
                shapes[key] = tensor.shape
            }
            for (key, w) in shapes where (key == "W" || key.hasSuffix(".W")) && w.count == 3 {
                let base = String(key.dropLast())
                let identity = ["d_diag", "D_diag"].first { shapes[base + $0] != nil }
                var groups: Int?
                if let d = shapes[base + "D"], d.count == 3, w[1] > 0, d[0] % w[1] == 0 { groups = d[0] / w[1] }
                layers[base.isEmpty ? "weight" : String(base.dropLast())] = TemplateLayer(outChannels: w[0], inChannelsPerGroup: w[1], groups: groups,
                                                                                         depthMultiplier: w[2], identityName: identity)
            }
        }
        guard !layers.isEmpty else { throw .expansion(path: path, reason: "--like: no DO-Conv layer (P.W beside P.D) in this checkpoint") }
        return layers
    }

    /// One conv's new entries (W, then D and the identity) and its record: the tensors made
    /// in the weight's type and device, then composed back in float64 from what is stored.
    static func expand(_ candidate: Candidate, files: CheckpointSet, options: ExpandOptions, seed: UInt64) throws(PyTorchError) -> ([(String, PickleObject)], FoldedLayer) {
        let g = candidate.geometry
        let tensor = candidate.tensor
        guard let type = tensor.dtype.elementType else { throw .tensor(path: files.path, key: candidate.base + "weight", reason: "not a floating-point tensor") }
        let kernel: [Double]
        do { kernel = try tensor.float64Values() ?? tensor.floatValues().map(Double.init) } catch {
            throw .tensor(path: files.path, key: candidate.base + "weight", reason: "\(error)")
        }
        let expansion: DOConvExpansion
        do { expansion = try DOConvExpansion(layout: .pytorch, geometry: g, kernel: kernel, seed: seed) } catch {
            throw .inconsistentLayer(path: files.path, layer: candidate.name, reason: "\(error)")
        }
        let checkpoint = files.file(holding: candidate.node)
        let location = checkpoint.storageLocation(of: candidate.node) ?? "cpu"
        func node(_ values: [Double], shape: [Int]) -> (PickleObject, TorchStorage) {
            let storage = TorchStorage(key: checkpoint.freshStorageKey(), dtype: tensor.dtype, count: values.count) { out in
                Self.encode(values, as: type, into: out)
            }
            let made = checkpoint.makeTensorNode(storage: storage, shape: shape, location: location)
            files.adopt(made, besides: candidate.node)
            return (made, storage)
        }
        let (mn, dmul) = (g.kernelArea, g.depthMultiplier)
        let (wNode, wStorage) = node(expansion.w, shape: [g.outChannels, g.inChannelsPerGroup, dmul])
        var entries = [(candidate.base + "W", wNode)]
        var dStorage: TorchStorage?
        if let d = expansion.d, let identity = expansion.identity {
            let made = node(d, shape: [g.inChannels, mn, dmul])
            dStorage = made.1
            entries.append((candidate.base + "D", made.0))
            entries.append((candidate.base + candidate.identityName, node(identity, shape: [g.inChannels, mn, dmul]).0))
        }
        var record = FoldedLayer(name: candidate.name, layout: .pytorch, geometry: g, elementType: type, stride: [], dilation: [],
                                 tolerance: options.tolerance ?? type.defaultTolerance)
        if options.verify {
            do {
                record.relativeError = try DOConvExpansion.relativeError(layout: .pytorch, geometry: g, storedW: Self.decode(wStorage, as: type),
                                                                         storedD: dStorage.map { Self.decode($0, as: type) }, kernelOIHW: kernel)
            } catch {
                throw .inconsistentLayer(path: files.path, layer: candidate.name, reason: "\(error)")
            }
        }
        return (entries, record)
    }

    static func encode(_ values: [Double], as type: ElementType, into out: UnsafeMutableRawBufferPointer) {
        if type == .float64 {
            values.withUnsafeBytes { out.copyMemory(from: $0) }
        } else {
            values.map(Float.init).withUnsafeBufferPointer { ElementCodec.encode($0, as: type, into: out) }
        }
    }

    static func decode(_ storage: TorchStorage, as type: ElementType) -> [Double] {
        if type == .float64 { return (0..<storage.count).map { storage.bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) } }
        return ((try? ElementCodec.decode(storage.bytes, as: type, count: storage.count)) ?? []).map(Double.init)
    }

    static func notes(_ candidates: [Candidate], options: ExpandOptions) -> [String] {
        guard !candidates.isEmpty else { return [] }
        var notes = ["load it into the DO-Conv model with load_state_dict(strict=True): P.weight is now P.W, beside P.D (zeros) and P.d_diag"]
        let wide = candidates.filter { $0.geometry.kernelArea > 1 && $0.geometry.depthMultiplier > $0.geometry.kernelArea }
        if !wide.isEmpty {
            notes.append("\(wide.count) layer\(wide.count == 1 ? "" : "s") with Dmul > M*N: W's columns beyond M*N hold small random values (seed \(options.seed)) where D + I is exactly 0, so the start is exact and every column of D gets a gradient")
        }
        if options.template == nil {
            let assumed = candidates.filter { $0.geometry.kernelArea > 1 && $0.geometry.groups == 1 && options.givenGroups(of: $0.name) == nil }.count
            if let note = ExpandOptions.assumedGroupsNote(assumed) { notes.append(note) }
        }
        return notes
    }
}
