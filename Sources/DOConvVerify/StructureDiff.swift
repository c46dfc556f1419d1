import DOConvGraph

/// One Conv of FOLDED that stands for a piece of ORIGINAL: a DO-Conv layer whose kernel the
/// original composed (only the weight changed), a depthwise + 1x1 pair, or a Conv followed
/// by a BatchNormalization folded into it.
public struct ReplacedConv: Equatable, Sendable {
    /// Index of the Conv in FOLDED's node list.
    public var foldedNode: Int
    /// ORIGINAL's nodes the Conv replaces, data flow order: [conv], [conv, bn],
    /// [depthwise, pointwise] or [depthwise, pointwise, bn].
    public var chain: [Int]
    /// ORIGINAL's weight value of the first conv (a composed kernel, or an initializer).
    public var originalWeight: String
    /// FOLDED's new weight initializer.
    public var foldedWeight: String
    /// FOLDED's bias input, if any ("" when absent).
    public var foldedBias: String

    /// True when the chain is a depthwise + 1x1 pair.
    public var isPair: Bool { chain.count >= 2 && !isBatchNormLink(at: 1) }
    /// Index in `chain` of an absorbed BatchNormalization, if any.
    public var batchNormPosition: Int? { chain.count >= 2 && isBatchNormLink(at: chain.count - 1) ? chain.count - 1 : nil }

    /// Filled by the differ: whether chain[k] is a BatchNormalization.
    public var batchNormFlags: [Bool] = []
    /// True when the Conv stands for a block of linear branches or stages merged by
    /// `--reparam` (`chain` then holds the block's nodes in graph order).
    public var isLinearBlock = false

    func isBatchNormLink(at k: Int) -> Bool { k < batchNormFlags.count && batchNormFlags[k] }
}

/// The outcome of comparing two graphs node by node.
public struct StructureComparison: Sendable {
    /// Every difference that is not a DO-Conv replacement: each fails the verification.
    public var differences: [String] = []
    /// What was replaced, for the per-layer checks.
    public var replaced: [ReplacedConv] = []
    /// Harmless observations (metadata added by the fold, removed inputs, ...).
    public var notes: [String] = []
}

/// Compares FOLDED against ORIGINAL: every node, initializer, input and output of FOLDED must
/// correspond to ORIGINAL, except that each DO-Conv subgraph (or pair, or Conv + BN) is one
/// Conv fed by constant initializers. Nothing of the fold's own code is used.
public struct StructureDiff {
    public let original: Graph
    public let folded: Graph

    public init(original: Graph, folded: Graph) {
        self.original = original
        self.folded = folded
    }

    /// The metadata key doconv-fold adds.
    public static let foldMetadataKey = "doconv.folded"

