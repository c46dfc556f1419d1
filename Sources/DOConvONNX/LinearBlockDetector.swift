import DOConvCore

/// A block of linear ops that `--reparam` merges into one Conv: parallel branches summed by
/// Add nodes (RepVGG, ACNet, MobileOne, DBB), or one chain of stages (ExpandNets' 1x1 -> kxk
/// -> 1x1, a Conv and its BatchNormalization).
struct LinearBlockMatch {
    /// The Add at the root of the sum, else the chain's last stage.
    var root: Int
    var name: String
    /// The block's input and output values.
    var source: String
    var output: String
    /// Node indices per branch, in data-flow order (empty: the input itself).
    var branchNodes: [[Int]]
    /// What the sum multiplies each branch by (one value: a scalar; [1]: nothing).
    var branchFactors: [[Double]]
    /// The Add nodes of the sum (none for a chain).
    var adds: [Int]
    var block: LinearBlock
    var elementType: ElementType
    /// Nodes and initializers that computed the stages' constants.
    var constantNodes: Set<Int>
    var constantInitializers: Set<String>
    var external: Bool

    var nodes: Set<Int> { Set(branchNodes.joined()).union(adds) }
}

/// Finds linear blocks in one graph. Stages: Conv with constant weights (2-D, explicit or
/// VALID padding), inference-mode BatchNormalization with constant parameters, and (in
/// parallel branches) AveragePool that counts padding; each stage's output feeds only the
/// next. A block's branches must all start at one value.
struct LinearBlockDetector {
    let index: GraphIndex
    let codec: TensorCodec

    private var constants: ConstantResolver { ConstantResolver(index: index, codec: codec) }

    /// One linear stage read off a node.
    private enum Stage {
        case conv(AffineConv)
        /// Known channels only once the stage before it (or the block input) is known.
        case averagePool(kernel: [Int], stride: [Int], pads: [Int])
        /// Padding with a per-channel value (DBB's BNAndPad): becomes the padding of the conv
        /// or pool after it.
        case padding(ValuePadding)

        var isConvLike: Bool { if case .conv = self { return true }; return false }
    }

    private struct StageRead {
        var stage: Stage
        var type: ElementType?
        var nodes: Set<Int> = []
        var initializers: Set<String> = []
        var external = false
        var description: String
    }

    /// The walk back from an Add input (or a chain's end) through single-use linear stages.
    private struct Branch {
        var nodes: [Int] = []
        var stages: [StageRead] = []
        var source: String
        /// Why the walk stopped before a stage that looked linear.
        var blocker: String?
        /// What the sum multiplies the branch by (see `Operand`).
        var factor: [Double] = [1]
    }

    /// Add trees first (their branches' chains are part of them), then chains whose nodes
    /// no accepted tree holds.
    func detect() throws(ONNXError) -> (blocks: [LinearBlockMatch], rejected: [RejectedCandidate]) {
        var blocks: [LinearBlockMatch] = []
        var rejected: [RejectedCandidate] = []
        var used = Set<Int>()
        // A block is kept unless an earlier one holds one of its nodes; a refusal is reported.
        func take(_ outcome: Result<LinearBlockMatch, ReparamRefusal>?, at k: Int) {
            switch outcome {
            case .none: return
            case .some(.success(let block)):
                guard used.isDisjoint(with: block.nodes) else { return }
                used.formUnion(block.nodes)
                blocks.append(block)
            case .some(.failure(let refusal)):
                rejected.append(RejectedCandidate(name: label(k), reason: refusal.description))
            }
        }
        for k in index.nodes.indices where try isSumRoot(k) {
            for (outcome, root) in try sumBlocks(root: k, depth: 0) { take(outcome, at: root) }
        }
        for (k, node) in index.nodes.enumerated() where !used.contains(k) && isChainEnd(k, node) {
            let (segments, refusals) = try chainBlocks(end: k)
            rejected += refusals
            for segment in segments { take(.success(segment), at: k) }
        }
        return (blocks, rejected)
    }

