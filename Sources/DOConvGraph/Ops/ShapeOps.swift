/// Ops that move or create elements without arithmetic: Constant, Identity, Dropout,
/// Reshape, Flatten, Transpose, Concat, Split, Squeeze, Unsqueeze, Shape, Size, Gather,
/// Slice, Pad, Expand, Tile, ConstantOfShape, Range (Resize is in ResizeOps).
enum ShapeOps {
    static let kernels: [String: OpKernel] = [
        "Constant": constant,
        "Identity": { ctx in [try ctx.input(0)] },
        "Dropout": { ctx in
            let x = try ctx.input(0)
            return [x, TensorValue(.bool, shape: x.shape, ints: [Int64](repeating: 1, count: x.count))]
        },
        "Reshape": reshape,
        "Flatten": { ctx in
            let x = try ctx.input(0)
            let axis = try ctx.int("axis", default: 1)
            let a = Int(axis) < 0 ? Int(axis) + x.rank : Int(axis)
            guard a >= 0, a <= x.rank else { throw ctx.invalid("axis \(axis) out of range") }
            return [with(x, shape: [try TensorMath.elementCount(x.shape.prefix(a), op: ctx.nodeLabel),
                                    try TensorMath.elementCount(x.shape.dropFirst(a), op: ctx.nodeLabel)])]
        },
        "Transpose": { ctx in
            let x = try ctx.input(0)
            let perm = try ctx.ints("perm").map { $0.map(Int.init) } ?? Array((0..<x.rank).reversed())
            return [try transpose(ctx, x, perm)]
        },
        "Concat": concat,
        "Split": split,
        "Squeeze": squeeze,
        "Unsqueeze": unsqueeze,
        "Shape": { ctx in
            let x = try ctx.input(0)
            let r = Int64(x.rank)
            func clampAxis(_ v: Int64) -> Int { Int(min(max(v < 0 ? v + r : v, 0), r)) }
            let start = clampAxis(try ctx.int("start", default: 0))
            let end = clampAxis(try ctx.int("end", default: r))
            let dims = start < end ? Array(x.shape[start..<end]) : []
            return [TensorValue(.int64, shape: [dims.count], ints: dims.map { Int64($0) })]
        },
        "Size": { ctx in [TensorValue.scalar(Int64(try ctx.input(0).count))] },
        "Gather": gather,
        "Slice": slice,
        "Pad": pad,
        "Expand": { ctx in
            let x = try ctx.input(0)
            let target = try ctx.input(1).int64s.map(Int.init)
            guard let shape = TensorMath.broadcast(x.shape, target) else { throw ctx.invalid("\(x.shape) does not expand to \(target)") }
            try TensorMath.checkShape(shape, op: ctx.nodeLabel)
            return [select(x, shape: shape, indices: try TensorMath.broadcastIndices(from: x.shape, to: shape, op: ctx.nodeLabel))]
        },
        "Tile": { ctx in
            let x = try ctx.input(0)
            let repeats = try ctx.input(1).int64s.map(Int.init)
            guard repeats.count == x.rank, repeats.allSatisfy({ $0 >= 0 }) else { throw ctx.invalid("repeats \(repeats) do not fit rank \(x.rank)") }
            let shape = try zip(x.shape, repeats).map { try TensorMath.checkedProduct($0, $1, op: ctx.nodeLabel) }
            try TensorMath.checkShape(shape, op: ctx.nodeLabel)
            let strides = try TensorMath.strides(of: x.shape, op: ctx.nodeLabel)
            let indices = (0..<(try TensorMath.elementCount(shape, op: ctx.nodeLabel))).map { flat in
                zip(TensorValue.index(of: flat, in: shape).enumerated(), strides).reduce(0) { $0 + ($1.0.element % x.shape[$1.0.offset]) * $1.1 }
            }
            return [select(x, shape: shape, indices: indices)]
        },
        "ConstantOfShape": { ctx in
            let shape = try ctx.input(0).int64s.map(Int.init)
            try TensorMath.checkShape(shape, op: ctx.nodeLabel)
            let value: TensorValue
            switch ctx.node[attribute: "value"] {
            case .tensor(let t)?: value = t
            case nil: value = TensorValue.scalar(0.0)
            default: throw ctx.invalid("value is not a tensor")
            }
            guard value.count == 1 else { throw ctx.invalid("value has \(value.count) elements") }
            return [select(value, shape: shape, indices: [Int](repeating: 0, count: try TensorMath.elementCount(shape, op: ctx.nodeLabel)))]
        },
        "Range": { ctx in
            let start = try ctx.input(0)
            let limit = try ctx.input(1)
            let delta = try ctx.input(2)
            if case .ints = start.storage {
                let (s, l, d) = (start.int64s[0], limit.int64s[0], delta.int64s[0])
                guard d != 0 else { throw ctx.invalid("delta is 0") }
                let q = ((Double(l) - Double(s)) / Double(d)).rounded(.up)
                let n = max(0, Int(clamping: Int64(max(-1e18, min(1e18, q)))))
                try TensorMath.checkShape([n], op: ctx.nodeLabel)
                return [TensorValue(start.type, shape: [n], ints: (0..<n).map { s + Int64($0) * d })]
            }
            let (s, l, d) = (start.doubles[0], limit.doubles[0], delta.doubles[0])
            guard d != 0 else { throw ctx.invalid("delta is 0") }
            let count = ((l - s) / d).rounded(.up)
            guard count.isFinite else { throw ctx.invalid("Range of \(s) to \(l) by \(d) is not finite") }
            let n = max(0, Int(clamping: Int64(max(-1e18, min(1e18, count)))))
            try TensorMath.checkShape([n], op: ctx.nodeLabel)
            return [TensorValue(start.type, shape: [n], floats: TensorMath.stored((0..<n).map { s + Double($0) * d }, as: start.type))]
        },
    ]

