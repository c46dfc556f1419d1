import CONNXProto
import DOConvCore

/// Padding with a per-channel value, as DBB's BNAndPad writes it and the TorchScript exporter
/// exports it: `Pad` (constant 0) then `ScatterND` writes of the BN's shift into the border
/// rows and columns, each write's indices computed from the padded tensor's shape (Shape,
/// Range, Gather, Where, ...: some 65 nodes per write).
struct ValuePadding {
    /// Pixels added per side: [top, left, bottom, right].
    var pads: [Int]
    /// The border value of each channel.
    var value: [Double]
    /// The value padded (the Pad's input).
    var input: String
    /// The Pad, the writes and the index computation: removed once the padding is merged.
    var nodes: Set<Int>
    var initializers: Set<String>
}

/// Recognizes a `ValuePadding` by what it computes rather than by its nodes: the Pad, the
/// writes after it and everything they read (constants and the padded tensor's shape, never
/// another input) are run by `IndexArithmetic` on two random inputs of different sizes, and
/// must give the input padded, the border of each channel one value, the same in both.
struct ValuePaddingDetector {
    let index: GraphIndex
    let codec: TensorCodec

    /// The padding subgraph may not be larger than this (DBB's is about 270 nodes).
    static let maxNodes = 4096

    /// The padding whose result is `output` (a ScatterND or Pad node's), given the channel
    /// count; nil when `output` is no padding at all, a refusal when it looks like one but
    /// does not compute one.
    func recognize(_ output: String, channels: Int) throws(ONNXError) -> Result<ValuePadding, ReparamRefusal>? {
        // Back through the writes to the Pad.
        var value = output
        var pad: Int?
        for _ in 0..<64 {
            guard let k = index.producer[value] else { return nil }
            let node = index.nodes[k]
            if node.isOp("Pad") { pad = k; break }
            guard node.isOp("ScatterND"), let data = node.inputs.first else { return nil }
            value = data
        }
        guard let pad else { return nil }
        let padNode = index.nodes[pad]
        guard (padNode.stringAttribute("mode") ?? "constant") == "constant", padNode.inputs.count >= 2, padNode.inputs.count <= 3,
              let input = padNode.inputs.first, !input.isEmpty else {
            return .failure(ReparamRefusal("a Pad that is not a constant padding of one tensor"))
        }
        // Everything the result depends on, back to the padded input and to constants.
        var nodes = Set<Int>(), initializers = Set<String>(), stack = [output]
        var seen = Set<String>()
        while let name = stack.popLast() {
            guard !name.isEmpty, name != input, seen.insert(name).inserted else { continue }
            if index.initializers[name] != nil { initializers.insert(name); continue }
            guard let k = index.producer[name] else {
                return .failure(ReparamRefusal("the values written into the padding depend on '\(name)', not only on constants and the padded shape"))
            }
            guard nodes.insert(k).inserted else { continue }
            guard nodes.count <= Self.maxNodes else { return .failure(ReparamRefusal("the padding's index computation has more than \(Self.maxNodes) nodes")) }
            stack += index.nodes[k].inputs
        }
        // Nothing outside reads its values (the result aside), and the input feeds the Pad only.
        for k in nodes {
            for produced in index.nodes[k].outputs where !produced.isEmpty && produced != output {
                if index.isPinned(produced) || index.uses(of: produced).contains(where: { !nodes.contains($0.node) }) {
                    return .failure(ReparamRefusal("'\(produced)', inside the padding, is also read elsewhere"))
                }
            }
        }
        guard index.uses(of: input).allSatisfy({ nodes.contains($0.node) }), !index.isPinned(input) else {
            return .failure(ReparamRefusal("the padded value '\(input)' is also read elsewhere"))
        }
        // Run it. Exporters bake the traced size into the index arithmetic (an Expand to the
        // border's shape), so the padded size is found among its constants (or, for index
        // arithmetic that follows any size, a small one does); then a second input confirms.
        let arithmetic = IndexArithmetic(index: index, codec: codec, nodes: nodes)
        let constants: [String: IndexArithmetic.Tensor]
        switch arithmetic.constantValues(excluding: input) {
        case .success(let values): constants = values
        case .failure(let refusal): return .failure(refusal)
        }
        let padSizes: (height: Int, width: Int)
        switch arithmetic.evaluate(padNode.inputs[1], feeds: constants) {
        case .success(let pads) where pads.count == 8 && pads.values.allSatisfy({ $0 >= 0 && $0 < 1e6 }):
            let p = pads.values.map { Int($0) }
            guard p[0] == 0, p[1] == 0, p[4] == 0, p[5] == 0 else { return .failure(ReparamRefusal("a Pad that pads the batch or channel axis")) }
            padSizes = (p[2] + p[6], p[3] + p[7])
        case .success: return .failure(ReparamRefusal("a Pad whose pads are not those of a 2-D padding"))
        case .failure(let refusal): return .failure(refusal)
        }
        let numbers = Set(constants.values.filter { $0.count <= 64 }.flatMap(\.values).filter { $0 >= 1 && $0 <= 65536 && $0 == $0.rounded() }.map { Int($0) })
        let heights = Array(Set(numbers.flatMap { [$0, $0 - padSizes.height] }.filter { $0 >= 1 }).union([3, 5])).sorted().prefix(16)
        let widths = Array(Set(numbers.flatMap { [$0, $0 - padSizes.width] }.filter { $0 >= 1 }).union([4, 3])).sorted().prefix(16)
        var generator = SeededGenerator(seed: 0xBADD)
        var lastRefusal = ReparamRefusal("the writes after the Pad do not run on any size its constants name")
        for height in heights {
            for width in widths {
                var found: (pads: [Int], value: [Double])?
                for _ in 0..<2 {
                    let probe = IndexArithmetic.Tensor(shape: [1, channels, height, width],
                                                       values: (0..<(channels * height * width)).map { _ in Double.random(in: -1...1, using: &generator) })
                    var feeds = constants
                    feeds[input] = probe
                    guard case .success(let result) = arithmetic.evaluate(output, feeds: feeds) else { found = nil; break }
                    guard result.shape == [1, channels, height + padSizes.height, width + padSizes.width] else {
                        lastRefusal = ReparamRefusal("the Pad and writes turn a \(probe.shape) tensor into \(result.shape)")
                        found = nil
                        break
                    }
                    switch Self.paddingOf(probe, in: result) {
                    case .success(let padding) where found.map({ $0.pads == padding.pads && $0.value == padding.value }) ?? true:
                        found = padding
                    case .success:
                        return .failure(ReparamRefusal("the padding's values differ from one input to the next"))
                    case .failure(let refusal):
                        return .failure(refusal)
                    }
                }
                if let found { return .success(ValuePadding(pads: found.pads, value: found.value, input: input, nodes: nodes, initializers: initializers)) }
            }
        }
        return .failure(lastRefusal)
    }

