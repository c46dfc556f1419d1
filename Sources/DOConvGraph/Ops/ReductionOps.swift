import Glibc
import FoundationEssentials

/// Reductions (ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
/// ReduceSumSquare, ArgMax, ArgMin) and Softmax / LogSoftmax.
enum ReductionOps {
    static let kernels: [String: OpKernel] = {
        var table: [String: OpKernel] = [:]
        let reductions: [String: (start: Double, combine: @Sendable (Double, Double) -> Double, finish: @Sendable (Double, Int) -> Double)] = [
            "ReduceMean": (0, { $0 + $1 }, { $0 / Double($1) }),
            "ReduceSum": (0, { $0 + $1 }, { s, _ in s }),
            "ReduceMax": (-.infinity, { max($0, $1) }, { s, _ in s }),
            "ReduceMin": (.infinity, { min($0, $1) }, { s, _ in s }),
            "ReduceProd": (1, { $0 * $1 }, { s, _ in s }),
            "ReduceL1": (0, { $0 + abs($1) }, { s, _ in s }),
            "ReduceL2": (0, { $0 + $1 * $1 }, { s, _ in s.squareRoot() }),
            "ReduceSumSquare": (0, { $0 + $1 * $1 }, { s, _ in s }),
        ]
        for (op, r) in reductions {
            table[op] = { ctx in try [reduce(ctx, start: r.start, combine: r.combine, finish: r.finish)] }
        }
        table["Softmax"] = { ctx in [try softmax(ctx, log: false)] }
        table["LogSoftmax"] = { ctx in [try softmax(ctx, log: true)] }
        table["ArgMax"] = { ctx in [try argExtreme(ctx, max: true)] }
        table["ArgMin"] = { ctx in [try argExtreme(ctx, max: false)] }
        return table
    }()

    /// The axes to reduce: from the input (ReduceSum since opset 13, the others since 18)
    /// or the attribute; nil means all (or none, with noop_with_empty_axes).
    static func axes(_ ctx: OpContext, rank: Int) throws -> Set<Int> {
        let fromInput = ctx.op == "ReduceSum" ? ctx.opset >= 13 : ctx.opset >= 18
        let given: [Int64]? = fromInput ? ctx.optionalInput(1)?.int64s : try ctx.ints("axes")
        if let given, !given.isEmpty { return Set(try given.map { try TensorMath.axis($0, rank: rank, op: ctx.nodeLabel) }) }
        if try ctx.int("noop_with_empty_axes", default: 0) != 0 { return [] }
        return Set(0..<rank)
    }

    static func reduce(_ ctx: OpContext, start: Double, combine: (Double, Double) -> Double, finish: (Double, Int) -> Double) throws -> TensorValue {
        let x = try ctx.input(0)
        let reduced = try axes(ctx, rank: x.rank)
        let keep = try ctx.int("keepdims", default: 1) != 0
        let keptShape = x.shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        let count = try TensorMath.elementCount(x.shape.enumerated().filter { reduced.contains($0.offset) }.map(\.element), op: ctx.nodeLabel)
        let outStrides = try TensorMath.strides(of: keptShape, op: ctx.nodeLabel)
        var acc = [Double](repeating: start, count: try TensorMath.allocationCount(keptShape, op: ctx.nodeLabel))
        let xs = x.doubles
        for flat in 0..<x.count {
            var target = 0
            for (axis, i) in TensorValue.index(of: flat, in: x.shape).enumerated() where !reduced.contains(axis) {
                target += i * outStrides[axis]
            }
            acc[target] = combine(acc[target], xs[flat])
        }
        let values = acc.map { finish($0, count) }
        let shape = keep ? keptShape : x.shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element)
        if x.type.isFloat { return TensorValue(x.type, shape: shape, floats: TensorMath.stored(values, as: x.type)) }
        return TensorValue(x.type, shape: shape, ints: values.map(TensorMath.truncated))
    }

    /// Softmax along `axis` (opset >= 13), or over the flattened trailing dims from `axis`
    /// (default 1) before opset 13.
    static func softmax(_ ctx: OpContext, log: Bool) throws -> TensorValue {
        let x = try ctx.floatInput(0)
        let legacy = ctx.opset < 13
        let axis = try TensorMath.axis(try ctx.int("axis", default: legacy ? 1 : -1), rank: x.rank, op: ctx.nodeLabel)
        let outer = try TensorMath.elementCount(x.shape.prefix(axis), op: ctx.nodeLabel)
        let (size, inner): (Int, Int)
        if legacy {
            (size, inner) = (try TensorMath.elementCount(x.shape.dropFirst(axis), op: ctx.nodeLabel), 1)
        } else {
            (size, inner) = (x.shape[axis], try TensorMath.elementCount(x.shape.dropFirst(axis + 1), op: ctx.nodeLabel))
        }
        var out = x.doubles
        // An empty x has nothing to normalize: no loop over an outer run that may be 2^40 long.
        for o in 0..<(out.isEmpty ? 0 : outer) {
            for i in 0..<inner {
                let positions = (0..<size).map { (o * size + $0) * inner + i }
                let peak = positions.map { out[$0] }.max() ?? 0
                let sum = positions.reduce(0.0) { $0 + Glibc.exp(out[$1] - peak) }
                for p in positions {
                    out[p] = log ? out[p] - peak - Glibc.log(sum) : Glibc.exp(out[p] - peak) / sum
                }
            }
        }
        return TensorValue(x.type, shape: x.shape, floats: TensorMath.stored(out, as: x.type))
    }

    static func argExtreme(_ ctx: OpContext, max isMax: Bool) throws -> TensorValue {
        let x = try ctx.input(0)
        let axis = try TensorMath.axis(try ctx.int("axis", default: 0), rank: x.rank, op: ctx.nodeLabel)
        let keep = try ctx.int("keepdims", default: 1) != 0
        let last = try ctx.int("select_last_index", default: 0) != 0
        let (outer, size, inner) = (try TensorMath.elementCount(x.shape.prefix(axis), op: ctx.nodeLabel), x.shape[axis],
                                    try TensorMath.elementCount(x.shape.dropFirst(axis + 1), op: ctx.nodeLabel))
        let xs = x.doubles
        // One index per (outer, inner) pair, even over an empty axis: checked before the loop,
        // which an empty output skips (its outer run may be 2^40 long).
        let count = try TensorMath.allocationCount([outer, inner], op: ctx.nodeLabel)
        var out: [Int64] = []
        out.reserveCapacity(count)
        for o in 0..<(count == 0 ? 0 : outer) {
            for i in 0..<inner {
                var best = 0
                for k in 1..<max(size, 1) {
                    let v = xs[(o * size + k) * inner + i]
                    let b = xs[(o * size + best) * inner + i]
                    if isMax ? (v > b || (last && v == b)) : (v < b || (last && v == b)) { best = k }
                }
                out.append(Int64(best))
            }
        }
        var shape = x.shape
        if keep { shape[axis] = 1 } else { shape.remove(at: axis) }
        return TensorValue(.int64, shape: shape, ints: out)
    }
}
