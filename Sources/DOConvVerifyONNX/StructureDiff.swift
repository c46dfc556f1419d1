import DOConvGraph
import DOConvVerify

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
    /// ORIGINAL's identity arithmetic that FOLDED no longer has (its readers read the data
    /// operand): whether each result really equals its operand is checked numerically.
    public var droppedIdentities: [DroppedIdentity] = []
}

/// An Add or Sub of a constant, or a Mul or Div by a constant, that the fold dropped as the
/// identity (`Add(x, 0)`): `output` must equal `data`.
public struct DroppedIdentity: Equatable, Sendable {
    /// "Add '/stem/Add_1'".
    public var label: String
    public var opType: String
    public var data: String
    public var output: String
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
        var walk = StructureWalk(diff: self)
        walk.compareModel()
        for f in folded.nodes.indices { walk.match(folded: f) }
        walk.collectDroppedIdentities()
        walk.checkSurvivingInputs()
        walk.checkRemovedNodes()
        walk.checkInitializers()
        walk.checkGraphInputs()
        walk.checkDefinitionOrder()
        return walk.result
    }

    /// A Conv's attributes without those that only spell out a default (unit strides and
    /// dilations, no padding, one group, NOTSET, the kernel's own shape): a Conv the fold
    /// writes spells them all out.
    static func convAttributesWithoutDefaults(_ attributes: [(name: String, value: Attribute)], kernelShape: [Int]?) -> [(name: String, value: Attribute)] {
        attributes.filter { attribute in
            switch (attribute.name, attribute.value) {
            case ("strides", .ints(let v)), ("dilations", .ints(let v)): return !v.allSatisfy { $0 == 1 }
            case ("pads", .ints(let v)): return !v.allSatisfy { $0 == 0 }
            case ("group", .int(let v)): return v != 1
            case ("auto_pad", .string(let v)): return v != "NOTSET"
            case ("kernel_shape", .ints(let v)): return kernelShape.map { v.map(Int.init) != $0 } ?? true
            default: return true
            }
        }
    }

    /// How the attributes differ, by name and value (order ignored).
    static func attributeDifferences(expected: [(name: String, value: Attribute)], actual: [(name: String, value: Attribute)],
                                     label: String) -> [String] {
        let e = Dictionary(expected.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        let a = Dictionary(actual.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        return Set(e.keys).union(a.keys).sorted().compactMap { name in
            switch (e[name], a[name]) {
            case (nil, let v?): return "\(label) gained attribute \(name)=\(v)"
            case (let v?, nil): return "\(label) lost attribute \(name)=\(v)"
            case (let v?, let w?) where v != w: return "\(label) attribute \(name) changed: \(v) -> \(w)"
            default: return nil
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
            // A Conv <- Conv link is a pair only when the weights that are plain initializers say
            // so (a 1x1 after a depthwise conv); other Convs in a row are a `--reparam` chain.
            if node.opType == "Conv" {
                let pointwise = node.inputs.count > 1 ? graph.initializers[node.inputs[1]] : nil
                let depthwise = graph.nodes[previous].inputs.count > 1 ? graph.initializers[graph.nodes[previous].inputs[1]] : nil
                if let pointwise, pointwise.rank == 4, pointwise.shape[2...] != [1, 1] { return nil }
                if let depthwise, depthwise.rank == 4, depthwise.shape[1] != 1 { return nil }
            }
            chain.insert(previous, at: 0)
        }
        return chain
    }

    /// ORIGINAL's nodes that a merged Conv reading `input` can stand for, ending at `last`:
    /// Add, Conv, BatchNormalization and AveragePool nodes back to `input`, each inner value
    /// read only inside the block. Their constant inputs are checked separately.
    /// Add, Sub and Mul take their non-constant operands as data (a Mul by a per-channel
    /// scale, an Add of a constant zero the fold dropped); a Mul of two data values is not linear.
    /// A Pad and the ScatterND writes after it (DBB's padding with a value) come with the index
    /// arithmetic that computes their pads, indices and values.
    static func linearBlock(ending last: Int, in graph: Graph, producers: [String: Int], consumers: [String: [Int]], outputs: Set<String>, input: String,
                            isConstant: (String) -> Bool) -> [Int]? {
        let linear: Set<String> = ["Add", "Sub", "Mul", "Conv", "BatchNormalization", "AveragePool", "Pad", "ScatterND"]
        var block = Set<Int>(), stack = [last]
        // A padding's pads, indices and values: index arithmetic the block takes along.
        var auxiliaryRoots: [String] = []
        while let k = stack.popLast() {
            guard block.insert(k).inserted else { continue }
            let node = graph.nodes[k]
            guard node.isStandardDomain, linear.contains(node.opType), block.count <= 4096 else { return nil }
            let arithmetic = ["Add", "Sub", "Mul"].contains(node.opType)
            let data = arithmetic ? node.inputs.filter { !isConstant($0) } : Array(node.inputs.prefix(1))
            if arithmetic, data.isEmpty || (node.opType == "Mul" && data.count != 1) { return nil }
            if node.opType == "Pad" || node.opType == "ScatterND" { auxiliaryRoots += node.inputs.dropFirst() }
            for value in data {
                if value == input { continue }
                guard !value.isEmpty, let producer = producers[value], !outputs.contains(value) else { return nil }
                stack.append(producer)
            }
        }
        // The index arithmetic: back to constants and the block's own values (their shapes),
        // never a graph input.
        var auxiliary = Set<Int>(), seen = Set<String>()
        while let value = auxiliaryRoots.popLast() {
            guard !value.isEmpty, value != input, graph.initializers[value] == nil, seen.insert(value).inserted else { continue }
            guard let producer = producers[value] else { return nil }
            if block.contains(producer) { continue }
            guard auxiliary.insert(producer).inserted else { continue }
            guard auxiliary.count <= 8192 else { return nil }
            auxiliaryRoots += graph.nodes[producer].inputs
        }
        // Every value inside is read inside only (the output aside).
        let all = block.union(auxiliary)
        let output = graph.nodes[last].outputs.first ?? ""
        for k in all {
            for value in graph.nodes[k].outputs where !value.isEmpty && value != output {
                guard !outputs.contains(value), (consumers[value] ?? []).allSatisfy({ all.contains($0) }) else { return nil }
            }
        }
        return all.sorted()
    }

    /// The nodes and initializers upstream of `roots` in ORIGINAL, and any graph inputs
    /// (not backed by an initializer) they depend on.
    func constantAncestors(of roots: [String], producers: [String: Int]) -> (nodes: Set<Int>, initializers: [String], nonConstant: [String]) {
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