    // MARK: Sums

    /// How a sum node combines what it reads: Add and Sub of two values, or Mul of one value
    /// by a constant scalar or per-channel scale (`layer_scale`, [C, 1, 1] or [1, C, 1, 1]).
    /// Each operand comes with its factor (one value: a scalar). Nil for any other node.
    private func combination(_ k: Int) throws(ONNXError) -> (operands: [(value: String, factor: [Double])], constant: ConstantValue?)? {
        let node = index.nodes[k]
        guard node.isStandardDomain, node.inputs.count == 2, node.outputs.count == 1, !node.inputs.contains(where: \.isEmpty) else { return nil }
        switch node.opType {
        case "Add": return ([(node.inputs[0], [1]), (node.inputs[1], [1])], nil)
        case "Sub": return ([(node.inputs[0], [1]), (node.inputs[1], [-1])], nil)
        case "Mul":
            for slot in [1, 0] where constants.isPlain(node.inputs[slot]) && !constants.isPlain(node.inputs[1 - slot]) {
                guard case .success(let scale) = try constant(node.inputs[slot]) else { return nil }
                let dims = scale.shape.filter { $0 != 1 }
                // Scalars, and scales along the channel axis of an NCHW value only.
                if dims.isEmpty { return ([(node.inputs[1 - slot], [scale.doubles[0]])], scale) }
                guard dims.count == 1, scale.shape.count >= 3, scale.shape.count <= 4, scale.shape[scale.shape.count - 3] == dims[0] else { return nil }
                return ([(node.inputs[1 - slot], scale.doubles)], scale)
            }
            return nil
        default: return nil
        }
    }

    /// The sum node reading `value` as one operand, when nothing else reads it.
    private func sumReader(of value: String) throws(ONNXError) -> Int? {
        let uses = index.uses(of: value)
        guard uses.count == 1, !index.isPinned(value), try combination(uses[0].node) != nil else { return nil }
        return uses[0].node
    }

    /// A sum node whose output is not one operand of another sum, and whose sum adds or
    /// subtracts (a lone scale is no sum).
    private func isSumRoot(_ k: Int) throws(ONNXError) -> Bool {
        let node = index.nodes[k]
        guard node.isOp("Add") || node.isOp("Sub") || node.isOp("Mul"), let output = node.outputs.first, !output.isEmpty,
              try combination(k) != nil, try sumReader(of: output) == nil else { return false }
        return try operands(of: k).adds.contains { !index.nodes[$0].isOp("Mul") }
    }

    /// The sum rooted at `root` as one block, or, when it does not merge, its largest sums
    /// that do, with the refusal of each larger one: RepGhost's re-param sum (a depthwise conv
    /// and a BN of the same input) merges inside the residual Add that also holds the shortcut.
    private func sumBlocks(root: Int, depth: Int) throws(ONNXError) -> [(Result<LinearBlockMatch, ReparamRefusal>?, Int)] {
        let whole = try sumBlock(root: root)
        if case .success? = whole { return [(whole, root)] }
        guard depth < 64 else { return [(whole, root)] }
        var found: [(Result<LinearBlockMatch, ReparamRefusal>?, Int)] = [(whole, root)]
        for child in try childSums(of: root) where try operands(of: child).adds.contains(where: { !index.nodes[$0].isOp("Mul") }) {
            found += try sumBlocks(root: child, depth: depth + 1)
        }
        return found
    }

    /// The sum nodes whose outputs are operands of `root` and of nothing else.
    private func childSums(of root: Int) throws(ONNXError) -> [Int] {
        var children: [Int] = []
        for (value, _) in try combination(root)?.operands ?? [] {
            if let p = index.producer[value], try combination(p) != nil, try sumReader(of: value) == root { children.append(p) }
        }
        return children
    }