    /// The pads and border values that turn `input` into `padded`, or why there are none. The
    /// pads come from the sizes and a search for where the input lies (the padding must be the
    /// same constant per channel everywhere outside it).
    static func paddingOf(_ input: IndexArithmetic.Tensor, in padded: IndexArithmetic.Tensor) -> Result<(pads: [Int], value: [Double]), ReparamRefusal> {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (ph, pw) = (padded.shape[2], padded.shape[3])
        for top in 0...(ph - h) {
            for left in 0...(pw - w) {
                var matches = true
                var value = [Double](repeating: .nan, count: c)
                check: for b in 0..<n {
                    for channel in 0..<c {
                        for y in 0..<ph {
                            for x in 0..<pw {
                                let got = padded.values[((b * c + channel) * ph + y) * pw + x]
                                if y >= top, y < top + h, x >= left, x < left + w {
                                    if got != input.values[((b * c + channel) * h + y - top) * w + x - left] { matches = false; break check }
                                } else if value[channel].isNaN {
                                    value[channel] = got
                                } else if got != value[channel] {
                                    matches = false
                                    break check
                                }
                            }
                        }
                    }
                }
                if matches {
                    let pads = [top, left, ph - h - top, pw - w - left]
                    return .success((pads, value.map { $0.isNaN ? 0 : $0 }))
                }
            }
        }
        return .failure(ReparamRefusal("the writes after the Pad do not fill its border with one value per channel"))
    }
}

