import CONNXProto
import DOConvCore

/// Finds DO-Conv layers whose kernel the graph composes at inference:
/// `Einsum('ims,ois->oim')` then `Reshape` (PyTorch), `Einsum('msi,sio->mio')` then `Reshape`
/// and `Transpose` (Keras 3), with same-type `Cast` and `Identity` anywhere, and the 1x1 case
/// where the kernel is only a `Reshape` (and `Transpose`) of W.
///
/// Matching is exact: anything else is reported, never guessed at.
struct KernelCompositionDetector {
    let index: GraphIndex
    let constants: ConstantResolver
    let types: ElementTypeTrace

    init(index: GraphIndex, codec: TensorCodec) {
        self.index = index
        self.constants = ConstantResolver(index: index, codec: codec)
        self.types = ElementTypeTrace(index: index, path: codec.resolver.modelPath)
    }

    /// The einsum equations of the two layouts, letters renamed in order of appearance.
    static func layout(ofEquation equation: String) -> DOConvLayout? {
        var names: [Character: Character] = [:]
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        var canonical = ""
        for ch in equation where !ch.isWhitespace {
            if ch.isLetter {
                if names[ch] == nil { names[ch] = letters[min(names.count, 25)] }
                canonical.append(names[ch]!)
            } else {
                canonical.append(ch)
            }
        }
        switch canonical {
        case "abc,dac->dab": return .pytorch
        case "abc,bcd->acd": return .keras
        default: return nil
        }
    }

    func detect() throws(ONNXError) -> (matches: [KernelCompositionMatch], rejected: [RejectedCandidate]) {
        var matches: [KernelCompositionMatch] = []
        var rejected: [RejectedCandidate] = []
        var seenKernels = Set<String>()
        var explainedEinsums = Set<Int>()
        for node in index.nodes where node.isOp("Conv") {
            let inputs = node.inputs
            guard inputs.count >= 2, !seenKernels.contains(inputs[1]) else { continue }
            seenKernels.insert(inputs[1])
            do {
                // A kernel of the wrong element type is a broken graph, whatever computes it.
                try types.checkConvWeight(node)
                guard let path = tracePath(from: inputs[1]) else { continue }
                if let einsum = path.einsum { explainedEinsums.insert(einsum) }
                matches.append(try match(path: path, kernelValue: inputs[1]))
            } catch let failure {
                switch failure {
                case .invalid(let error): throw error
                case .rejected(let reason): rejected.append(RejectedCandidate(name: node.name.isEmpty ? inputs[1] : node.name, reason: reason))
                }
            }
        }
        for (k, node) in index.nodes.enumerated() where node.isOp("Einsum") && !explainedEinsums.contains(k) {
            guard let equation = node.stringAttribute("equation"), Self.layout(ofEquation: equation) != nil else { continue }
            rejected.append(RejectedCandidate(name: node.name, reason: "its result does not reach a Conv weight through Reshape/Transpose/Cast/Identity"))
        }
        return (matches, rejected)
    }

    /// The shape-only ops between a Conv weight and where it is computed.
    struct Path {
        /// Nodes from the one nearest the Einsum (or source) to the one feeding the Conv.
        var chain: [Int]
        var einsum: Int?
        /// The initializer at the root when there is no Einsum (the 1x1 case).
        var source: String?
    }

    /// Walks back from a Conv weight through Identity, Cast, Reshape and Transpose. Returns
    /// nil when the weight is not composed at all (a plain constant or a computed tensor).
    private func tracePath(from value: String) -> Path? {
        var chain: [Int] = []
        var current = value
        while let k = index.producer[current] {
            guard !chain.contains(k) else { return nil } // a cycle: not a constant kernel
            let node = index.nodes[k]
            guard node.isStandardDomain, let first = node.inputs.first else { return nil }
            switch node.opType {
            case "Identity", "Cast", "Reshape", "Transpose":
                chain.insert(k, at: 0)
                current = first
            case "Einsum":
                return Path(chain: chain, einsum: k, source: nil)
            default:
                return nil
            }
        }
        let reshapes = chain.filter { index.nodes[$0].opType == "Reshape" }
        guard index.initializers[current] != nil, !reshapes.isEmpty else { return nil }
        return Path(chain: chain, einsum: nil, source: current)
    }