    /// One operand of a sum: the value and the factor the sum multiplies it by (Sub's -1,
    /// RepMixer's layer scale); one value is a scalar.
    private struct Operand {
        var value: String
        var factor: [Double]
    }

    /// The operands of the sum rooted at `root`, its nodes, and the constants of its scales.
    private func operands(of root: Int) throws(ONNXError) -> (leaves: [Operand], adds: [Int], scales: [ConstantValue]) {
        var leaves: [Operand] = [], adds: [Int] = [], scales: [ConstantValue] = []
        var stack: [(node: Int, factor: [Double])] = [(root, [1])]
        while let (k, factor) = stack.popLast() {
            guard let combined = try combination(k) else { continue }
            adds.append(k)
            if let scale = combined.constant { scales.append(scale) }
            for (input, own) in combined.operands.reversed() {
                let product = Self.product(factor, own)
                if let p = index.producer[input], adds.count < 4096, try sumReader(of: input) == k, try combination(p) != nil {
                    stack.append((p, product))
                } else {
                    leaves.append(Operand(value: input, factor: product))
                }
            }
        }
        // Branches in graph order, as the model lists them.
        let order = leaves.enumerated().sorted { (index.producer[$0.element.value] ?? -1, $0.offset) < (index.producer[$1.element.value] ?? -1, $1.offset) }
        return (order.map(\.element), adds.sorted(), scales)
    }

    /// Two factors multiplied (a scalar scales every channel; lengths that differ beyond that
    /// are left for `build` to refuse).
    private static func product(_ a: [Double], _ b: [Double]) -> [Double] {
        if a.count == 1 { return b.map { $0 * a[0] } }
        if b.count == 1 { return a.map { $0 * b[0] } }
        return a.count == b.count ? zip(a, b).map(*) : a + b
    }

    private func sumBlock(root: Int) throws(ONNXError) -> Result<LinearBlockMatch, ReparamRefusal>? {
        let node = index.nodes[root]
        guard node.inputs.count == 2, node.outputs.count == 1 else { return nil }
        let (leaves, adds, scales) = try operands(of: root)
        guard !leaves.contains(where: \.value.isEmpty) else { return nil }
        var branches: [Branch] = []
        for leaf in leaves {
            var branch = try walk(from: leaf.value, isLeaf: true, sum: Set(adds))
            branch.factor = leaf.factor
            branches.append(branch)
        }
        // Only sums of at least two conv-like branches are candidates worth a report: a plain
        // residual Add (x + f(x) with a nonlinearity inside f) is not one.
        let convBranches = branches.filter { $0.stages.contains { $0.stage.isConvLike } || $0.blocker != nil }
        let sources = Set(branches.map(\.source))
        // One conv branch beside a branch cut short by a nonlinearity (x + relu(conv(x)), a
        // residual block) is reported; a conv beside an unrelated value is no candidate.
        let nonlinearity = sources.count > 1 ? nonlinearityBetween(branches) : nil
        // So is a sum whose branch is cut short right at its end (x + s * f(x) with s no
        // per-channel scale).
        guard convBranches.count >= 2 || (convBranches.count == 1 && sources.count == 1) || nonlinearity != nil else { return nil }
        // A sum of BatchNormalizations and the input alone has no Conv to become.
        guard branches.contains(where: { $0.nodes.contains { index.nodes[$0].isOp("Conv") } }) || branches.contains(where: { $0.blocker != nil })
              || nonlinearity != nil else { return nil }
        guard sources.count == 1, let source = sources.first else {
            if let blocker = branches.compactMap(\.blocker).first { return .failure(ReparamRefusal(blocker)) }
            let listed = sources.sorted().map { "'\($0)'" }.joined(separator: ", ")
            return .failure(ReparamRefusal(nonlinearity ?? "the branches start at different values (\(listed))"))
        }
        return build(root: root, source: source, output: node.outputs[0], branches: branches, adds: adds, scales: scales)
    }