/// A small evaluator for the arithmetic exporters build around a padding: the ops of
/// `supported`, on tensors of a few thousand elements, every element a Double (INT64 indices
/// are exact there up to 2^53, far beyond any shape). Evaluates only the nodes it is given.
struct IndexArithmetic {
    let index: GraphIndex
    let codec: TensorCodec
    let nodes: Set<Int>
    /// Elements every run of this evaluator may compute in all, shared by its copies: a
    /// hostile file cannot make the search for the padded size take long.
    let budget = Budget(elements: 1 << 24)

    final class Budget {
        // One recognition uses it, on one thread.
        var elements: Int
        init(elements: Int) { self.elements = elements }
    }

    /// Tensors larger than this are refused (a shape computation never needs them).
    static let maxElements = 1 << 20

    struct Tensor: Equatable {
        var shape: [Int]
        var values: [Double]
        var count: Int { values.count }
    }

    static let supported: Set<String> = ["Constant", "ConstantOfShape", "Shape", "Gather", "Cast", "Range", "Reshape", "Slice", "Transpose",
                                         "Concat", "Unsqueeze", "Squeeze", "Expand", "Add", "Sub", "Mul", "Equal", "Where", "Identity",
                                         "Pad", "ScatterND"]

    /// The values of every node that does not depend on `input` (computed once, then given
    /// as feeds to each run).
    func constantValues(excluding input: String) -> Result<[String: Tensor], ReparamRefusal> {
        var dependent: Set<String> = [input]
        var values: [String: Tensor] = [:]
        for k in nodes.sorted() {
            let node = index.nodes[k]
            if node.inputs.contains(where: { dependent.contains($0) }) { dependent.formUnion(node.outputs); continue }
            for output in node.outputs where !output.isEmpty && values[output] == nil {
                do { _ = try value(output, values: &values, depth: 0) } catch { return .failure(error) }
            }
        }
        return .success(values)
    }

    /// The value `name` given `feeds`.
    func evaluate(_ name: String, feeds: [String: Tensor]) -> Result<Tensor, ReparamRefusal> {
        var values = feeds
        do {
            return .success(try value(name, values: &values, depth: 0))
        } catch {
            return .failure(error)
        }
    }

    private func value(_ name: String, values: inout [String: Tensor], depth: Int) throws(ReparamRefusal) -> Tensor {
        if let known = values[name] { return known }
        guard depth < 512 else { throw ReparamRefusal("the padding's index computation is too deep") }
        if let tensor = index.initializers[name] { return try initializer(tensor) }
        guard let k = index.producer[name], nodes.contains(k) else { throw ReparamRefusal("'\(name)' is outside the padding") }
        let node = index.nodes[k]
        guard node.isStandardDomain, Self.supported.contains(node.opType) else {
            throw ReparamRefusal("the padding's index computation uses \(node.opType), which doconv does not evaluate")
        }
        var inputs: [Tensor?] = []
        for input in node.inputs { inputs.append(input.isEmpty ? nil : try value(input, values: &values, depth: depth + 1)) }
        let result = try compute(node, inputs)
        guard result.count <= Self.maxElements, result.count == result.shape.reduce(1, *) else {
            throw ReparamRefusal("\(node.opType) in the padding's index computation gives \(result.shape)")
        }
        budget.elements -= max(result.count, 1)
        guard budget.elements >= 0 else { throw ReparamRefusal("the padding's index computation takes too much work to evaluate") }
        if let output = node.outputs.first { values[output] = result }
        return result
    }