    private func match(path: Path, kernelValue: String) throws(MatchFailure) -> KernelCompositionMatch {
        // Operands and layout.
        var layout: DOConvLayout
        var d: ConstantValue?
        var w: ConstantValue
        var nodes = Set(path.chain)
        var shape: [Int] = [] // the value's shape along the chain, once known
        // Shape initializers of the kernel path's Reshapes go with it once nothing reads them.
        var shapeInitializers = Set<String>()
        if let e = path.einsum {
            let einsum = index.nodes[e]
            guard let equation = einsum.stringAttribute("equation") else { throw .rejected("Einsum '\(einsum.name)' has no equation") }
            guard let known = Self.layout(ofEquation: equation) else {
                throw .rejected("Einsum '\(einsum.name)' computes '\(equation)', not a DO-Conv composition")
            }
            guard einsum.inputs.count == 2 else { throw .rejected("Einsum '\(einsum.name)' does not have two operands") }
            layout = known
            d = try constants.float(einsum.inputs[0])
            w = try constants.float(einsum.inputs[1])
            nodes.insert(e)
            if let d { shape = try einsumOutputShape(layout: layout, d: d.shape, w: w.shape, einsum: einsum, equation: equation) }
        } else {
            guard let source = path.source else { throw .rejected("no source") }
            w = try constants.float(source)
            // 1x1 layers: PyTorch reshapes W (Cout, Cin/g, 1); Keras W (1, Cin/g, Cout) and transposes.
            let transposes = path.chain.filter { index.nodes[$0].opType == "Transpose" }
            layout = transposes.isEmpty ? .pytorch : .keras
        }
        guard d == nil || d!.type == w.type else { throw .rejected("D and W have different element types") }
        let type = w.type

        // The chain from the composition to the Conv must be exactly the layout's reshape
        // (and transpose), with nothing else reading its intermediates.
        var current = path.einsum.map { index.nodes[$0].outputs.first ?? "" } ?? (path.source ?? "")
        if path.einsum == nil { shape = w.shape }
        var structural: [(op: String, value: [Int])] = []
        for k in path.chain {
            let node = index.nodes[k]
            let uses = index.uses(of: current)
            guard current == path.source || (uses.count == 1 && !index.isPinned(current)) else {
                throw .rejected("'\(current)' is also used outside the kernel composition")
            }
            switch node.opType {
            case "Identity": break
            case "Cast":
                guard node.intAttribute("to") == Int64(TensorCodec.dataType(of: type)) else {
                    throw .rejected("Cast '\(node.name)' changes the kernel's element type")
                }
            case "Reshape":
                guard node.inputs.count == 2 else { throw .rejected("Reshape '\(node.name)' has no shape input") }
                let target = try constants.int64(node.inputs[1])
                nodes.formUnion(target.nodes)
                shapeInitializers.formUnion(target.initializers)
                structural.append(("Reshape", target.values.map { Int(clamping: $0) }))
                if !shape.isEmpty {
                    shape = try constants.reshaped(shape, to: target.values, allowZero: node.intAttribute("allowzero") ?? 0, node: node)
                }
            case "Transpose":
                structural.append(("Transpose", (node.intsAttribute("perm") ?? []).map { Int(clamping: $0) }))
                if !shape.isEmpty { shape = try transposed(shape, node: node) }
            default:
                throw .rejected("unexpected \(node.opType) in the kernel path")
            }
            current = node.outputs.first ?? ""
        }

        // The Conv(s) reading the kernel.
        // Besides Conv weights, only Shape may read the kernel (the dynamo exporter builds a
        // zero bias from it): the folded kernel has the same shape.
        let uses = index.uses(of: kernelValue)
        let convs = uses.filter { $0.slot == 1 && index.nodes[$0.node].isOp("Conv") }.map(\.node)
        guard !index.isPinned(kernelValue), !convs.isEmpty,
              uses.allSatisfy({ ($0.slot == 1 && index.nodes[$0.node].isOp("Conv")) || index.nodes[$0.node].isOp("Shape") }) else {
            throw .rejected("the composed kernel '\(kernelValue)' is also used by something other than a Conv weight")
        }
        let groupsList = Set(convs.map { Int(clamping: index.nodes[$0].intAttribute("group") ?? 1) })
        guard groupsList.count == 1, let groups = groupsList.first, groups > 0 else {
            throw .rejected("the Convs sharing '\(kernelValue)' disagree on groups")
        }
        let conv = index.nodes[convs[0]]

        let geometry = try Self.geometry(layout: layout, d: d?.shape, w: w.shape, structural: structural, groups: groups)
        if let kernelShape = conv.intsAttribute("kernel_shape"), !kernelShape.isEmpty,
           kernelShape != [Int64(geometry.kernelHeight), Int64(geometry.kernelWidth)] {
            throw .rejected("Conv '\(conv.name)' has kernel_shape \(kernelShape), the composition makes \(geometry.kernelHeight)x\(geometry.kernelWidth)")
        }
        let layer: DOConvLayer
        do {
            layer = try DOConvLayer(layout: layout, geometry: geometry, d: d?.storage, w: w.storage)
        } catch {
            throw .rejected("\(error)")
        }

        var initializers = w.initializers.union(shapeInitializers)
        if let d { initializers.formUnion(d.initializers); nodes.formUnion(d.nodes) }
        nodes.formUnion(w.nodes)
        let name = Self.layerName(parameter: w.parameterName, conv: conv, kernelValue: kernelValue)
        // float64 operands, read exactly, fold in float64.
        let float64 = w.exact.flatMap { exactW in try? Float64Layer(layout: layout, geometry: geometry, d: d?.exact, w: exactW) }
        return KernelCompositionMatch(
            name: name, convNodes: convs, kernelValue: kernelValue, layer: layer, float64: d == nil || d?.exact != nil ? float64 : nil, elementType: type,
            nodes: nodes, initializers: initializers, external: w.external || (d?.external ?? false),
            kernelName: Self.kernelName(parameter: w.parameterName, layerName: name),
            stride: (conv.intsAttribute("strides") ?? [1, 1]).map { Int(clamping: $0) },
            dilation: (conv.intsAttribute("dilations") ?? [1, 1]).map { Int(clamping: $0) })
    }