    /// The nonlinearity that cuts a branch short, when one branch starts at the output of a
    /// non-linear op whose input leads back (through linear stages) to another branch's start.
    private func nonlinearityBetween(_ branches: [Branch]) -> String? {
        let sources = Set(branches.map(\.source))
        for branch in branches {
            guard let p = index.producer[branch.source] else { continue }
            let producer = index.nodes[p]
            guard !["Conv", "BatchNormalization", "AveragePool", "Add"].contains(producer.opType) else { continue }
            // A nonlinearity one of whose inputs (a Mul's data, not its constant) leads back
            // through linear stages to another branch's start.
            for input in producer.inputs where !input.isEmpty {
                var value = input
                for _ in 0..<64 {
                    if sources.contains(value), value != branch.source {
                        return "a \(producer.opType) ('\(producer.name.isEmpty ? branch.source : producer.name)') stands between the block's input and the sum in one branch"
                    }
                    guard let q = index.producer[value], ["Conv", "BatchNormalization", "AveragePool"].contains(index.nodes[q].opType),
                          let next = index.nodes[q].inputs.first else { break }
                    value = next
                }
            }
        }
        return nil
    }

    // MARK: Chains

    /// The last stage of a chain: a Conv or BatchNormalization whose output does not feed
    /// exactly one further Conv or BatchNormalization.
    private func isChainEnd(_ k: Int, _ node: NodeView) -> Bool {
        guard node.isOp("Conv") || node.isOp("BatchNormalization"), let output = node.outputs.first, !output.isEmpty else { return false }
        let uses = index.uses(of: output)
        if uses.count == 1, !index.isPinned(output), uses[0].slot == 0 {
            let next = index.nodes[uses[0].node]
            if next.isOp("Conv") || next.isOp("BatchNormalization") { return false }
        }
        return true
    }

    /// The mergeable pieces of the chain ending at `end`, and why its other links stay. A chain
    /// that does not compose as a whole splits, from its end, into the longest runs that do:
    /// RepViT's 3x3 stem conv -> merged RepVGG-DW conv -> BN leaves the stem and merges the BN
    /// into the depthwise conv.
    private func chainBlocks(end: Int) throws(ONNXError) -> (blocks: [LinearBlockMatch], refused: [RejectedCandidate]) {
        guard let output = index.nodes[end].outputs.first else { return ([], []) }
        // The walk starts at the end's own output, which may have several readers.
        var branch = try walk(from: output, isLeaf: false)
        // Chains hold Conv and BatchNormalization only: an average pool in a chain would turn
        // into a dense conv with more MACs.
        if let cut = branch.stages.lastIndex(where: { !$0.stage.isConvLike }) {
            branch.stages.removeFirst(cut + 1)
            branch.nodes.removeFirst(cut + 1)
            branch.source = index.nodes[branch.nodes.first ?? end].inputs.first ?? branch.source
        }
        let stages = branch.stages.compactMap { read -> AffineConv? in
            if case .conv(let conv) = read.stage { return conv }
            return nil
        }
        guard stages.count == branch.stages.count, stages.count >= 2, branch.nodes.contains(where: { index.nodes[$0].isOp("Conv") }) else { return ([], []) }
        var blocks: [LinearBlockMatch] = [], refused: [RejectedCandidate] = []
        var upper = stages.count
        while upper > 0 {
            // Grown from its end, one stage at a time (composing is associative where it is exact).
            var lower = upper - 1
            var why: ReparamRefusal?
            var composed = stages[lower], weights = Self.weightCount(stages[lower])
            while lower > 0 {
                let stage = stages[lower - 1]
                do { composed = try stage.followed(by: composed) } catch { why = error; break }
                weights += Self.weightCount(stage)
                if let refusal = Self.costRefusal(merged: composed, before: weights) { why = refusal; break }
                lower -= 1
            }
            let run = lower..<upper
            if run.count >= 2, run.contains(where: { index.nodes[branch.nodes[$0]].isOp("Conv") }) {
                var piece = branch
                piece.stages = Array(branch.stages[run])
                piece.nodes = Array(branch.nodes[run])
                piece.source = index.nodes[piece.nodes[0]].inputs.first ?? branch.source
                let last = piece.nodes[piece.nodes.count - 1]
                switch build(root: last, source: piece.source, output: index.nodes[last].outputs.first ?? "", branches: [piece], adds: []) {
                case .success(let block): blocks.append(block)
                case .failure(let refusal): refused.append(RejectedCandidate(name: label(last), reason: refusal.description))
                }
            }
            if let why, lower > 0 {
                // The link that stays: the stage before the run, with why it does not join.
                let next = index.nodes[branch.nodes[lower]]
                refused.append(RejectedCandidate(name: label(branch.nodes[lower - 1]),
                                                 reason: "not merged with the \(next.opType) after it: \(why.description)"))
            }
            upper = lower
        }
        return (blocks.reversed(), refused.reversed())
    }