    private func initializer(_ tensor: UnsafeMutablePointer<Onnx__TensorProto>) throws(ReparamRefusal) -> Tensor {
        let shape = Proto.elements(tensor.pointee.dims, tensor.pointee.n_dims).map { Int(clamping: $0) }
        guard let count = DOConvCore.Tensor.elementCount(of: shape), count <= Self.maxElements else { throw ReparamRefusal("a constant of shape \(shape)") }
        do {
            if tensor.pointee.data_type == ONNXDataType.int64 { return Tensor(shape: shape, values: try codec.int64s(of: tensor).map(Double.init)) }
            if TensorCodec.elementType(ofDataType: tensor.pointee.data_type) == .float64 { return Tensor(shape: shape, values: try codec.doubles(of: tensor)) }
            return Tensor(shape: shape, values: try codec.floats(of: tensor).2.map(Double.init))
        } catch {
            throw ReparamRefusal("a constant the padding reads cannot be decoded: \(error)")
        }
    }

    // MARK: Ops

    /// Integer values; INT64's extremes (Slice's "to the end") clamp far beyond any size.
    private func ints(_ tensor: Tensor?) throws(ReparamRefusal) -> [Int] {
        guard let tensor else { throw ReparamRefusal("a missing input") }
        var result: [Int] = []
        for value in tensor.values {
            guard value.isFinite, value == value.rounded() else { throw ReparamRefusal("an index \(value) that is not an integer") }
            result.append(value >= 9e15 ? Int.max / 4 : (value <= -9e15 ? Int.min / 4 : Int(value)))
        }
        return result
    }

