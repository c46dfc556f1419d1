#if canImport(Glibc)
import Glibc
#endif
import CONNXProto
import DOConvCore

/// `--reparam`: merges each block of linear branches (or chain of linear stages) into one
/// Conv, in rounds until nothing merges (a merged block can complete the next one: DBB's
/// 1x1 -> kxk branch, then the sum it belongs to). Each merge is probed against the block's
/// own stages before the graph changes.
struct Reparameterizer {
    let model: ONNXModel
    let options: FoldOptions

    /// Rounds are few in real models (a merged chain, then its sum); this bounds hostile ones.
    static let maxRounds = 16

    /// The blocks merged, and the candidates left with their reasons (from the last round).
    func run() throws(ONNXError) -> (merged: [ReparameterizedBlock], rejected: [RejectedCandidate]) {
        var merged: [ReparameterizedBlock] = []
        var rejected: [RejectedCandidate] = []
        for _ in 0..<Self.maxRounds {
            let index = GraphIndex(graph: model.graph)
            let detection = try LinearBlockDetector(index: index, codec: model.codec).detect()
            rejected = detection.rejected
            var edit = GraphEdit()
            var taken = index.allNames
            var round: [ReparameterizedBlock] = []
            for block in detection.blocks {
                switch rewrite(block, index: index, taken: &taken, edit: &edit) {
                case .success(let record): round.append(record)
                case .failure(let refusal): rejected.append(RejectedCandidate(name: block.name, reason: refusal.description))
                }
            }
            // A failed probe stops here: the caller refuses to write, nothing half-changed matters.
            merged += round
            if edit.isEmpty || round.contains(where: { !$0.verified }) { break }
            GraphRewrite.apply(edit, to: model, index: index)
        }
        return (merged, rejected)
    }

    /// Merges one block into its first node that reads the block's input (which comes before
    /// every reader of the block's output), probes the stored result, and records the edit.
    private func rewrite(_ block: LinearBlockMatch, index: GraphIndex, taken: inout Set<String>, edit: inout GraphEdit) -> Result<ReparameterizedBlock, ReparamRefusal> {
        let conv: AffineConv
        do { conv = try block.block.merged() } catch { return .failure(error) }
        if conv.hasPadding, conv.padValue != nil {
            return .failure(ReparamRefusal("the merged conv would pad its input with values, which an ONNX Conv cannot"))
        }
        // A chain is merged only when that does not cost more (the detector splits chains so).
        if block.adds.isEmpty, let refusal = LinearBlockDetector.chainRefusal(block.block.branches[0]) { return .failure(refusal) }
        guard let host = block.branchNodes.compactMap(\.first).first(where: { index.nodes[$0].inputs.first == block.source }) else {
            return .failure(ReparamRefusal("no node of the block reads its input"))
        }
        let hostNode = index.nodes[host]
        let base = (hostNode.name.isEmpty ? block.output : hostNode.name) + ".reparam"
        let shape = [conv.outChannels, conv.inChannelsPerGroup, conv.kernelSize[0], conv.kernelSize[1]]
        let kernelName = GraphRewrite.freshName(base + ".weight", taken: &taken)
        let biasName = GraphRewrite.freshName(base + ".bias", taken: &taken)
        let kernel = TensorCodec.makeTensor(name: kernelName, shape: shape, type: block.elementType, doubles: conv.kernel)
        let bias = TensorCodec.makeTensor(name: biasName, shape: [conv.outChannels], type: block.elementType, doubles: conv.bias)

        var relativeError: Double?
        if options.verify {
            let stored = (Self.storedValues(kernel, block.elementType), Self.storedValues(bias, block.elementType))
            do {
                relativeError = try LinearBlockProbe.relativeError(branches: try block.block.probeBranches(), merged: conv, stored: stored,
                                                                   images: options.probePatches, seed: options.seed)
            } catch {
                Proto.free(kernel)
                Proto.free(bias)
                return .failure(error)
            }
        }
        edit.newInitializers.append((kernel, block.external))
        edit.newInitializers.append((bias, false))
        let output = block.output
        let source = block.source
        edit.nodeChanges.append((host, { node in
            NodeEdit.makeConv(node, inputs: [source, kernelName, biasName], output: output, conv: conv)
        }))
        let others = block.nodes.subtracting([host])
        edit.removedNodes.formUnion(others)
        // Values inside the block no longer exist; the output is now the host's.
        for k in block.nodes { edit.removedValues.formUnion(index.nodes[k].outputs.filter { !$0.isEmpty && $0 != output }) }
        edit.candidateNodes.formUnion(block.constantNodes)
        edit.candidateInitializers.formUnion(block.constantInitializers)
        return .success(ReparameterizedBlock(
            name: block.name, branches: zip(block.branchNodes, block.branchFactors).map { nodes, factor in
                (nodes.isEmpty ? "identity" : nodes.map { Self.describe(index.nodes[$0], index: index) }.joined(separator: " -> ")) + Self.describe(factor: factor)
            },
            kernelSize: conv.kernelSize, groups: conv.groups, nodesReplaced: block.nodes.count, relativeError: relativeError,
            tolerance: options.tolerance ?? block.elementType.defaultTolerance))
    }