    /// Why a chain of stages must not become one conv, or nil: it does not compose exactly, or
    /// composing it would cost more weights than it has (a low-rank factorization, kxk into few
    /// channels then 1x1 out, is cheaper as it is). Per-channel scales (BatchNormalization)
    /// count for nothing.
    static func chainRefusal(_ stages: [AffineConv]) -> ReparamRefusal? {
        guard let first = stages.first else { return ReparamRefusal("no stage") }
        let merged: AffineConv
        do { merged = try LinearBlock(branches: [stages], inChannels: first.inChannels).merged() } catch { return error }
        return costRefusal(merged: merged, before: stages.reduce(0) { $0 + weightCount($1) })
    }

    /// The weights a stage costs: none for a per-channel scale.
    static func weightCount(_ stage: AffineConv) -> Int {
        stage.isPointwise && stage.groups == stage.outChannels && stage.groups == stage.inChannels ? 0 : stage.kernel.count
    }

    static func costRefusal(merged: AffineConv, before: Int) -> ReparamRefusal? {
        guard merged.kernel.count <= max(before, 1) else {
            return ReparamRefusal("composing the chain would raise its weights from \(before) to \(merged.kernel.count) (a low-rank factorization is cheaper as it is)")
        }
        return nil
    }

    // MARK: Walk and build

    /// Walks back from `value` while the value feeds one reader only (the leaf of a sum is
    /// read by its Add) and its producer is a linear stage.
    private func walk(from value: String, isLeaf: Bool, sum: Set<Int> = []) throws(ONNXError) -> Branch {
        var branch = Branch(source: value)
        var current = value
        var first = true
        // A padding's input is read inside the padding only (the detector checked).
        var readInsidePadding = false
        while let p = index.producer[current] {
            if (!first || isLeaf) && !readInsidePadding {
                guard index.uses(of: current).count == 1, !index.isPinned(current) else {
                    // Only a linear stage's output makes this a branch cut short; another value
                    // read twice (index arithmetic, a ReLU's output) is just an operand.
                    let producer = index.nodes[p]
                    if first, isLeaf, producer.isOp("Conv") || producer.isOp("BatchNormalization") || producer.isOp("AveragePool"),
                       let reader = index.uses(of: current).first(where: { !sum.contains($0.node) }) {
                        branch.blocker = "the branch output '\(current)' is also read by \(label(reader.node))"
                    }
                    break
                }
            }
            let node = index.nodes[p]
            readInsidePadding = false
            if node.isOp("ScatterND") || node.isOp("Pad") {
                // The channel count from the stage after it (the walk goes backwards).
                let channels = branch.stages.lazy.compactMap { read -> Int? in
                    if case .conv(let conv) = read.stage { return conv.inChannels }
                    return nil
                }.first
                guard let channels, let padding = try ValuePaddingDetector(index: index, codec: codec).recognize(current, channels: channels) else { break }
                switch padding {
                case .success(let padding):
                    branch.stages.insert(StageRead(stage: .padding(padding), type: nil, nodes: padding.nodes, initializers: padding.initializers,
                                                   description: "Pad \(padding.pads.map(String.init).joined(separator: "x"))"), at: 0)
                    branch.nodes.insert(p, at: 0)
                    current = padding.input
                    branch.source = current
                    readInsidePadding = true
                case .failure(let refusal):
                    branch.blocker = "\(label(p)): \(refusal.description)"
                    return branch
                }
                first = false
                continue
            }
            guard node.isOp("Conv") || node.isOp("BatchNormalization") || node.isOp("AveragePool") else { break }
            switch try stage(p) {
            case .success(let read):
                branch.stages.insert(read, at: 0)
                branch.nodes.insert(p, at: 0)
                current = node.inputs.first ?? ""
                branch.source = current
            case .failure(let refusal):
                branch.blocker = "\(label(p)): \(refusal.description)"
                return branch
            }
            first = false
            if branch.nodes.count > 4096 { break }
        }
        return branch
    }

