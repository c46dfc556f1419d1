import CONNXProto
import DOConvCore

/// A DO-Conv layer in feature-composition form (paper Fig. 3a/4a): a depthwise Conv that
/// maps each input channel to Dmul features, then a 1x1 Conv that combines them.
struct FeatureCompositionMatch {
    var name: String
    var depthwise: Int
    var pointwise: Int
    /// D[c, m, s] = Wd[c * Dmul + s, m] and W[o, c, s] = Wp[o, c * Dmul + s], in a layout
    /// whose D rows meet the conv's real input channels.
    var layer: DOConvLayer
    /// The same layer read exactly, for float64 pairs.
    var float64: Float64Layer?
    /// b' = Wp * bd + bp in float64, nil when neither conv has a bias.
    var bias: [Double]?
    var elementType: ElementType
    var initializers: Set<String>
    var external: Bool
    var stride: [Int]
    var dilation: [Int]

    var detected: DetectedLayer {
        var detected = DetectedLayer(name: name, form: .featureComposition, layer: layer, elementType: elementType, stride: stride, dilation: dilation)
        detected.float64 = float64
        return detected
    }
}

/// Finds depthwise + 1x1 Conv pairs that fold into one conv: the depthwise output feeds only
/// the 1x1 conv (no activation or norm between, not a graph output), the 1x1 conv has stride
/// 1 and no padding, and Dmul >= M*N (with Dmul < M*N it is an ordinary separable conv,
/// cheaper as it is, folded only on request).
struct FeatureCompositionDetector {
    let index: GraphIndex
    let codec: TensorCodec
    let foldSeparable: Bool