    /// `x`'s elements at `indices` (flat), laid out as `shape`.
    static func select(_ x: TensorValue, shape: [Int], indices: [Int]) -> TensorValue {
        switch x.storage {
        case .floats(let v): return TensorValue(x.type, shape: shape, floats: indices.map { v[$0] })
        case .ints(let v): return TensorValue(x.type, shape: shape, ints: indices.map { v[$0] })
        case .opaque: return TensorValue(type: x.type, shape: shape, storage: x.storage)
        }
    }

    /// `x`'s elements at `indices`, or `fill` where the index is -1.
    static func select(_ x: TensorValue, shape: [Int], indices: [Int], fill: Double) -> TensorValue {
        switch x.storage {
        case .floats(let v): return TensorValue(x.type, shape: shape, floats: indices.map { $0 < 0 ? fill : v[$0] })
        case .ints(let v): return TensorValue(x.type, shape: shape, ints: indices.map { $0 < 0 ? Int64(fill) : v[$0] })
        case .opaque: return TensorValue(type: x.type, shape: shape, storage: x.storage)
        }
    }

    static func with(_ x: TensorValue, shape: [Int]) -> TensorValue { TensorValue(type: x.type, shape: shape, storage: x.storage) }

    static func constant(_ ctx: OpContext) throws -> [TensorValue] {
        for attribute in ctx.node.attributes {
            switch (attribute.name, attribute.value) {
            case ("value", .tensor(let t)): return [t]
            case ("value_float", .float(let v)): return [TensorValue.scalar(v)]
            case ("value_floats", .floats(let v)): return [TensorValue(.float, shape: [v.count], floats: v)]
            case ("value_int", .int(let v)): return [TensorValue.scalar(v)]
            case ("value_ints", .ints(let v)): return [TensorValue(.int64, shape: [v.count], ints: v)]
            default: continue
            }
        }
        throw ctx.unsupported("a Constant without a tensor, float(s) or int(s) value")
    }

    static func reshape(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        let target: [Int64]
        if let shapeInput = ctx.optionalInput(1) { target = shapeInput.int64s } else if let attr = try ctx.ints("shape") { target = attr } else {
            throw ctx.invalid("no shape")
        }
        let allowZero = try ctx.int("allowzero", default: 0) != 0
        var shape: [Int] = []
        var inferred: Int?
        for (k, dim) in target.enumerated() {
            if dim == -1 {
                guard inferred == nil else { throw ctx.invalid("two -1 dims in \(target)") }
                inferred = k
                shape.append(1)
            } else if dim == 0, !allowZero {
                guard k < x.rank else { throw ctx.invalid("dim 0 copies a dim the input lacks") }
                shape.append(x.shape[k])
            } else {
                guard dim >= 0 else { throw ctx.invalid("invalid dim \(dim)") }
                shape.append(Int(dim))
            }
        }
        // The target's dims come from the model: multiplied with overflow checks.
        let known = try TensorMath.elementCount(shape, op: ctx.nodeLabel)
        if let inferred {
            guard known > 0, x.count % known == 0 else { throw ctx.invalid("cannot reshape \(x.shape) to \(target)") }
            shape[inferred] = x.count / known
        }
        guard try TensorMath.elementCount(shape, op: ctx.nodeLabel) == x.count else {
            throw ctx.invalid("cannot reshape \(x.shape) to \(target)")
        }
        return [with(x, shape: shape)]
    }