    private func build(root: Int, source: String, output: String, branches: [Branch], adds: [Int], scales: [ConstantValue] = []) -> Result<LinearBlockMatch, ReparamRefusal> {
        // The block's input channels: from any stage that knows them.
        var channels: Int?
        for branch in branches {
            if case .conv(let conv)? = branch.stages.first?.stage { channels = conv.inChannels; break }
        }
        guard let inChannels = channels else { return .failure(ReparamRefusal("no branch tells the block's channel count")) }
        var convBranches: [[AffineConv]] = []
        for branch in branches {
            var stages: [AffineConv] = []
            var width = inChannels
            // A padding waiting for the conv or pool that reads it.
            var padding: ValuePadding?
            for read in branch.stages {
                switch read.stage {
                case .conv(var conv):
                    if let pending = padding {
                        guard !conv.hasPadding, pending.value.count == conv.inChannels else {
                            return .failure(ReparamRefusal("a padding with values feeds a conv that pads itself"))
                        }
                        conv.pads = pending.pads
                        conv.padValue = pending.value.allSatisfy { $0 == 0 } ? nil : pending.value
                        padding = nil
                    }
                    stages.append(conv)
                    width = conv.outChannels
                case .averagePool(let kernel, let stride, let pads):
                    if let pending = padding, pads.contains(where: { $0 != 0 }) || pending.value.count != width {
                        return .failure(ReparamRefusal("a padding with values feeds an average pool that pads itself"))
                    }
                    do {
                        stages.append(try .averagePool(channels: width, kernelSize: kernel, stride: stride, pads: padding?.pads ?? pads, padValue: padding?.value))
                    } catch { return .failure(error) }
                    padding = nil
                case .padding(let pad):
                    guard padding == nil else { return .failure(ReparamRefusal("two paddings in a row")) }
                    padding = pad
                }
            }
            if padding != nil { return .failure(ReparamRefusal("a padding with values that no conv or average pool reads")) }
            // The sum's factor (Sub's -1, a layer scale) as a last per-channel stage.
            if branch.factor.contains(where: { $0 != 1 }) {
                guard branch.factor.count == 1 || branch.factor.count == width else {
                    return .failure(ReparamRefusal("a scale of \(branch.factor.count) values multiplies a branch of \(width) channels"))
                }
                let factor = branch.factor.count == 1 ? [Double](repeating: branch.factor[0], count: width) : branch.factor
                do { stages.append(try .channelAffine(scale: factor, shift: [Double](repeating: 0, count: width))) } catch { return .failure(error) }
            }
            convBranches.append(stages)
        }
        let reads = branches.flatMap(\.stages)
        let type = reads.compactMap(\.type).first ?? .float32
        guard reads.compactMap(\.type).allSatisfy({ $0 == type }) else {
            return .failure(ReparamRefusal("the branches' weights have different element types"))
        }
        return .success(LinearBlockMatch(
            root: root, name: label(root), source: source, output: output, branchNodes: branches.map(\.nodes), branchFactors: branches.map(\.factor), adds: adds,
            block: LinearBlock(branches: convBranches, inChannels: inChannels), elementType: type,
            constantNodes: scales.reduce(into: reads.reduce(into: Set<Int>()) { $0.formUnion($1.nodes) }) { $0.formUnion($1.nodes) },
            constantInitializers: scales.reduce(into: reads.reduce(into: Set<String>()) { $0.formUnion($1.initializers) }) { $0.formUnion($1.initializers) },
            external: reads.contains(where: \.external)))
    }