    private func compute(_ node: NodeView, _ inputs: [Tensor?]) throws(ReparamRefusal) -> Tensor {
        func input(_ k: Int) throws(ReparamRefusal) -> Tensor {
            guard k < inputs.count, let tensor = inputs[k] else { throw ReparamRefusal("\(node.opType) lacks input \(k)") }
            return tensor
        }
        switch node.opType {
        case "Constant":
            if let tensor = node.tensorAttribute("value") { return try initializer(tensor) }
            if let ints = node.intsAttribute("value_ints"), node.attribute("value_ints") != nil { return Tensor(shape: [ints.count], values: ints.map(Double.init)) }
            if let int = node.intAttribute("value_int") { return Tensor(shape: [], values: [Double(int)]) }
            if let float = node.floatAttribute("value_float") { return Tensor(shape: [], values: [Double(float)]) }
            throw ReparamRefusal("a Constant of a kind doconv does not read")
        case "Identity": return try input(0)
        case "Cast":
            let x = try input(0)
            switch node.intAttribute("to") ?? 0 {
            case 1, 10, 11, 16: return x
            case 9: return Tensor(shape: x.shape, values: x.values.map { $0 != 0 ? 1 : 0 })
            default: return Tensor(shape: x.shape, values: x.values.map { $0.rounded(.towardZero) })
            }
        case "ConstantOfShape":
            let shape = try ints(try input(0))
            guard shape.allSatisfy({ $0 >= 0 }), let count = DOConvCore.Tensor.elementCount(of: shape), count <= Self.maxElements else {
                throw ReparamRefusal("ConstantOfShape of \(shape)")
            }
            var fill = 0.0
            if let tensor = node.tensorAttribute("value") { fill = try initializer(tensor).values.first ?? 0 }
            return Tensor(shape: shape, values: [Double](repeating: fill, count: count))
        case "Shape":
            let shape = try input(0).shape
            let rank = shape.count
            func clamp(_ v: Int64) -> Int { max(0, min(rank, Int(clamping: v < 0 ? v + Int64(rank) : v))) }
            let start = clamp(node.intAttribute("start") ?? 0), end = clamp(node.intAttribute("end") ?? Int64(rank))
            let dims = start < end ? Array(shape[start..<end]) : []
            return Tensor(shape: [dims.count], values: dims.map(Double.init))
        case "Gather":
            let (x, indices) = (try input(0), try ints(try input(1)))
            let axis = try normalized(Int(clamping: node.intAttribute("axis") ?? 0), rank: x.shape.count)
            let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *), size = x.shape[axis]
            var values: [Double] = []
            for o in 0..<outer {
                for i in indices {
                    let j = i < 0 ? i + size : i
                    guard j >= 0, j < size else { throw ReparamRefusal("Gather index \(i) out of \(size)") }
                    values += x.values[((o * size + j) * inner)..<((o * size + j + 1) * inner)]
                }
            }
            return Tensor(shape: Array(x.shape[..<axis]) + (inputs[1]?.shape ?? []) + Array(x.shape[(axis + 1)...]), values: values)
        case "Range":
            let (start, limit, delta) = (try input(0).values.first ?? 0, try input(1).values.first ?? 0, try input(2).values.first ?? 1)
            guard delta != 0 else { throw ReparamRefusal("Range with step 0") }
            let count = max(0, Int(((limit - start) / delta).rounded(.up)))
            guard count <= Self.maxElements else { throw ReparamRefusal("Range of \(count) elements") }
            return Tensor(shape: [count], values: (0..<count).map { start + Double($0) * delta })
        case "Reshape":
            let x = try input(0)
            var target = try ints(try input(1))
            for (k, dim) in target.enumerated() where dim == 0 && (node.intAttribute("allowzero") ?? 0) == 0 && k < x.shape.count { target[k] = x.shape[k] }
            if let unknown = target.firstIndex(of: -1) {
                let known = target.enumerated().filter { $0.offset != unknown }.reduce(1) { $0 * $1.element }
                guard known > 0, x.count % known == 0 else { throw ReparamRefusal("Reshape of \(x.shape) to \(target)") }
                target[unknown] = x.count / known
            }
            guard target.allSatisfy({ $0 >= 0 }), target.reduce(1, *) == x.count else { throw ReparamRefusal("Reshape of \(x.shape) to \(target)") }
            return Tensor(shape: target, values: x.values)
        case "Unsqueeze", "Squeeze":
            let x = try input(0)
            let axes = inputs.count > 1 ? try ints(inputs[1]) : (node.intsAttribute("axes") ?? []).map { Int(clamping: $0) }
            var shape = x.shape
            if node.opType == "Unsqueeze" {
                let rank = shape.count + axes.count
                for axis in try axes.map({ (a: Int) throws(ReparamRefusal) -> Int in try normalized(a, rank: rank) }).sorted() { shape.insert(1, at: axis) }
            } else {
                let drop = try Set(axes.map { (a: Int) throws(ReparamRefusal) -> Int in try normalized(a, rank: shape.count) })
                shape = shape.enumerated().filter { axes.isEmpty ? $0.element != 1 : !drop.contains($0.offset) }.map(\.element)
            }
            return Tensor(shape: shape, values: x.values)
        case "Concat":
            let parts = try (0..<inputs.count).map { (k: Int) throws(ReparamRefusal) -> Tensor in try input(k) }
            guard let first = parts.first else { throw ReparamRefusal("Concat of nothing") }
            let axis = try normalized(Int(clamping: node.intAttribute("axis") ?? 0), rank: first.shape.count)
            guard parts.allSatisfy({ $0.shape.count == first.shape.count }) else { throw ReparamRefusal("Concat of different ranks") }
            let outer = first.shape[..<axis].reduce(1, *)
            var values: [Double] = []
            for o in 0..<outer {
                for part in parts {
                    let inner = part.shape[axis...].reduce(1, *)
                    values += part.values[(o * inner)..<((o + 1) * inner)]
                }
            }
            var shape = first.shape
            shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
            return Tensor(shape: shape, values: values)
        case "Transpose":
            let x = try input(0)
            let perm = (node.intsAttribute("perm") ?? Array((0..<x.shape.count).reversed()).map(Int64.init)).map { Int(clamping: $0) }
            guard perm.sorted() == Array(0..<x.shape.count) else { throw ReparamRefusal("Transpose by \(perm)") }
            let shape = perm.map { x.shape[$0] }
            let strides = Self.strides(x.shape)
            var values = [Double](repeating: 0, count: x.count)
            for k in 0..<x.count {
                var rest = k, source = 0
                for (axis, size) in zip(perm, shape).reversed() {
                    source += (rest % size) * strides[axis]
                    rest /= size
                }
                values[k] = x.values[source]
            }
            return Tensor(shape: shape, values: values)
        case "Slice":
            let x = try input(0)
            let starts = try ints(try input(1)), ends = try ints(try input(2))
            let axes = inputs.count > 3 && inputs[3] != nil ? try ints(inputs[3]) : Array(0..<starts.count)
            let steps = inputs.count > 4 && inputs[4] != nil ? try ints(inputs[4]) : [Int](repeating: 1, count: starts.count)
            guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else { throw ReparamRefusal("Slice with mismatched inputs") }
            var ranges = x.shape.map { Array(0..<$0) }
            for (k, axisValue) in axes.enumerated() {
                let axis = try normalized(axisValue, rank: x.shape.count), size = x.shape[axis], step = steps[k]
                guard step != 0 else { throw ReparamRefusal("Slice with step 0") }
                func clamped(_ v: Int, low: Int, high: Int) -> Int { max(low, min(high, v < 0 ? v + size : v)) }
                var picked: [Int] = []
                if step > 0 {
                    var i = clamped(starts[k], low: 0, high: size)
                    let end = clamped(ends[k], low: 0, high: size)
                    while i < end { picked.append(i); i += step }
                } else {
                    var i = clamped(starts[k], low: -1, high: size - 1)
                    let end = clamped(ends[k], low: -1, high: size - 1)
                    while i > end { picked.append(i); i += step }
                }
                ranges[axis] = picked
            }
            return Self.gather(x, ranges)
        case "Expand":
            let x = try input(0)
            let target = try ints(try input(1))
            return try broadcast([x], to: try broadcastShape([x.shape, target])) { $0[0] }
        case "Add", "Sub", "Mul", "Equal":
            let (a, b) = (try input(0), try input(1))
            let op: ([Double]) -> Double
            switch node.opType {
            case "Add": op = { $0[0] + $0[1] }
            case "Sub": op = { $0[0] - $0[1] }
            case "Mul": op = { $0[0] * $0[1] }
            default: op = { $0[0] == $0[1] ? 1 : 0 }
            }
            return try broadcast([a, b], to: try broadcastShape([a.shape, b.shape]), op)
        case "Where":
            let (c, a, b) = (try input(0), try input(1), try input(2))
            return try broadcast([c, a, b], to: try broadcastShape([c.shape, a.shape, b.shape])) { $0[0] != 0 ? $0[1] : $0[2] }
        case "Pad":
            let x = try input(0)
            let pads = try ints(try input(1))
            let fill = inputs.count > 2 ? inputs[2]?.values.first ?? 0 : 0
            let rank = x.shape.count
            guard pads.count == 2 * rank, pads.allSatisfy({ $0 >= 0 }), inputs.count < 4 else { throw ReparamRefusal("Pad by \(pads)") }
            let shape = (0..<rank).map { x.shape[$0] + pads[$0] + pads[$0 + rank] }
            guard let count = DOConvCore.Tensor.elementCount(of: shape), count <= Self.maxElements else { throw ReparamRefusal("Pad to \(shape)") }
            var values = [Double](repeating: fill, count: count)
            let (from, to) = (Self.strides(x.shape), Self.strides(shape))
            for k in 0..<x.count {
                var target = 0
                for axis in 0..<rank { target += ((k / from[axis]) % x.shape[axis] + pads[axis]) * to[axis] }
                values[target] = x.values[k]
            }
            return Tensor(shape: shape, values: values)
        case "ScatterND":
            guard (node.stringAttribute("reduction") ?? "none") == "none" else { throw ReparamRefusal("ScatterND with a reduction") }
            var data = try input(0)
            let indices = try input(1), updates = try input(2)
            guard let depth = indices.shape.last, depth <= data.shape.count else { throw ReparamRefusal("ScatterND indices of shape \(indices.shape)") }
            let slice = data.shape[depth...].reduce(1, *)
            let count = indices.count / max(depth, 1)
            guard updates.count == count * slice else { throw ReparamRefusal("ScatterND updates of shape \(updates.shape)") }
            let strides = Self.strides(data.shape)
            let at = try ints(indices)
            for k in 0..<count {
                var offset = 0
                for axis in 0..<depth {
                    var i = at[k * depth + axis]
                    if i < 0 { i += data.shape[axis] }
                    guard i >= 0, i < data.shape[axis] else { throw ReparamRefusal("ScatterND index out of range") }
                    offset += i * strides[axis]
                }
                for j in 0..<slice { data.values[offset + j] = updates.values[k * slice + j] }
            }
            return data
        default:
            throw ReparamRefusal("the padding's index computation uses \(node.opType), which doconv does not evaluate")
        }
    }

    private func normalized(_ axis: Int, rank: Int) throws(ReparamRefusal) -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0, a < max(rank, 1) else { throw ReparamRefusal("axis \(axis) of a rank-\(rank) tensor") }
        return a
    }

    static func strides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        for axis in stride(from: shape.count - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
        return strides
    }

    /// The elements at every combination of `picks` (one list of indices per axis).
    static func gather(_ x: Tensor, _ picks: [[Int]]) -> Tensor {
        let strides = Self.strides(x.shape)
        var offsets = [0]
        for (axis, picked) in picks.enumerated() { offsets = offsets.flatMap { base in picked.map { base + $0 * strides[axis] } } }
        return Tensor(shape: picks.map(\.count), values: offsets.map { x.values[$0] })
    }

    private func broadcastShape(_ shapes: [[Int]]) throws(ReparamRefusal) -> [Int] {
        let rank = shapes.map(\.count).max() ?? 0
        var result = [Int](repeating: 1, count: rank)
        for shape in shapes {
            for (k, dim) in shape.enumerated() {
                let axis = rank - shape.count + k
                if result[axis] == 1 { result[axis] = dim } else if dim != 1 && dim != result[axis] {
                    throw ReparamRefusal("shapes \(shapes) do not broadcast")
                }
            }
        }
        guard let count = DOConvCore.Tensor.elementCount(of: result), count <= Self.maxElements else { throw ReparamRefusal("a broadcast to \(result)") }
        return result
    }

    private func broadcast(_ operands: [Tensor], to shape: [Int], _ op: ([Double]) -> Double) throws(ReparamRefusal) -> Tensor {
        let count = shape.reduce(1, *)
        let target = Self.strides(shape)
        let sources = operands.map { operand -> [Int] in
            let own = Self.strides(operand.shape)
            let pad = shape.count - operand.shape.count
            return (0..<shape.count).map { axis in axis < pad || operand.shape[axis - pad] == 1 ? 0 : own[axis - pad] }
        }
        var values = [Double](repeating: 0, count: count)
        var arguments = [Double](repeating: 0, count: operands.count)
        for k in 0..<count {
            for (o, operand) in operands.enumerated() {
                var offset = 0
                for axis in 0..<shape.count { offset += ((k / target[axis]) % shape[axis]) * sources[o][axis] }
                arguments[o] = operand.values[offset]
            }
            values[k] = op(arguments)
        }
        return Tensor(shape: shape, values: values)
    }
}