    static func transpose(_ ctx: OpContext, _ x: TensorValue, _ perm: [Int]) throws -> TensorValue {
        guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else { throw ctx.invalid("perm \(perm) does not fit rank \(x.rank)") }
        let shape = perm.map { x.shape[$0] }
        let strides = try TensorMath.strides(of: x.shape, op: ctx.nodeLabel)
        let permStrides = perm.map { strides[$0] }
        return select(x, shape: shape, indices: try TensorMath.offsets(of: shape, strides: permStrides, op: ctx.nodeLabel))
    }

    static func concat(_ ctx: OpContext) throws -> [TensorValue] {
        let parts = ctx.inputs.compactMap { $0 }
        guard let first = parts.first else { throw ctx.invalid("no inputs") }
        let axis = try TensorMath.axis(try ctx.int("axis", default: 0), rank: first.rank, op: ctx.nodeLabel)
        for part in parts {
            guard part.rank == first.rank, part.type == first.type,
                  zip(part.shape, first.shape).enumerated().allSatisfy({ $0.offset == axis || $0.element.0 == $0.element.1 }) else {
                throw ctx.invalid("inputs \(parts.map(\.shape)) do not concatenate on axis \(axis)")
            }
        }
        var shape = first.shape
        shape[axis] = try parts.reduce(0) { try TensorMath.checkedSum($0, $1.shape[axis], op: ctx.nodeLabel) }
        let outer = try TensorMath.elementCount(first.shape.prefix(axis), op: ctx.nodeLabel)
        let chunks = try parts.map { try TensorMath.elementCount($0.shape.dropFirst(axis), op: ctx.nodeLabel) }
        let count = try TensorMath.allocationCount(shape, op: ctx.nodeLabel)
        // An empty output copies nothing: no loop over an outer run that may be 2^40 long.
        let rows = count == 0 ? 0 : outer
        switch first.storage {
        case .floats:
            var out: [Double] = []
            out.reserveCapacity(count)
            for o in 0..<rows {
                for (part, chunk) in zip(parts, chunks) {
                    out += part.doubles[(o * chunk)..<((o + 1) * chunk)]
                }
            }
            return [TensorValue(first.type, shape: shape, floats: out)]
        case .ints:
            var out: [Int64] = []
            for o in 0..<rows {
                for (part, chunk) in zip(parts, chunks) {
                    out += part.int64s[(o * chunk)..<((o + 1) * chunk)]
                }
            }
            return [TensorValue(first.type, shape: shape, ints: out)]
        case .opaque:
            throw ctx.unsupported("non-numeric tensors")
        }
    }

    /// The part of `x` from `start` (inclusive) to `end` along `axis`.
    static func range(_ x: TensorValue, axis: Int, start: Int, end: Int, op: String) throws -> TensorValue {
        var shape = x.shape
        shape[axis] = end - start
        let inner = try TensorMath.elementCount(x.shape.dropFirst(axis + 1), op: op)
        let outer = try TensorMath.elementCount(x.shape.prefix(axis), op: op)
        let count = try TensorMath.allocationCount(shape, op: op)
        var indices: [Int] = []
        indices.reserveCapacity(count)
        // An empty part selects nothing: no loop over an axis that may be 2^40 long.
        for o in 0..<(count == 0 ? 0 : outer) {
            for a in start..<end {
                for i in 0..<inner { indices.append((o * x.shape[axis] + a) * inner + i) }
            }
        }
        return select(x, shape: shape, indices: indices)
    }

    static func split(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        guard x.rank > 0 else { throw ctx.invalid("a scalar cannot be split") }
        let axis = try TensorMath.axis(try ctx.int("axis", default: 0), rank: x.rank, op: ctx.nodeLabel)
        let outputs = ctx.node.outputs.count
        var sizes: [Int]
        if let given = ctx.optionalInput(1) { sizes = given.int64s.map(Int.init) } else if let given = try ctx.ints("split") { sizes = given.map(Int.init) } else {
            // At most one part per output of the node (a count from the file sizes a table).
            let n = try ctx.int("num_outputs", default: Int64(outputs))
            guard n > 0, n <= max(outputs, 1) else { throw ctx.invalid("num_outputs \(n) is out of range for \(outputs) outputs") }
            // The ceiling of dim / n, without dim + n - 1 (an empty tensor's dim may be Int.max).
            let dim = x.shape[axis]
            let chunk = dim / Int(n) + (dim % Int(n) == 0 ? 0 : 1)
            sizes = (0..<Int(n)).map { min(chunk, max(0, dim - $0 * chunk)) }
        }
        // The sizes are the file's: summed with overflow checks.
        guard try sizes.reduce(0, { try TensorMath.checkedSum($0, $1, op: ctx.nodeLabel) }) == x.shape[axis], sizes.allSatisfy({ $0 >= 0 }) else {
            throw ctx.invalid("split \(sizes) does not cover \(x.shape[axis])")
        }
        var start = 0
        return try sizes.map { size in
            defer { start += size }
            return try range(x, axis: axis, start: start, end: start + size, op: ctx.nodeLabel)
        }
    }