    /// "Add 'name'" or "Conv (output 'y')".
    func label(_ k: Int) -> String {
        let node = index.nodes[k]
        return node.name.isEmpty ? "\(node.opType) (output '\(node.outputs.first ?? "")')" : "\(node.opType) '\(node.name)'"
    }

    // MARK: Stages

    private func constant(_ name: String) throws(ONNXError) -> Result<ConstantValue, ReparamRefusal> {
        do { return .success(try constants.float(name)) } catch {
            switch error {
            case .rejected(let why): return .failure(ReparamRefusal(why))
            case .invalid(let error): throw error
            }
        }
    }

    private func stage(_ k: Int) throws(ONNXError) -> Result<StageRead, ReparamRefusal> {
        let node = index.nodes[k]
        switch node.opType {
        case "Conv": return try convStage(node)
        case "BatchNormalization": return try batchNormStage(node)
        default: return averagePoolStage(node)
        }
    }

    /// Explicit pads, or none for VALID; SAME_* would depend on the input size.
    private func pads(_ node: NodeView) -> Result<[Int], ReparamRefusal> {
        let autoPad = node.stringAttribute("auto_pad") ?? "NOTSET"
        guard autoPad == "NOTSET" || autoPad == "VALID" else { return .failure(ReparamRefusal("auto_pad \(autoPad) pads by the input size")) }
        let pads = autoPad == "VALID" ? [0, 0, 0, 0] : (node.intsAttribute("pads") ?? [0, 0, 0, 0]).map { Int(clamping: $0) }
        guard pads.count == 4 else { return .failure(ReparamRefusal("not a 2-D op")) }
        return .success(pads)
    }

    private func pair(_ node: NodeView, _ name: String) -> [Int] {
        (node.intsAttribute(name) ?? [1, 1]).map { Int(clamping: $0) }
    }

    private func convStage(_ node: NodeView) throws(ONNXError) -> Result<StageRead, ReparamRefusal> {
        let inputs = node.inputs
        guard inputs.count == 2 || inputs.count == 3 else { return .failure(ReparamRefusal("a Conv without a weight")) }
        let weight: ConstantValue
        switch try constant(inputs[1]) {
        case .success(let value): weight = value
        case .failure(let refusal): return .failure(ReparamRefusal("its weight \(refusal.description)"))
        }
        var bias: ConstantValue?
        if inputs.count == 3, !inputs[2].isEmpty {
            switch try constant(inputs[2]) {
            case .success(let value): bias = value
            case .failure(let refusal): return .failure(ReparamRefusal("its bias \(refusal.description)"))
            }
        }
        guard weight.shape.count == 4 else { return .failure(ReparamRefusal("not a 2-D convolution")) }
        let padding: [Int]
        switch pads(node) {
        case .success(let p): padding = p
        case .failure(let refusal): return .failure(refusal)
        }
        let kernelSize = Array(weight.shape[2...])
        if let declared = node.intsAttribute("kernel_shape"), declared.map({ Int(clamping: $0) }) != kernelSize {
            return .failure(ReparamRefusal("kernel_shape \(declared) disagrees with the weight's shape \(weight.shape)"))
        }
        let groups = Int(clamping: node.intAttribute("group") ?? 1)
        do {
            let conv = try AffineConv(outChannels: weight.shape[0], inChannels: weight.shape[1] * max(groups, 1), groups: groups, kernelSize: kernelSize,
                                      stride: pair(node, "strides"), dilation: pair(node, "dilations"), pads: padding,
                                      kernel: weight.doubles, bias: bias?.doubles)
            return .success(StageRead(stage: .conv(conv), type: weight.type, nodes: weight.nodes.union(bias?.nodes ?? []),
                                      initializers: weight.initializers.union(bias?.initializers ?? []), external: weight.external,
                                      description: "Conv \(kernelSize[0])x\(kernelSize[1])"))
        } catch {
            return .failure(error)
        }
    }