    /// The shape of the DO-Conv einsum's result: (O, I, M) for 'ims,ois->oim', (M, I, O) for
    /// 'msi,sio->mio'. Operands whose ranks or shared dims disagree (other than a dim of 1,
    /// which broadcasts) make the graph invalid.
    private func einsumOutputShape(layout: DOConvLayout, d: [Int], w: [Int], einsum: NodeView, equation: String) throws(MatchFailure) -> [Int] {
        let what = "node \(GraphStructureCheck.describe(einsum)) ('\(equation)')"
        guard d.count == 3, w.count == 3 else {
            throw constants.invalid("\(what) has operands of rank \(d.count) and \(w.count) where its terms have 3 letters")
        }
        // Pairs of (D axis, W axis) that carry the same letter.
        let shared = layout == .pytorch ? [(0, 1), (2, 2)] : [(1, 0), (2, 1)]
        for (a, b) in shared where d[a] != w[b] && d[a] != 1 && w[b] != 1 {
            throw constants.invalid("\(what) combines D \(d) and W \(w), whose shared dims disagree (\(d[a]) and \(w[b]))")
        }
        return layout == .pytorch ? [w[0], max(d[0], w[1]), d[1]] : [d[0], max(d[2], w[1]), w[2]]
    }

    /// `shape` permuted as Transpose `node` permutes it (reversed without `perm`); a perm that
    /// is not a permutation of the axes makes the graph invalid.
    private func transposed(_ shape: [Int], node: NodeView) throws(MatchFailure) -> [Int] {
        guard let perm = node.intsAttribute("perm"), !perm.isEmpty else { return shape.reversed() }
        guard perm.count == shape.count, Set(perm) == Set((0..<Int64(shape.count))) else {
            throw constants.invalid("node \(GraphStructureCheck.describe(node)) has perm \(perm) for a rank-\(shape.count) input")
        }
        return perm.map { shape[Int($0)] }
    }

