import DOConvCore
import DOConvPyTorch
import DOConvVerify

/// A DO-Conv layer of one of ORIGINAL's dicts, as verify-equivalence reads it itself: from
/// the DOConv2d module's parameters (FORMATS.md) and the user's flags, never from the
/// fold's detector or from FOLDED, so that a detection or layout bug in the fold cannot
/// hide itself.
struct OriginalLayer {
    /// The module path P ("W" for a bare layer's dict).
    let prefix: String
    let wKey: String
    let dKey: String?
    let identityKey: String?
    let w: TorchTensor
    let d: TorchTensor?
    let identity: TorchTensor?
    let outChannels: Int
    let inChannels: Int
    let groups: Int
    let depthMultiplier: Int
    let kernelHeight: Int
    let kernelWidth: Int

    /// The keys the folded kernel may have: nn.Conv2d's `P.weight`, or `P.W` (--keep-names).
    var foldedKeys: [String] { [String(wKey.dropLast()) + "weight", wKey] }
    /// (Cout, Cin/g, M, N).
    var kernelShape: [Int] { [outChannels, inChannels / groups, kernelHeight, kernelWidth] }

    var description: String {
        let kind = groups == 1 ? "DO-Conv" : (groups == inChannels ? "DO-DConv" : "DO-GConv")
        return "\(kind) \(kernelHeight)x\(kernelWidth), groups \(groups), Dmul \(depthMultiplier) (pytorch)"
    }
}

/// verify-equivalence's own reading of the DO-Conv layers of a state dict, and their
/// kernels recomputed in float64 with plain loops.
enum CheckpointLayerReading {
    /// The layers of one dict: `P.W` (Cout, Cin/g, Dmul) with `P.D` (Cin, M*N, Dmul) and
    /// `P.d_diag` or `P.D_diag` (else the identity offset is implied), or `P.W` with Dmul 1
    /// and no D (a 1x1 layer). `name(prefix)` is the name `--only`/`--exclude` match.
    static func layers(in entries: [(key: PickleObject, value: PickleObject)], tensor: (PickleObject, String) throws -> TorchTensor?,
                       name: (String) -> String, options: VerifyOptions) throws -> [OriginalLayer] {
        var byKey: [String: PickleObject] = [:]
        for entry in entries { if let key = entry.key.string { byKey[key] = entry.value } }
        func floatTensor(_ key: String) throws -> TorchTensor? {
            guard let node = byKey[key], let found = try tensor(node, key) else { return nil }
            return [.float32, .float64, .float16, .bfloat16].contains(found.dtype) ? found : nil
        }
        var layers: [OriginalLayer] = []
        for entry in entries {
            guard let wKey = entry.key.string, wKey == "W" || wKey.hasSuffix(".W") else { continue }
            let base = String(wKey.dropLast())
            let prefix = base.isEmpty ? "W" : String(base.dropLast())
            guard let w = try floatTensor(wKey), w.shape.count == 3 else { continue }
            guard options.selection.refusal(of: name(prefix)) == nil else { continue }
            let (cout, perGroup, dmul) = (w.shape[0], w.shape[1], w.shape[2])
            guard let d = try floatTensor(base + "D") else {
                guard dmul == 1, perGroup > 0 else { continue }
                layers.append(OriginalLayer(prefix: prefix, wKey: wKey, dKey: nil, identityKey: nil, w: w, d: nil, identity: nil,
                                            outChannels: cout, inChannels: perGroup, groups: 1, depthMultiplier: 1, kernelHeight: 1, kernelWidth: 1))
                continue
            }
            // A layer whose tensors disagree cannot have been folded: as doconv-fold, refuse.
            guard d.shape.count == 3, d.shape[2] == dmul, perGroup > 0, d.shape[0] % perGroup == 0, d.shape[0] >= perGroup,
                  cout % (d.shape[0] / perGroup) == 0, d.shape[1] > 0 else {
                throw VerifyError("layer '\(prefix)': D \(d.shape) and W \(w.shape) disagree: DOConv2d's D is (Cin, M*N, Dmul) and W (Cout, Cin/g, Dmul)")
            }
            guard d.dtype == w.dtype else {
                throw VerifyError("layer '\(prefix)': D (\(d.dtype.rawValue)) and W (\(w.dtype.rawValue)) disagree in element type")
            }
            let (cin, area) = (d.shape[0], d.shape[1])
            let groups = cin / perGroup
            let (m, n) = try kernelSize(prefix: prefix, area: area, options: options)
            let identityKey = [base + "d_diag", base + "D_diag"].first { byKey[$0] != nil }
            let identity = try identityKey.flatMap { try floatTensor($0) }
            if let identityKey, identity?.shape != d.shape {
                throw VerifyError("layer '\(prefix)': \(identityKey) \(identity?.shape ?? []) and D \(d.shape) disagree in shape")
            }
            layers.append(OriginalLayer(prefix: prefix, wKey: wKey, dKey: base + "D", identityKey: identityKey, w: w, d: d, identity: identity,
                                        outChannels: cout, inChannels: cin, groups: groups, depthMultiplier: dmul, kernelHeight: m, kernelWidth: n))
        }
        return layers
    }

