import DOConvGraph
import DOConvVerify

/// `StructureDiff.compare` in named steps: the state the steps share (which ORIGINAL nodes
/// FOLDED's match, what the replacements explain and absorb) and the comparison they fill.
struct StructureWalk {
    let original: Graph
    let folded: Graph
    let diff: StructureDiff
    let oProducers: [String: Int]
    var oConsumers: [String: [Int]] = [:]
    let oOutputs: Set<String>
    /// ORIGINAL's node outputs that depend on no graph input.
    let oConstants: Set<String>
    var result = StructureComparison()

    var matchedOriginal = Set<Int>()
    var lastMatched = -1
    var orderReported = false
    /// ORIGINAL value -> FOLDED initializer that replaced it.
    var replacedWeights: [String: String] = [:]
    /// FOLDED initializers that replacements explain.
    var explainedNew = Set<String>()
    /// ORIGINAL nodes a replacement absorbs.
    var allowedRemoval = Set<Int>()
    /// ORIGINAL values whose constant ancestry may go.
    var constantRoots: [String] = []
    /// (FOLDED node, ORIGINAL node) pairs whose inputs are checked once all are matched.
    var pendingInputChecks: [(f: Int, o: Int)] = []
    /// ORIGINAL's initializers upstream of replaced kernels (set by `checkRemovedNodes`).
    var removableInitializers = Set<String>()
    /// Results of dropped identity arithmetic -> the operand FOLDED reads instead.
    var identityAliases: [String: String] = [:]

    init(diff: StructureDiff) {
        self.diff = diff
        original = diff.original
        folded = diff.folded
        oProducers = original.producers
        for (k, node) in original.nodes.enumerated() {
            for input in node.inputs where !input.isEmpty { oConsumers[input, default: []].append(k) }
        }
        oOutputs = Set(original.outputs.map(\.name))
        // Node outputs computed from initializers and constants alone, in one pass over the
        // (topologically ordered) nodes.
        var constants = Set<String>()
        let initializers = diff.original.initializers
        for node in diff.original.nodes where node.inputs.allSatisfy({ $0.isEmpty || initializers[$0] != nil || constants.contains($0) }) {
            constants.formUnion(node.outputs.filter { !$0.isEmpty })
        }
        oConstants = constants
    }

    mutating func differ(_ message: String) { result.differences.append(message) }