    /// Reads the layer geometry off the operand shapes and the reshape/transpose chain,
    /// requiring exactly the layout's form.
    static func geometry(layout: DOConvLayout, d: [Int]?, w: [Int], structural: [(op: String, value: [Int])], groups g: Int) throws(MatchFailure) -> DOConvGeometry {
        guard w.count == 3 else { throw .rejected("W has shape \(w), expected rank 3") }
        let limit = Int(Int32.max)
        let dims = w + (d ?? []) + structural.flatMap(\.value) + [g]
        guard dims.allSatisfy({ (0...limit).contains($0) }), g > 0 else {
            throw .rejected("a dimension or the group count is out of range")
        }
        let ops = structural.map(\.op)
        switch layout {
        case .pytorch:
            guard ops == ["Reshape"], let target = structural.first?.value, target.count == 4 else {
                throw .rejected("the kernel path is \(ops), expected one Reshape to a 4-D kernel")
            }
            let (cout, inPerGroup, m, n) = (target[0], target[1], target[2], target[3])
            if let d {
                // D (Cin, MN, Dmul), W viewed as (Cout/g, Cin, Dmul).
                guard d.count == 3, d[0] == w[1], d[2] == w[2] else {
                    throw .rejected("D \(d) and W \(w) do not fit einsum 'ims,ois->oim'")
                }
                guard d[1] == m * n, inPerGroup * g == d[0], w[0] * g == cout else {
                    throw .rejected("kernel \(target) does not match D \(d), W \(w) with \(g) groups")
                }
                return DOConvGeometry(inChannels: d[0], outChannels: cout, groups: g, kernelHeight: m, kernelWidth: n, depthMultiplier: d[2])
            }
            guard w == [cout, inPerGroup, 1], m == 1, n == 1 else {
                throw .rejected("reshape of W \(w) to \(target) is not a 1x1 DO-Conv kernel")
            }
            return DOConvGeometry(inChannels: inPerGroup * g, outChannels: cout, groups: g, kernelHeight: 1, kernelWidth: 1, depthMultiplier: 1)
        case .keras:
            guard ops == ["Reshape", "Transpose"], let target = structural.first?.value, target.count == 4,
                  structural[1].value == [3, 2, 0, 1] else {
                throw .rejected("the kernel path is \(ops), expected Reshape to (M, N, Cin/g, Cout) then Transpose [3,2,0,1]")
            }
            let (m, n, inPerGroup, cout) = (target[0], target[1], target[2], target[3])
            if let d {
                // D (MN, Dmul, Cin), W viewed as (Dmul, Cin, Cout/g).
                guard d.count == 3, d[1] == w[0], d[2] == w[1] else {
                    throw .rejected("D \(d) and W \(w) do not fit einsum 'msi,sio->mio'")
                }
                guard d[0] == m * n, inPerGroup * g == d[2], w[2] * g == cout else {
                    throw .rejected("kernel \(target) does not match D \(d), W \(w) with \(g) groups")
                }
                return DOConvGeometry(inChannels: d[2], outChannels: cout, groups: g, kernelHeight: m, kernelWidth: n, depthMultiplier: d[1])
            }
            guard w == [1, inPerGroup, cout], m == 1, n == 1 else {
                throw .rejected("reshape of W \(w) to \(target) is not a 1x1 DO-Conv kernel")
            }
            return DOConvGeometry(inChannels: inPerGroup * g, outChannels: cout, groups: g, kernelHeight: 1, kernelWidth: 1, depthMultiplier: 1)
        }
    }

    /// "layer1.0.conv1" for a parameter "layer1.0.conv1.W"; otherwise the Conv's name.
    static func layerName(parameter: String?, conv: NodeView, kernelValue: String) -> String {
        if let parameter, parameter.hasSuffix(".W"), parameter.count > 2 { return String(parameter.dropLast(2)) }
        if !conv.name.isEmpty { return conv.name }
        return kernelValue
    }

    /// The folded kernel's initializer name: the name a plain Conv's weight would have.
    static func kernelName(parameter: String?, layerName: String) -> String {
        if let parameter, parameter.hasSuffix(".W"), parameter.count > 2 { return String(parameter.dropLast(2)) + ".weight" }
        return layerName + ".weight"
    }
}