    private func batchNormStage(_ node: NodeView) throws(ONNXError) -> Result<StageRead, ReparamRefusal> {
        let inputs = node.inputs
        guard inputs.count == 5, node.outputs.dropFirst().allSatisfy(\.isEmpty), (node.intAttribute("training_mode") ?? 0) == 0,
              (node.intAttribute("spatial") ?? 1) == 1 else {
            return .failure(ReparamRefusal("a BatchNormalization in training mode"))
        }
        var parameters: [ConstantValue] = []
        for name in inputs[1...] {
            switch try constant(name) {
            case .success(let value): parameters.append(value)
            case .failure(let refusal): return .failure(ReparamRefusal("its parameter \(refusal.description)"))
            }
        }
        let count = parameters[0].values.count
        guard parameters.allSatisfy({ $0.values.count == count }) else { return .failure(ReparamRefusal("parameters of different lengths")) }
        let epsilon = Double(node.floatAttribute("epsilon") ?? 1e-5)
        let (gamma, beta, mean, variance) = (parameters[0].doubles, parameters[1].doubles, parameters[2].doubles, parameters[3].doubles)
        let scale = (0..<count).map { gamma[$0] / (variance[$0] + epsilon).squareRoot() }
        let shift = (0..<count).map { beta[$0] - mean[$0] * scale[$0] }
        do {
            return .success(StageRead(stage: .conv(try .channelAffine(scale: scale, shift: shift)), type: parameters[0].type,
                                      nodes: parameters.reduce(into: Set<Int>()) { $0.formUnion($1.nodes) },
                                      initializers: parameters.reduce(into: Set<String>()) { $0.formUnion($1.initializers) },
                                      description: "BatchNormalization"))
        } catch {
            return .failure(error)
        }
    }

    private func averagePoolStage(_ node: NodeView) -> Result<StageRead, ReparamRefusal> {
        guard let kernel = node.intsAttribute("kernel_shape")?.map({ Int(clamping: $0) }), kernel.count == 2 else {
            return .failure(ReparamRefusal("not a 2-D average pool"))
        }
        let padding: [Int]
        switch pads(node) {
        case .success(let p): padding = p
        case .failure(let refusal): return .failure(refusal)
        }
        guard (node.intAttribute("ceil_mode") ?? 0) == 0 else { return .failure(ReparamRefusal("ceil_mode pools partial windows")) }
        guard pair(node, "dilations") == [1, 1] else { return .failure(ReparamRefusal("a dilated average pool")) }
        guard (node.intAttribute("count_include_pad") ?? 0) == 1 || padding.allSatisfy({ $0 == 0 }) else {
            return .failure(ReparamRefusal("an average pool that leaves padding out of its divisor is not a convolution at the border"))
        }
        return .success(StageRead(stage: .averagePool(kernel: kernel, stride: pair(node, "strides"), pads: padding), type: nil,
                                  description: "AveragePool \(kernel[0])x\(kernel[1])"))
    }
}