    /// Axes from the input (opset >= 13) or the attribute.
    static func axesArgument(_ ctx: OpContext, input: Int) throws -> [Int64]? {
        if let given = ctx.optionalInput(input) { return given.int64s }
        return try ctx.ints("axes")
    }

    static func squeeze(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        let axes: Set<Int>
        if let given = try axesArgument(ctx, input: 1) {
            axes = Set(try given.map { try TensorMath.axis($0, rank: x.rank, op: ctx.nodeLabel) })
            for a in axes where x.shape[a] != 1 { throw ctx.invalid("cannot squeeze axis \(a) of \(x.shape)") }
        } else {
            axes = Set(x.shape.indices.filter { x.shape[$0] == 1 })
        }
        return [with(x, shape: x.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element))]
    }

    static func unsqueeze(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        guard let given = try axesArgument(ctx, input: 1) else { throw ctx.invalid("no axes") }
        let rank = x.rank + given.count
        let axes = Set(try given.map { try TensorMath.axis($0, rank: rank, op: ctx.nodeLabel) })
        guard axes.count == given.count else { throw ctx.invalid("repeated axes \(given)") }
        var shape: [Int] = []
        var rest = x.shape[...]
        for k in 0..<rank {
            if axes.contains(k) { shape.append(1) } else { shape.append(rest.removeFirst()) }
        }
        return [with(x, shape: shape)]
    }

    static func gather(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        let indicesTensor = try ctx.input(1)
        let axis = try TensorMath.axis(try ctx.int("axis", default: 0), rank: x.rank, op: ctx.nodeLabel)
        let size = x.shape[axis]
        let picks = try indicesTensor.int64s.map { i -> Int in
            let j = i < 0 ? Int(i) + size : Int(i)
            guard j >= 0, j < size else { throw ctx.invalid("index \(i) out of range for size \(size)") }
            return j
        }
        let outer = try TensorMath.elementCount(x.shape.prefix(axis), op: ctx.nodeLabel)
        let inner = try TensorMath.elementCount(x.shape.dropFirst(axis + 1), op: ctx.nodeLabel)
        let shape = Array(x.shape.prefix(axis)) + indicesTensor.shape + Array(x.shape.dropFirst(axis + 1))
        let count = try TensorMath.allocationCount(shape, op: ctx.nodeLabel)
        var indices: [Int] = []
        indices.reserveCapacity(count)
        // An empty output selects nothing: no loop over an outer run that may be 2^40 long.
        for o in 0..<(count == 0 ? 0 : outer) {
            for p in picks {
                for i in 0..<inner { indices.append((o * size + p) * inner + i) }
            }
        }
        return [select(x, shape: shape, indices: indices)]
    }

    static func slice(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        let starts: [Int64], ends: [Int64]
        var axes: [Int64]?, steps: [Int64]?
        if ctx.opset < 10 {
            guard let s = try ctx.ints("starts"), let e = try ctx.ints("ends") else { throw ctx.invalid("no starts/ends") }
            (starts, ends, axes) = (s, e, try ctx.ints("axes"))
        } else {
            starts = try ctx.input(1).int64s
            ends = try ctx.input(2).int64s
            axes = ctx.optionalInput(3)?.int64s
            steps = ctx.optionalInput(4)?.int64s
        }
        let axisList = try (axes ?? (0..<Int64(starts.count)).map { $0 }).map { try TensorMath.axis($0, rank: x.rank, op: ctx.nodeLabel) }
        let stepList = steps ?? [Int64](repeating: 1, count: starts.count)
        guard ends.count == starts.count, axisList.count == starts.count, stepList.count == starts.count else {
            throw ctx.invalid("starts, ends, axes and steps differ in length")
        }
        // Per axis: the first selected position, the step and the count (the output's dim).
        // No table of positions: an empty tensor's other axes may be 2^33 long.
        var first = [Int](repeating: 0, count: x.rank)
        var stepOf = [Int](repeating: 1, count: x.rank)
        var shape = x.shape
        for (k, axis) in axisList.enumerated() {
            let dim = Int64(x.shape[axis])
            let step = stepList[k]
            guard step != 0 else { throw ctx.invalid("step 0") }
            var start = starts[k] < 0 ? starts[k] &+ dim : starts[k]
            var end = ends[k] < 0 ? ends[k] &+ dim : ends[k]
            if step > 0 {
                start = min(max(start, 0), dim)
                end = min(max(end, 0), dim)
            } else {
                start = min(max(start, 0), dim - 1)
                end = min(max(end, -1), dim - 1)
            }
            // The positions start, start + step, ... short of end (the magnitude: a step of
            // Int64.min has no negation).
            let span = step > 0 ? end - start : start - end
            (first[axis], stepOf[axis]) = (Int(start), Int(step))
            shape[axis] = span > 0 ? Int(UInt64(span - 1) / step.magnitude) + 1 : 0
        }
        // An output checked as other ops' built from a file's sizes (Expand, Pad).
        try TensorMath.checkShape(shape, op: ctx.nodeLabel)
        let strides = try TensorMath.strides(of: x.shape, op: ctx.nodeLabel)
        let indices = (0..<(try TensorMath.elementCount(shape, op: ctx.nodeLabel))).map { flat in
            TensorValue.index(of: flat, in: shape).enumerated().reduce(0) { $0 + (first[$1.offset] + $1.element * stepOf[$1.offset]) * strides[$1.offset] }
        }
        return [select(x, shape: shape, indices: indices)]
    }

    static func pad(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        let mode = try ctx.string("mode", default: "constant")
        var pads: [Int64]
        var value = 0.0
        var axes = Array(0..<x.rank)
        if ctx.opset < 11 {
            guard let p = try ctx.ints("pads") ?? ctx.ints("paddings") else { throw ctx.invalid("no pads") }
            pads = p
            value = try ctx.float("value", default: 0)
        } else {
            pads = try ctx.input(1).int64s
            if let v = ctx.optionalInput(2), v.count > 0 { value = v.doubles[0] }
            if let a = ctx.optionalInput(3) { axes = try a.int64s.map { try TensorMath.axis($0, rank: x.rank, op: ctx.nodeLabel) } }
        }
        guard pads.count == 2 * axes.count, pads.allSatisfy({ $0 > -(1 << 40) && $0 < 1 << 40 }) else { throw ctx.invalid("pads \(pads) do not fit \(axes.count) axes") }
        var begin = [Int](repeating: 0, count: x.rank)
        var end = [Int](repeating: 0, count: x.rank)
        for (k, axis) in axes.enumerated() {
            begin[axis] = Int(pads[k])
            end[axis] = Int(pads[k + axes.count])
        }
        // The pads are bounded above, a dim is not (an empty tensor's may be anything).
        let shape = try (0..<x.rank).map { try TensorMath.checkedSum(x.shape[$0], begin[$0] + end[$0], op: ctx.nodeLabel) }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw ctx.invalid("pads \(pads) remove more than \(x.shape)") }
        try TensorMath.checkShape(shape, op: ctx.nodeLabel)
        let strides = try TensorMath.strides(of: x.shape, op: ctx.nodeLabel)
        var indices = [Int](repeating: -1, count: try TensorMath.elementCount(shape, op: ctx.nodeLabel))
        // Edge, reflect and wrap fill a padded axis from its own elements: an empty one has
        // none to read (numpy's pad refuses it too); only a constant can fill it.
        if ["edge", "reflect", "wrap"].contains(mode), !indices.isEmpty, let axis = x.shape.firstIndex(of: 0) {
            throw ctx.invalid("mode '\(mode)' cannot pad axis \(axis), which is empty")
        }
        for flat in indices.indices {
            var source = 0
            var inside = true
            for (axis, i) in TensorValue.index(of: flat, in: shape).enumerated() {
                var p = i - begin[axis]
                let n = x.shape[axis]
                if p < 0 || p >= n {
                    switch mode {
                    case "constant": inside = false
                    case "edge": p = min(max(p, 0), n - 1)
                    case "reflect":
                        guard n > 1 else { p = 0; break }
                        let period = 2 * (n - 1)
                        p = ((p % period) + period) % period
                        if p >= n { p = period - p }
                    case "wrap": p = ((p % n) + n) % n
                    default: throw ctx.unsupported("mode '\(mode)'")
                    }
                }
                if !inside { break }
                source += p * strides[axis]
            }
            if inside { indices[flat] = source }
        }
        return [select(x, shape: shape, indices: indices, fill: value)]
    }
}