    /// Model level: opsets, metadata, the graph's name and outputs.
    mutating func compareModel() {
        if original.opsets != folded.opsets {
            differ("opset imports changed: \(StructureDiff.describe(original.opsets)) -> \(StructureDiff.describe(folded.opsets))")
        }
        let oMeta = original.metadata.filter { $0.key != StructureDiff.foldMetadataKey }
        let fMeta = folded.metadata.filter { $0.key != StructureDiff.foldMetadataKey }
        if oMeta.count != fMeta.count || !zip(oMeta, fMeta).allSatisfy({ $0 == $1 }) {
            let oKeys = Dictionary(oMeta.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            let fKeys = Dictionary(fMeta.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            let changed = Set(oKeys.keys).union(fKeys.keys).filter { oKeys[$0] != fKeys[$0] }.sorted()
            differ("metadata changed" + (changed.isEmpty ? " (order)" : ": " + changed.map { "'\($0)'" }.joined(separator: ", ")))
        }
        if folded.metadata.contains(where: { $0.key == StructureDiff.foldMetadataKey }) {
            result.notes.append("FOLDED records the fold in metadata '\(StructureDiff.foldMetadataKey)'")
        }
        if original.name != folded.name { differ("graph name changed: '\(original.name)' -> '\(folded.name)'") }

        // Outputs must be identical.
        if original.outputs != folded.outputs {
            let o = original.outputs.map(\.name)
            let f = folded.outputs.map(\.name)
            if o != f { differ("graph outputs changed: \(o) -> \(f)") } else {
                for (a, b) in zip(original.outputs, folded.outputs) where a != b {
                    differ("graph output '\(a.name)' changed its declared type or shape: \(StructureDiff.describe(a)) -> \(StructureDiff.describe(b))")
                }
            }
        }
    }

    /// FOLDED's node `f`, matched to ORIGINAL's by its first output: a Conv standing for a
    /// chain or a linear block, or the same node (a Conv may read a new, folded kernel).
    mutating func match(folded f: Int) {
        let node = folded.nodes[f]
        let key = node.outputs.first { !$0.isEmpty } ?? ""
        guard let o = oProducers[key] else {
            differ("node \(StructureDiff.label(node)) of FOLDED does not exist in ORIGINAL (no node there produces '\(key)')")
            return
        }
        let oNode = original.nodes[o]
        if matchedOriginal.contains(o) {
            differ("node \(StructureDiff.label(node)) of FOLDED duplicates ORIGINAL's \(StructureDiff.label(oNode))")
            return
        }
        if o < lastMatched, !orderReported {
            differ("node order changed: \(StructureDiff.label(node)) now comes after nodes it preceded")
            orderReported = true
        }
        lastMatched = max(lastMatched, o)

        if matchChain(node, folded: f, original: o) || matchLinearBlock(node, folded: f, original: o) { return }
        matchSame(node, folded: f, original: o)
    }

    /// A Conv standing for a chain of ORIGINAL nodes (pair and/or BatchNormalization).
    mutating func matchChain(_ node: Node, folded f: Int, original o: Int) -> Bool {
        let oNode = original.nodes[o]
        guard node.opType == "Conv", node.isStandardDomain, node.outputs == oNode.outputs,
              let chain = StructureDiff.chain(ending: o, in: original, consumers: oConsumers, outputs: oOutputs, dataInput: node.inputs.first ?? ""),
              chain.count > 1 else { return false }
        var replacement = ReplacedConv(foldedNode: f, chain: chain, originalWeight: original.nodes[chain[0]].inputs[safe: 1] ?? "",
                                       foldedWeight: node.inputs[safe: 1] ?? "", foldedBias: node.inputs[safe: 2] ?? "")
        replacement.batchNormFlags = chain.map { original.nodes[$0].opType == "BatchNormalization" }
        let head = original.nodes[chain[0]]
        let isPair = replacement.isPair
        // Attributes: the head conv's, except a pair takes the 1x1 conv's group.
        var expected = head.attributes.filter { !(isPair && $0.name == "group") }
        if isPair {
            let group = original.nodes[chain[1]][attribute: "group"] ?? .int(1)
            if group != .int(1) || node[attribute: "group"] != nil { expected.append(("group", group)) }
        }
        let kernelShape = folded.initializers[replacement.foldedWeight].flatMap { $0.rank == 4 ? Array($0.shape[2...]) : nil }
        result.differences += StructureDiff.attributeDifferences(expected: StructureDiff.convAttributesWithoutDefaults(expected, kernelShape: kernelShape),
                                                                 actual: StructureDiff.convAttributesWithoutDefaults(node.attributes, kernelShape: kernelShape),
                                                                 label: StructureDiff.label(node))
        if node.name != head.name, !chain.contains(where: { original.nodes[$0].name == node.name }) {
            differ("node \(StructureDiff.label(node)) has a name none of the ORIGINAL nodes it replaces had (\(chain.map { StructureDiff.label(original.nodes[$0]) }.joined(separator: ", ")))")
        }
        if node.inputs.count > 3 { differ("\(StructureDiff.label(node)) has \(node.inputs.count) inputs") }
        for (slot, name) in [(1, replacement.foldedWeight), (2, replacement.foldedBias)] where !name.isEmpty {
            if original.initializers[name] != nil || folded.initializers[name] == nil {
                differ("\(StructureDiff.label(node)) input \(slot) '\(name)' must be a new initializer (the folded \(slot == 1 ? "kernel" : "bias"))")
            }
            explainedNew.insert(name)
        }
        if replacement.foldedWeight.isEmpty { differ("\(StructureDiff.label(node)) has no weight") }
        matchedOriginal.formUnion(chain)
        allowedRemoval.formUnion(chain)
        for k in chain { constantRoots += original.nodes[k].inputs.dropFirst().filter { !$0.isEmpty } }
        replacedWeights[replacement.originalWeight] = replacement.foldedWeight
        result.replaced.append(replacement)
        return true
    }

    /// A Conv standing for a block of linear branches summed, or a chain of linear stages
    /// (`--reparam`): checked numerically by the layer check.
    mutating func matchLinearBlock(_ node: Node, folded f: Int, original o: Int) -> Bool {
        let key = node.outputs.first { !$0.isEmpty } ?? ""
        guard node.opType == "Conv", node.isStandardDomain, node.outputs == [key], node.inputs.count >= 2,
              let block = StructureDiff.linearBlock(ending: o, in: original, producers: oProducers, consumers: oConsumers, outputs: oOutputs, input: node.inputs[0],
                                                    isConstant: isConstant),
              block.count > 1 else { return false }
        var replacement = ReplacedConv(foldedNode: f, chain: block, originalWeight: "", foldedWeight: node.inputs[1], foldedBias: node.inputs[safe: 2] ?? "")
        replacement.isLinearBlock = true
        replacement.batchNormFlags = block.map { _ in false }
        if !block.contains(where: { original.nodes[$0].name == node.name }) {
            differ("node \(StructureDiff.label(node)) has a name none of the ORIGINAL nodes it replaces had")
        }
        if node.inputs.count > 3 { differ("\(StructureDiff.label(node)) has \(node.inputs.count) inputs") }
        for (slot, name) in [(1, replacement.foldedWeight), (2, replacement.foldedBias)] where !name.isEmpty {
            if original.initializers[name] != nil || folded.initializers[name] == nil {
                differ("\(StructureDiff.label(node)) input \(slot) '\(name)' must be a new initializer (the merged \(slot == 1 ? "kernel" : "bias"))")
            }
            explainedNew.insert(name)
        }
        matchedOriginal.formUnion(block)
        allowedRemoval.formUnion(block)
        let inside = Set(block.flatMap { original.nodes[$0].outputs })
        for k in block {
            let node = original.nodes[k]
            let parameters: [String]
            switch node.opType {
            case "Add", "Sub", "Mul": parameters = node.inputs.filter(isConstant)
            case "Conv", "BatchNormalization", "AveragePool": parameters = Array(node.inputs.dropFirst())
            // A padding and its index arithmetic: they are in the block; the initializers they read go with them.
            default: parameters = node.inputs.filter { original.initializers[$0] != nil }
            }
            constantRoots += parameters.filter { !$0.isEmpty && !inside.contains($0) }
        }
        result.replaced.append(replacement)
        return true
    }

    /// The same node as ORIGINAL's; a Conv may read a new initializer (a folded kernel).
    mutating func matchSame(_ node: Node, folded f: Int, original o: Int) {
        let oNode = original.nodes[o]
        let key = node.outputs.first { !$0.isEmpty } ?? ""
        matchedOriginal.insert(o)
        if node.opType != oNode.opType || node.domain != oNode.domain {
            differ("node producing '\(key)' changed from \(oNode.domain.isEmpty ? "" : oNode.domain + ":")\(oNode.opType) to \(node.domain.isEmpty ? "" : node.domain + ":")\(node.opType)")
            return
        }
        if node.outputs != oNode.outputs { differ("\(StructureDiff.label(node)) outputs changed: \(oNode.outputs) -> \(node.outputs)") }
        if node.name != oNode.name { differ("node renamed: '\(oNode.name)' -> '\(node.name)' (\(node.opType) producing '\(key)')") }
        result.differences += StructureDiff.attributeDifferences(expected: oNode.attributes, actual: node.attributes, label: StructureDiff.label(node))

        // A Conv whose weight is now a new initializer: a folded kernel composition.
        if node.opType == "Conv", node.isStandardDomain, node.inputs.count == oNode.inputs.count, node.inputs.count >= 2,
           node.inputs[1] != oNode.inputs[1], original.initializers[node.inputs[1]] == nil, folded.initializers[node.inputs[1]] != nil {
            var replacement = ReplacedConv(foldedNode: f, chain: [o], originalWeight: oNode.inputs[1], foldedWeight: node.inputs[1],
                                           foldedBias: node.inputs[safe: 2] ?? "")
            replacement.batchNormFlags = [false]
            if let previous = replacedWeights[oNode.inputs[1]], previous != node.inputs[1] {
                differ("Convs that shared the kernel '\(oNode.inputs[1])' now read different kernels '\(previous)' and '\(node.inputs[1])'")
            }
            replacedWeights[oNode.inputs[1]] = node.inputs[1]
            explainedNew.insert(node.inputs[1])
            constantRoots.append(oNode.inputs[1])
            result.replaced.append(replacement)
        }
        pendingInputChecks.append((f, o))
    }

    /// True for an initializer of ORIGINAL or a value computed from initializers and
    /// constants alone (no graph input).
    func isConstant(_ name: String) -> Bool { original.initializers[name] != nil || oConstants.contains(name) }

    /// ORIGINAL's Add or Sub of a constant (either side for Add), or Mul or Div by a constant
    /// (either side for Mul), that FOLDED no longer has: the fold dropped it as the identity,
    /// its readers now read the data operand. Whether the constant is the identity is checked
    /// numerically (`DroppedIdentity`); here only the shape of the change is.
    mutating func collectDroppedIdentities() {
        for (k, node) in original.nodes.enumerated() where !matchedOriginal.contains(k) && !allowedRemoval.contains(k) {
            guard node.isStandardDomain, ["Add", "Sub", "Mul", "Div"].contains(node.opType), node.inputs.count == 2, node.outputs.count == 1,
                  !oOutputs.contains(node.outputs[0]) else { continue }
            let either = node.opType == "Add" || node.opType == "Mul"
            let constantSlot = isConstant(node.inputs[1]) ? 1 : (either && isConstant(node.inputs[0]) ? 0 : nil)
            guard let slot = constantSlot, !isConstant(node.inputs[1 - slot]) else { continue }
            identityAliases[node.outputs[0]] = node.inputs[1 - slot]
            allowedRemoval.insert(k)
            constantRoots.append(node.inputs[slot])
            result.droppedIdentities.append(DroppedIdentity(label: StructureDiff.label(node), opType: node.opType, data: node.inputs[1 - slot], output: node.outputs[0]))
        }
    }

    /// `name` read through the dropped identities (a chain of them reads its first operand).
    func throughDroppedIdentities(_ name: String) -> String {
        var name = name
        for _ in 0...identityAliases.count { guard let next = identityAliases[name] else { break }; name = next }
        return name
    }

    /// Inputs of surviving nodes: unchanged, or a replaced kernel now read from its
    /// replacement (a Shape of the kernel, say), or a dropped identity's operand.
    mutating func checkSurvivingInputs() {
        for (f, o) in pendingInputChecks {
            let node = folded.nodes[f]
            let oNode = original.nodes[o]
            guard node.inputs.count == oNode.inputs.count else {
                differ("\(StructureDiff.label(node)) has \(node.inputs.count) inputs, ORIGINAL's \(oNode.inputs.count): \(oNode.inputs) -> \(node.inputs)")
                continue
            }
            for (slot, (a, b)) in zip(oNode.inputs, node.inputs).enumerated() where a != b {
                if let replacement = replacedWeights[a], replacement == b { continue }
                if identityAliases[a] != nil, throughDroppedIdentities(a) == b { continue }
                differ("\(StructureDiff.label(node)) input \(slot) changed: '\(a)' -> '\(b)'")
            }
        }
    }

    /// ORIGINAL's nodes that are gone must all be constant work upstream of a replaced
    /// kernel (or absorbed by a replacement).
    mutating func checkRemovedNodes() {
        let constantNodes = diff.constantAncestors(of: constantRoots, producers: oProducers)
        for k in constantNodes.nodes { allowedRemoval.insert(k) }
        for dependency in constantNodes.nonConstant {
            differ("a replaced weight depends on the graph input '\(dependency)': it was not a constant kernel")
        }
        for (k, node) in original.nodes.enumerated() where !matchedOriginal.contains(k) {
            if !allowedRemoval.contains(k) {
                differ("node \(StructureDiff.label(node)) of ORIGINAL is missing from FOLDED (it is not part of a DO-Conv kernel computation)")
            }
        }
        removableInitializers = Set(constantNodes.initializers).union(constantRoots)
    }

    /// Initializers: shared ones equal by value; removed ones only from replaced work; new
    /// ones only as replacements.
    mutating func checkInitializers() {
        for name in original.initializerOrder {
            guard let before = original.initializers[name] else { continue }
            if let after = folded.initializers[name] {
                if let reason = StructureDiff.tensorDifference(before, after) { differ("initializer '\(name)' changed: \(reason)") }
            } else if !removableInitializers.contains(name) {
                differ("initializer '\(name)' of ORIGINAL is missing from FOLDED (it is not part of a DO-Conv kernel computation)")
            }
        }
        for name in folded.initializerOrder where original.initializers[name] == nil && !explainedNew.contains(name) {
            differ("initializer '\(name)' of FOLDED is new and is not a folded kernel or bias")
        }
        let oInitializerOrder = original.initializerOrder.filter { folded.initializers[$0] != nil }
        let fInitializerOrder = folded.initializerOrder.filter { original.initializers[$0] != nil }
        if oInitializerOrder != fInitializerOrder { result.notes.append("initializers kept by the fold are stored in a different order") }
    }

    /// Graph inputs: ORIGINAL's, less initializers the fold removed.
    mutating func checkGraphInputs() {
        let expectedInputs = original.inputs.filter { !(original.initializers[$0.name] != nil && folded.initializers[$0.name] == nil) }
        if expectedInputs != folded.inputs {
            let e = expectedInputs.map(\.name)
            let a = folded.inputs.map(\.name)
            if e != a { differ("graph inputs changed: expected \(e), found \(a)") } else {
                for (x, y) in zip(expectedInputs, folded.inputs) where x != y {
                    differ("graph input '\(x.name)' changed its declared type or shape: \(StructureDiff.describe(x)) -> \(StructureDiff.describe(y))")
                }
            }
        }
        let droppedInputs = original.inputs.count - expectedInputs.count
        if droppedInputs > 0 { result.notes.append("\(droppedInputs) graph inputs that were removed initializers are gone") }
    }

    /// Every value FOLDED reads must be defined before it is read.
    mutating func checkDefinitionOrder() {
        var defined = Set(folded.initializerOrder).union(folded.inputs.map(\.name))
        for node in folded.nodes {
            for input in node.inputs where !input.isEmpty && !defined.contains(input) {
                differ("\(StructureDiff.label(node)) reads '\(input)', which FOLDED does not define before it")
            }
            defined.formUnion(node.outputs)
        }
        for output in folded.outputs where !defined.contains(output.name) {
            differ("graph output '\(output.name)' is not produced by FOLDED")
        }
    }
}