    /// Ops that, standing between the two convs, make a pair unfoldable (reported, so users
    /// see why an apparent DO-Conv stayed).
    static let blockers: Set<String> = ["Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "BatchNormalization", "Mul", "Add"]

    func detect() throws(ONNXError) -> (matches: [FeatureCompositionMatch], rejected: [RejectedCandidate]) {
        var matches: [FeatureCompositionMatch] = []
        var rejected: [RejectedCandidate] = []
        for (p, node) in index.nodes.enumerated() where node.isOp("Conv") {
            guard let mid = node.inputs.first, let d = index.producer[mid], isPointwise(node) else { continue }
            let producer = index.nodes[d]
            if producer.isStandardDomain, Self.blockers.contains(producer.opType),
               let before = producer.inputs.first, let conv = index.producer[before], isDepthwise(index.nodes[conv]) {
                rejected.append(RejectedCandidate(name: node.name, reason: "\(producer.opType) stands between the depthwise and 1x1 convs"))
                continue
            }
            guard producer.isOp("Conv"), isDepthwise(producer) else { continue }
            guard index.uses(of: mid).count == 1, !index.isPinned(mid) else {
                rejected.append(RejectedCandidate(name: node.name, reason: "the depthwise output '\(mid)' is also used elsewhere"))
                continue
            }
            do {
                matches.append(try match(depthwise: d, pointwise: p))
            } catch let failure {
                switch failure {
                case .invalid(let error): throw error
                case .rejected(let reason): rejected.append(RejectedCandidate(name: node.name, reason: reason))
                }
            }
        }
        return (matches, rejected)
    }

    /// A Conv with a constant (Cout, Cmid/G, 1, 1) weight, stride 1 and no padding.
    private func isPointwise(_ node: NodeView) -> Bool {
        let inputs = node.inputs
        guard inputs.count >= 2, let weight = index.initializers[inputs[1]],
              Proto.elements(weight.pointee.dims, weight.pointee.n_dims).map({ Int($0) }).suffix(2) == [1, 1] else { return false }
        let strides = node.intsAttribute("strides") ?? []
        let pads = node.intsAttribute("pads") ?? []
        let autoPad = node.stringAttribute("auto_pad") ?? "NOTSET"
        return strides.allSatisfy { $0 == 1 } && pads.allSatisfy { $0 == 0 } && (autoPad == "NOTSET" || autoPad == "VALID")
    }

    /// A Conv with group = Cin and a constant (Cin * Dmul, 1, M, N) weight.
    private func isDepthwise(_ node: NodeView) -> Bool {
        let inputs = node.inputs
        guard node.isOp("Conv"), inputs.count >= 2, let weight = index.initializers[inputs[1]] else { return false }
        let dims = Proto.elements(weight.pointee.dims, weight.pointee.n_dims).map { Int($0) }
        let group = Int(clamping: node.intAttribute("group") ?? 1)
        return dims.count == 4 && dims[1] == 1 && group > 1 && dims[0] % group == 0
    }

    private func match(depthwise d: Int, pointwise p: Int) throws(MatchFailure) -> FeatureCompositionMatch {
        let (dw, pw) = (index.nodes[d], index.nodes[p])
        let constants = ConstantResolver(index: index, codec: codec)
        let wd = try constants.float(dw.inputs[1])
        let wp = try constants.float(pw.inputs[1])
        let bd = dw.inputs.count > 2 && !dw.inputs[2].isEmpty ? try constants.float(dw.inputs[2]) : nil
        let bp = pw.inputs.count > 2 && !pw.inputs[2].isEmpty ? try constants.float(pw.inputs[2]) : nil
        guard wd.type == wp.type, bd.map({ $0.type == wd.type }) ?? true, bp.map({ $0.type == wd.type }) ?? true else {
            throw .rejected("the two convs store different element types")
        }
        guard wd.shape.count == 4, wp.shape.count == 4 else { throw .rejected("the convs' weights are not 4-D") }
        let cin = Int(clamping: dw.intAttribute("group") ?? 1)
        let (m, n) = (wd.shape[2], wd.shape[3])
        let dmul = wd.shape[0] / cin
        let groups = Int(clamping: pw.intAttribute("group") ?? 1)
        let cout = wp.shape[0]
        guard groups > 0, cin % groups == 0, cout % groups == 0, wp.shape[1] * groups == cin * dmul else {
            throw .rejected("the 1x1 conv's \(groups) groups split the depthwise features of one input channel")
        }
        if dmul < m * n && !foldSeparable {
            let before = cin * dmul * m * n + cout * (cin * dmul / groups)
            let after = cout * (cin / groups) * m * n
            let ratio = Double(after) / Double(max(before, 1))
            throw .rejected("separable conv with Dmul \(dmul) < \(m)x\(n): folding would multiply its MACs by \(String(ratioText(ratio))) (--fold-separable)")
        }
        let geometry = DOConvGeometry(inChannels: cin, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
        let layer = try Self.layer(geometry: geometry, depthwise: wd.values, pointwise: wp.values)
        var float64: Float64Layer?
        if wd.type == .float64, let exactD = wd.exact, let exactW = wp.exact {
            let (d, w) = Self.operands(layout: layer.layout, geometry: geometry, depthwise: exactD, pointwise: exactW)
            float64 = try? Float64Layer(layout: layer.layout, geometry: geometry, d: d, w: w)
        }
        var initializers = wd.initializers.union(wp.initializers)
        for bias in [bd, bp].compactMap({ $0 }) { initializers.formUnion(bias.initializers) }
        return FeatureCompositionMatch(
            name: dw.name.isEmpty ? pw.name : dw.name, depthwise: d, pointwise: p, layer: layer, float64: float64,
            bias: Self.foldedBias(geometry: geometry, pointwise: wp.doubles, depthwiseBias: bd?.doubles, pointwiseBias: bp?.doubles),
            elementType: wd.type, initializers: initializers, external: wd.external || wp.external,
            stride: (dw.intsAttribute("strides") ?? [1, 1]).map { Int(clamping: $0) },
            dilation: (dw.intsAttribute("dilations") ?? [1, 1]).map { Int(clamping: $0) })
    }

    private func ratioText(_ ratio: Double) -> String {
        let tenths = (ratio * 10).rounded() / 10
        return "\(tenths)"
    }

    /// The pair as a DOConvLayer in whichever layout pairs each output with its real input
    /// channels (the frameworks' reshapes reinterpret memory; a pair does not).
    static func layer(geometry g: DOConvGeometry, depthwise wd: [Float], pointwise wp: [Float]) throws(MatchFailure) -> DOConvLayer {
        let (cout, inPerGroup) = (g.outChannels, g.inChannelsPerGroup)
        for layout in [DOConvLayout.pytorch, .keras] {
            let (d, w) = operands(layout: layout, geometry: g, depthwise: wd, pointwise: wp)
            let layer: DOConvLayer
            do { layer = try DOConvLayer(layout: layout, geometry: g, d: d, w: w) } catch { throw .rejected("\(error)") }
            let real = { (o: Int, c: Int) in (o / g.outChannelsPerGroup) * inPerGroup + c }
            let faithful = (0..<cout).allSatisfy { o in (0..<inPerGroup).allSatisfy { c in layer.dChannel(output: o, localInput: c) == real(o, c) } }
            if faithful { return layer }
        }
        throw .rejected("\(g.groups) groups over \(g.inChannels) channels: no DO-Conv layout pairs every output with its own input channels")
    }

    /// The pair's depthwise and 1x1 weights as D and W of `layout`:
    /// D[c, m, s] = Wd[c * Dmul + s, m] and W[o, c, s] = Wp[o, c * Dmul + s].
    static func operands<T: BinaryFloatingPoint>(layout: DOConvLayout, geometry g: DOConvGeometry, depthwise wd: [T], pointwise wp: [T]) -> (d: [T], w: [T]) {
        let (mn, dmul, cin, cout, inPerGroup) = (g.kernelArea, g.depthMultiplier, g.inChannels, g.outChannels, g.inChannelsPerGroup)
        var d = [T](repeating: 0, count: g.dCount)
        var w = [T](repeating: 0, count: g.wCount)
        for c in 0..<cin {
            for s in 0..<dmul {
                for m in 0..<mn {
                    let value = wd[(c * dmul + s) * mn + m]
                    switch layout {
                    case .pytorch: d[(c * mn + m) * dmul + s] = value
                    case .keras: d[(m * dmul + s) * cin + c] = value
                    }
                }
            }
        }
        for o in 0..<cout {
            for c in 0..<inPerGroup {
                for s in 0..<dmul {
                    let value = wp[o * inPerGroup * dmul + c * dmul + s]
                    switch layout {
                    case .pytorch: w[(o * inPerGroup + c) * dmul + s] = value
                    case .keras: w[(s * inPerGroup + c) * cout + o] = value
                    }
                }
            }
        }
        return (d, w)
    }

    /// b'[o] = bp[o] + sum over the group's features j of Wp[o, j] * bd[j], in float64.
    static func foldedBias(geometry g: DOConvGeometry, pointwise wp: [Double], depthwiseBias bd: [Double]?, pointwiseBias bp: [Double]?) -> [Double]? {
        guard bd != nil || bp != nil else { return nil }
        let features = g.inChannelsPerGroup * g.depthMultiplier
        return (0..<g.outChannels).map { o in
            var sum = bp?[o] ?? 0
            if let bd {
                let first = (o / g.outChannelsPerGroup) * features
                for j in 0..<features { sum += wp[o * features + j] * bd[first + j] }
            }
            return sum
        }
    }
}