    /// "Conv 3x3", "BatchNormalization", "AveragePool 3x3" (a Conv's size from its weight when
    /// it spells out no kernel_shape).
    static func describe(_ node: NodeView, index: GraphIndex) -> String {
        switch node.opType {
        case "Conv", "AveragePool":
            var shape = node.intsAttribute("kernel_shape")
            if shape == nil, node.opType == "Conv", node.inputs.count > 1, let weight = index.initializers[node.inputs[1]], weight.pointee.n_dims > 2 {
                shape = Array(Proto.elements(weight.pointee.dims, weight.pointee.n_dims).dropFirst(2))
            }
            let text = shape.map { $0.map(String.init).joined(separator: "x") }
            return node.opType + (text.map { " " + $0 } ?? "")
        case "ScatterND", "Pad": return "Pad (per-channel value)"
        default: return node.opType
        }
    }

    /// "", " x -1", " x 0.5", " x per-channel scale", " x -(per-channel scale)".
    static func describe(factor: [Double]) -> String {
        if factor.allSatisfy({ $0 == 1 }) { return "" }
        if Set(factor).count == 1 { return " x \(factor[0] == -1 ? "-1" : String(describing: factor[0]))" }
        return factor.allSatisfy({ $0 <= 0 }) ? " x -(per-channel scale)" : " x per-channel scale"
    }

    /// A new tensor's values as written (after rounding to its element type).
    static func storedValues(_ tensor: UnsafeMutablePointer<Onnx__TensorProto>, _ type: ElementType) -> [Double] {
        let raw = UnsafeRawBufferPointer(start: tensor.pointee.raw_data.data, count: tensor.pointee.raw_data.len)
        if type == .float64 { return (0..<raw.count / 8).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) } }
        return KernelStorage.withStoredValues(raw, as: type) { $0.map(Double.init) }
    }
}

extension NodeEdit {
    /// Turns `node` into a standard Conv of `conv`'s geometry, keeping its name.
    static func makeConv(_ node: UnsafeMutablePointer<Onnx__NodeProto>, inputs: [String], output: String, conv: AffineConv) {
        Proto.replace(&node.pointee.op_type, with: "Conv")
        free(node.pointee.domain)
        node.pointee.domain = nil
        truncateInputs(node, to: 0)
        for (slot, name) in inputs.enumerated() { setInput(node, slot, to: name) }
        while node.pointee.n_output > 1 {
            node.pointee.n_output -= 1
            free(node.pointee.output[node.pointee.n_output])
        }
        setOutput(node, 0, to: output)
        for attribute in Proto.elements(node.pointee.attribute, node.pointee.n_attribute) { if let attribute { Proto.free(attribute) } }
        ProtoMemory.free(node.pointee.attribute)
        node.pointee.attribute = nil
        node.pointee.n_attribute = 0
        let attributes: [(String, [Int])] = [("kernel_shape", conv.kernelSize), ("strides", conv.stride), ("pads", conv.pads), ("dilations", conv.dilation)]
        for (name, values) in attributes { appendInts(node, name, values.map(Int64.init)) }
        setInt(node, "group", Int64(conv.groups))
    }

    /// Appends an INTS attribute.
    static func appendInts(_ node: UnsafeMutablePointer<Onnx__NodeProto>, _ name: String, _ values: [Int64]) {
        let attribute = Proto.make { (a: UnsafeMutablePointer<Onnx__AttributeProto>) in
            onnx__attribute_proto__init(a)
            a.pointee.name = Proto.duplicate(name)
            a.pointee.has_type = 1
            a.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS
            let ints = malloc(max(1, values.count) * 8)!.assumingMemoryBound(to: Int64.self)
            for (k, value) in values.enumerated() { ints[k] = value }
            a.pointee.ints = ints
            a.pointee.n_ints = values.count
        }
        node.pointee.attribute = Proto.appending(attribute, to: node.pointee.attribute, count: node.pointee.n_attribute)
        node.pointee.n_attribute += 1
    }
}