    /// M x N from `--kernel-size` (by P, or by P without a container prefix), else the
    /// square root of M*N; a layer neither gives is an error naming the flag.
    static func kernelSize(prefix: String, area: Int, options: VerifyOptions) throws -> (Int, Int) {
        var given = options.kernelSizes[prefix]
        if given == nil {
            let tails = options.kernelSizes.keys.filter { prefix.hasSuffix("." + $0) }.sorted { $0.count > $1.count }
            given = tails.first.flatMap { options.kernelSizes[$0] }
        }
        return try KernelSizeReading.size(layer: "layer '\(prefix)'", area: area, given: given, given: "--kernel-size",
                                          otherwise: "pass --kernel-size \(prefix)=MxN as to doconv-fold")
    }

    /// The layer's kernel in float64, in (Cout, Cin/g, M, N) order, by the DOConv2d module's
    /// own arithmetic written out: Dt = D + I; Wr = W viewed as (Cout/g, Cin, Dmul);
    /// K = einsum('ims,ois->oim', Dt, Wr) viewed as (Cout, Cin/g, M, N). The views only
    /// reinterpret memory, so flat indexes say it all.
    static func kernel(of layer: OriginalLayer) throws -> [Double] {
        let w = try values(of: layer.w)
        guard let d = layer.d else { return w } // 1x1: the kernel is W reshaped
        var dt = try values(of: d)
        let (cin, mn, dmul) = (layer.inChannels, layer.kernelHeight * layer.kernelWidth, layer.depthMultiplier)
        if let identity = layer.identity {
            let offset = try values(of: identity)
            for k in dt.indices { dt[k] += offset[k] }
        } else {
            // The identity offset a fork does not store: 1 where s mod MN == q, for s below
            // MN * floor(Dmul / MN).
            for i in 0..<cin {
                for s in 0..<(mn * (dmul / mn)) { dt[(i * mn + s % mn) * dmul + s] += 1 }
            }
        }
        let outPerGroupRows = layer.outChannels / layer.groups
        var kernel = [Double](repeating: 0, count: outPerGroupRows * cin * mn)
        for o in 0..<outPerGroupRows {
            for i in 0..<cin {
                let wRow = (o * cin + i) * dmul
                for q in 0..<mn {
                    let dRow = (i * mn + q) * dmul
                    var sum = 0.0
                    for s in 0..<dmul { sum += dt[dRow + s] * w[wRow + s] }
                    kernel[(o * cin + i) * mn + q] = sum
                }
            }
        }
        return kernel
    }

    /// A float tensor's values in its logical order, exactly, as float64.
    static func values(of tensor: TorchTensor) throws -> [Double] {
        guard let type = tensor.dtype.elementType else { throw VerifyError("a \(tensor.dtype.rawValue) tensor is not a float kernel") }
        return try tensor.withLogicalBytes { bytes in try StoredKernelCheck.doubles(bytes, count: tensor.count, type: type) }
    }
}