    public func compare() -> StructureComparison {
        var result = StructureComparison()
        func differ(_ message: String) { result.differences.append(message) }

        let oProducers = original.producers
        var oConsumers: [String: [Int]] = [:]
        for (k, node) in original.nodes.enumerated() {
            for input in node.inputs where !input.isEmpty { oConsumers[input, default: []].append(k) }
        }
        let oOutputs = Set(original.outputs.map(\.name))

        // Model level: opsets and metadata.
        if original.opsets != folded.opsets {
            differ("opset imports changed: \(Self.describe(original.opsets)) -> \(Self.describe(folded.opsets))")
        }
        let oMeta = original.metadata.filter { $0.key != Self.foldMetadataKey }
        let fMeta = folded.metadata.filter { $0.key != Self.foldMetadataKey }
        if oMeta.count != fMeta.count || !zip(oMeta, fMeta).allSatisfy({ $0 == $1 }) {
            let oKeys = Dictionary(oMeta.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            let fKeys = Dictionary(fMeta.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            let changed = Set(oKeys.keys).union(fKeys.keys).filter { oKeys[$0] != fKeys[$0] }.sorted()
            differ("metadata changed" + (changed.isEmpty ? " (order)" : ": " + changed.map { "'\($0)'" }.joined(separator: ", ")))
        }
        if folded.metadata.contains(where: { $0.key == Self.foldMetadataKey }) {
            result.notes.append("FOLDED records the fold in metadata '\(Self.foldMetadataKey)'")
        }
        if original.name != folded.name { differ("graph name changed: '\(original.name)' -> '\(folded.name)'") }

        // Outputs must be identical.
        if original.outputs != folded.outputs {
            let o = original.outputs.map(\.name)
            let f = folded.outputs.map(\.name)
            if o != f { differ("graph outputs changed: \(o) -> \(f)") } else {
                for (a, b) in zip(original.outputs, folded.outputs) where a != b {
                    differ("graph output '\(a.name)' changed its declared type or shape: \(Self.describe(a)) -> \(Self.describe(b))")
                }
            }
        }

        // Match FOLDED's nodes to ORIGINAL's by their outputs.
        var matchedOriginal = Set<Int>()
        var lastMatched = -1
        var orderReported = false
        var replacedWeights: [String: String] = [:] // ORIGINAL value -> FOLDED initializer
        var explainedNew = Set<String>()            // FOLDED initializers that replacements explain
        var allowedRemoval = Set<Int>()             // ORIGINAL nodes a replacement absorbs
        var constantRoots: [String] = []            // ORIGINAL values whose constant ancestry may go
        var pendingInputChecks: [(f: Int, o: Int)] = []

        for (f, node) in folded.nodes.enumerated() {
            let key = node.outputs.first { !$0.isEmpty } ?? ""
            guard let o = oProducers[key] else {
                differ("node \(Self.label(node)) of FOLDED does not exist in ORIGINAL (no node there produces '\(key)')")
                continue
            }
            let oNode = original.nodes[o]
            if matchedOriginal.contains(o) {
                differ("node \(Self.label(node)) of FOLDED duplicates ORIGINAL's \(Self.label(oNode))")
                continue
            }
            if o < lastMatched, !orderReported {
                differ("node order changed: \(Self.label(node)) now comes after nodes it preceded")
                orderReported = true
            }
            lastMatched = max(lastMatched, o)

            // A Conv standing for a chain of ORIGINAL nodes (pair and/or BatchNormalization).
            if node.opType == "Conv", node.isStandardDomain, node.outputs == oNode.outputs,
               let chain = Self.chain(ending: o, in: original, consumers: oConsumers, outputs: oOutputs, dataInput: node.inputs.first ?? ""),
               chain.count > 1 {
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
                compareAttributes(expected: expected, actual: node.attributes, label: Self.label(node), differ: differ)
                if node.name != head.name, !chain.contains(where: { original.nodes[$0].name == node.name }) {
                    differ("node \(Self.label(node)) has a name none of the ORIGINAL nodes it replaces had (\(chain.map { Self.label(original.nodes[$0]) }.joined(separator: ", ")))")
                }
                if node.inputs.count > 3 { differ("\(Self.label(node)) has \(node.inputs.count) inputs") }
                for (slot, name) in [(1, replacement.foldedWeight), (2, replacement.foldedBias)] where !name.isEmpty {
                    if original.initializers[name] != nil || folded.initializers[name] == nil {
                        differ("\(Self.label(node)) input \(slot) '\(name)' must be a new initializer (the folded \(slot == 1 ? "kernel" : "bias"))")
                    }
                    explainedNew.insert(name)
                }
                if replacement.foldedWeight.isEmpty { differ("\(Self.label(node)) has no weight") }
                matchedOriginal.formUnion(chain)
                allowedRemoval.formUnion(chain)
                for k in chain { constantRoots += original.nodes[k].inputs.dropFirst().filter { !$0.isEmpty } }
                replacedWeights[replacement.originalWeight] = replacement.foldedWeight
                result.replaced.append(replacement)
                continue
            }

            // A Conv standing for a block of linear branches summed, or a chain of linear
            // stages (`--reparam`): checked numerically by the layer check.
            if node.opType == "Conv", node.isStandardDomain, node.outputs == [key], node.inputs.count >= 2,
               let block = Self.linearBlock(ending: o, in: original, producers: oProducers, consumers: oConsumers, outputs: oOutputs, input: node.inputs[0]),
               block.count > 1 {
                var replacement = ReplacedConv(foldedNode: f, chain: block, originalWeight: "", foldedWeight: node.inputs[1], foldedBias: node.inputs[safe: 2] ?? "")
                replacement.isLinearBlock = true
                replacement.batchNormFlags = block.map { _ in false }
                if !block.contains(where: { original.nodes[$0].name == node.name }) {
                    differ("node \(Self.label(node)) has a name none of the ORIGINAL nodes it replaces had")
                }
                if node.inputs.count > 3 { differ("\(Self.label(node)) has \(node.inputs.count) inputs") }
                for (slot, name) in [(1, replacement.foldedWeight), (2, replacement.foldedBias)] where !name.isEmpty {
                    if original.initializers[name] != nil || folded.initializers[name] == nil {
                        differ("\(Self.label(node)) input \(slot) '\(name)' must be a new initializer (the merged \(slot == 1 ? "kernel" : "bias"))")
                    }
                    explainedNew.insert(name)
                }
                matchedOriginal.formUnion(block)
                allowedRemoval.formUnion(block)
                let inside = Set(block.flatMap { original.nodes[$0].outputs })
                for k in block where original.nodes[k].opType != "Add" {
                    constantRoots += original.nodes[k].inputs.dropFirst().filter { !$0.isEmpty && !inside.contains($0) }
                }
                result.replaced.append(replacement)
                continue
            }

            matchedOriginal.insert(o)
            if node.opType != oNode.opType || node.domain != oNode.domain {
                differ("node producing '\(key)' changed from \(oNode.domain.isEmpty ? "" : oNode.domain + ":")\(oNode.opType) to \(node.domain.isEmpty ? "" : node.domain + ":")\(node.opType)")
                continue
            }
            if node.outputs != oNode.outputs { differ("\(Self.label(node)) outputs changed: \(oNode.outputs) -> \(node.outputs)") }
            if node.name != oNode.name { differ("node renamed: '\(oNode.name)' -> '\(node.name)' (\(node.opType) producing '\(key)')") }
            compareAttributes(expected: oNode.attributes, actual: node.attributes, label: Self.label(node), differ: differ)

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

        // Inputs of surviving nodes: unchanged, or a replaced kernel now read from its
        // replacement (a Shape of the kernel, say).
        for (f, o) in pendingInputChecks {
            let node = folded.nodes[f]
            let oNode = original.nodes[o]
            guard node.inputs.count == oNode.inputs.count else {
                differ("\(Self.label(node)) has \(node.inputs.count) inputs, ORIGINAL's \(oNode.inputs.count): \(oNode.inputs) -> \(node.inputs)")
                continue
            }
            for (slot, (a, b)) in zip(oNode.inputs, node.inputs).enumerated() where a != b {
                if let replacement = replacedWeights[a], replacement == b { continue }
                differ("\(Self.label(node)) input \(slot) changed: '\(a)' -> '\(b)'")
            }
        }

        // ORIGINAL's nodes that are gone must all be constant work upstream of a replaced
        // kernel (or absorbed by a replacement).
        let constantNodes = constantAncestors(of: constantRoots, producers: oProducers)
        for k in constantNodes.nodes { allowedRemoval.insert(k) }
        for dependency in constantNodes.nonConstant {
            differ("a replaced weight depends on the graph input '\(dependency)': it was not a constant kernel")
        }
        for (k, node) in original.nodes.enumerated() where !matchedOriginal.contains(k) {
            if !allowedRemoval.contains(k) {
                differ("node \(Self.label(node)) of ORIGINAL is missing from FOLDED (it is not part of a DO-Conv kernel computation)")
            }
        }

        // Initializers: shared ones equal by value; removed ones only from replaced work; new
        // ones only as replacements.
        let removableInitializers = Set(constantNodes.initializers).union(constantRoots)
        for name in original.initializerOrder {
            guard let before = original.initializers[name] else { continue }
            if let after = folded.initializers[name] {
                if let reason = Self.tensorDifference(before, after) { differ("initializer '\(name)' changed: \(reason)") }
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

        // Graph inputs: ORIGINAL's, less initializers the fold removed.
        let expectedInputs = original.inputs.filter { !(original.initializers[$0.name] != nil && folded.initializers[$0.name] == nil) }
        if expectedInputs != folded.inputs {
            let e = expectedInputs.map(\.name)
            let a = folded.inputs.map(\.name)
            if e != a { differ("graph inputs changed: expected \(e), found \(a)") } else {
                for (x, y) in zip(expectedInputs, folded.inputs) where x != y {
                    differ("graph input '\(x.name)' changed its declared type or shape: \(Self.describe(x)) -> \(Self.describe(y))")
                }
            }
        }
        let droppedInputs = original.inputs.count - expectedInputs.count
        if droppedInputs > 0 { result.notes.append("\(droppedInputs) graph inputs that were removed initializers are gone") }

        // Every value FOLDED reads must be defined before it is read.
        var defined = Set(folded.initializerOrder).union(folded.inputs.map(\.name))
        for node in folded.nodes {
            for input in node.inputs where !input.isEmpty && !defined.contains(input) {
                differ("\(Self.label(node)) reads '\(input)', which FOLDED does not define before it")
            }
            defined.formUnion(node.outputs)
        }
        for output in folded.outputs where !defined.contains(output.name) {
            differ("graph output '\(output.name)' is not produced by FOLDED")
        }
        return result
    }

    /// Attributes by name and value (order ignored).
    private func compareAttributes(expected: [(name: String, value: Attribute)], actual: [(name: String, value: Attribute)],
                                   label: String, differ: (String) -> Void) {
        let e = Dictionary(expected.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        let a = Dictionary(actual.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        for name in Set(e.keys).union(a.keys).sorted() where e[name] != a[name] {
            switch (e[name], a[name]) {
            case (nil, let v?): differ("\(label) gained attribute \(name)=\(v)")
            case (let v?, nil): differ("\(label) lost attribute \(name)=\(v)")
            case (let v?, let w?): differ("\(label) attribute \(name) changed: \(v) -> \(w)")
            default: break
            }
        }
    }

    /// ORIGINAL's nodes a folded Conv can stand for, ending at `last`: walks back from a
    /// BatchNormalization to its Conv, and from a 1x1 Conv to a depthwise Conv, while each
    /// link's value feeds only the next node, until the chain starts at `dataInput`.
    static func chain(ending last: Int, in graph: Graph, consumers: [String: [Int]], outputs: Set<String>, dataInput: String) -> [Int]? {
        var chain = [last]
        while let head = chain.first, graph.nodes[head].inputs.first != dataInput {
            let node = graph.nodes[head]
            let shape = chain.map { graph.nodes[$0].opType }
            // Allowed links: Conv <- BN (a BN only ends the chain), pointwise Conv <- depthwise Conv.
            let allowed = (shape == ["BatchNormalization"]) || (shape == ["Conv"]) || (shape == ["Conv", "BatchNormalization"])
            guard allowed, node.isStandardDomain,
                  let link = node.inputs.first, !link.isEmpty, consumers[link] == [head], !outputs.contains(link),
                  let previous = graph.producers[link], graph.nodes[previous].opType == "Conv", graph.nodes[previous].isStandardDomain else {
                return nil
            }
            chain.insert(previous, at: 0)
        }
        return chain
    }

    /// ORIGINAL's nodes that a merged Conv reading `input` can stand for, ending at `last`:
    /// Add, Conv, BatchNormalization and AveragePool nodes back to `input`, each inner value
    /// read only inside the block. Their constant inputs are checked separately.
    static func linearBlock(ending last: Int, in graph: Graph, producers: [String: Int], consumers: [String: [Int]], outputs: Set<String>, input: String) -> [Int]? {
        let linear: Set<String> = ["Add", "Conv", "BatchNormalization", "AveragePool"]
        var block = Set<Int>(), stack = [last]
        while let k = stack.popLast() {
            guard block.insert(k).inserted else { continue }
            let node = graph.nodes[k]
            guard node.isStandardDomain, linear.contains(node.opType), block.count <= 4096 else { return nil }
            let data = node.opType == "Add" ? node.inputs : Array(node.inputs.prefix(1))
            for value in data {
                if value == input { continue }
                guard !value.isEmpty, let producer = producers[value], !outputs.contains(value),
                      (consumers[value] ?? []).allSatisfy({ $0 == k }) else { return nil }
                stack.append(producer)
            }
        }
        return block.sorted()
    }

    /// The nodes and initializers upstream of `roots` in ORIGINAL, and any graph inputs
    /// (not backed by an initializer) they depend on.
    private func constantAncestors(of roots: [String], producers: [String: Int]) -> (nodes: Set<Int>, initializers: [String], nonConstant: [String]) {
        var nodes = Set<Int>()
        var initializers: [String] = []
        var nonConstant: [String] = []
        var seen = Set<String>()
        var stack = roots
        let feeds = Set(original.feedInputs.map(\.name))
        while let name = stack.popLast() {
            guard !name.isEmpty, seen.insert(name).inserted else { continue }
            if original.initializers[name] != nil { initializers.append(name); continue }
            if feeds.contains(name) { nonConstant.append(name); continue }
            guard let k = producers[name] else { continue }
            let node = original.nodes[k]
            // CastLike reads its second input for the element type only.
            let dataInputs = node.opType == "CastLike" && node.isStandardDomain ? Array(node.inputs.prefix(1)) : node.inputs
            if nodes.insert(k).inserted { stack += dataInputs }
        }
        return (nodes, initializers, nonConstant.sorted())
    }

    /// Nil when equal (type, shape and every value); otherwise what differs.
    static func tensorDifference(_ a: TensorValue, _ b: TensorValue) -> String? {
        if a.type != b.type { return "element type \(a.type) -> \(b.type)" }
        if a.shape != b.shape { return "shape \(a.shape) -> \(b.shape)" }
        switch (a.storage, b.storage) {
        case (.floats(let x), .floats(let y)):
            for k in x.indices where !(x[k] == y[k] || (x[k].isNaN && y[k].isNaN)) {
                return "value at \(TensorValue.index(of: k, in: a.shape)) \(x[k]) -> \(y[k])"
            }
        case (.ints(let x), .ints(let y)):
            for k in x.indices where x[k] != y[k] { return "value at \(TensorValue.index(of: k, in: a.shape)) \(x[k]) -> \(y[k])" }
        default:
            if a.storage != b.storage { return "contents differ" }
        }
        return nil
    }

    static func label(_ node: Node) -> String {
        node.name.isEmpty ? "\(node.opType) (output '\(node.outputs.first ?? "")')" : "\(node.opType) '\(node.name)'"
    }

    static func describe(_ info: ValueInfo) -> String {
        let type = info.type.map { "\($0)" } ?? "?"
        let shape = info.shape.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "(no shape)"
        return "\(type) \(shape)"
    }

    static func describe(_ opsets: [String: Int64]) -> String {
        opsets.sorted { $0.key < $1.key }.map { "\($0.key.isEmpty ? "ai.onnx" : $0.key) \($0.value)" }.joined(separator: ", ")
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
