/// Ops that read or write elements at computed indices: GatherElements, GatherND,
/// ScatterElements (and its opset-9 name Scatter), ScatterND, and CumSum.
/// Negative indices count from the end; an index out of range is an error.
enum IndexingOps {
    static let kernels: [String: OpKernel] = [
        "GatherElements": gatherElements,
        "GatherND": gatherND,
        "ScatterElements": scatterElements,
        "Scatter": scatterElements,
        "ScatterND": scatterND,
        "CumSum": cumSum,
    ]

    /// `index` normalized into [0, size), or an error.
    static func position(_ ctx: OpContext, _ index: Int64, size: Int) throws -> Int {
        let i = index < 0 ? index + Int64(size) : index
        guard i >= 0, i < Int64(size) else { throw ctx.invalid("index \(index) is out of range for size \(size)") }
        return Int(i)
    }

    /// For each element i... of `indices`, the flat offset in `data` of i... with `axis`
    /// replaced by the element's value (GatherElements reads there, ScatterElements writes).
    static func elementOffsets(_ ctx: OpContext, data: TensorValue, indices: TensorValue, axis: Int) throws -> [Int] {
        let values = indices.int64s
        if !values.isEmpty, let a = indices.shape.indices.first(where: { $0 != axis && indices.shape[$0] > data.shape[$0] }) {
            throw ctx.invalid("indices \(indices.shape) exceed data \(data.shape) on axis \(a)")
        }
        let strides = try TensorMath.strides(of: data.shape, op: ctx.nodeLabel)
        var offsets = try TensorMath.offsets(of: indices.shape, strides: strides.indices.map { $0 == axis ? 0 : strides[$0] }, op: ctx.nodeLabel)
        for k in offsets.indices { offsets[k] += try position(ctx, values[k], size: data.shape[axis]) * strides[axis] }
        return offsets
    }

    /// out[i...] = data[i... with axis replaced by indices[i...]]; out has indices' shape.
    static func gatherElements(_ ctx: OpContext) throws -> [TensorValue] {
        let data = try ctx.input(0)
        let indices = try ctx.input(1)
        let axis = try TensorMath.axis(try ctx.int("axis", default: 0), rank: data.rank, op: ctx.nodeLabel)
        guard indices.rank == data.rank else { throw ctx.invalid("indices \(indices.shape) and data \(data.shape) differ in rank") }
        let picks = try elementOffsets(ctx, data: data, indices: indices, axis: axis)
        return [ShapeOps.select(data, shape: indices.shape, indices: picks)]
    }

    /// GatherND with batch_dims: each index tuple (last dim of indices) picks a slice of
    /// data within its batch.
    static func gatherND(_ ctx: OpContext) throws -> [TensorValue] {
        let data = try ctx.input(0)
        let indices = try ctx.input(1)
        let batchDims = Int(try ctx.int("batch_dims", default: 0))
        guard indices.rank >= 1, batchDims >= 0, batchDims < min(data.rank, indices.rank),
              Array(data.shape.prefix(batchDims)) == Array(indices.shape.prefix(batchDims)) else {
            throw ctx.invalid("data \(data.shape), indices \(indices.shape) and batch_dims \(batchDims) do not fit")
        }
        guard let depth = indices.shape.last, depth <= data.rank - batchDims else {
            throw ctx.invalid("index tuples of \(indices.shape.last ?? 0) elements for data \(data.shape) past \(batchDims) batch dims")
        }
        let batches = try TensorMath.elementCount(data.shape.prefix(batchDims), op: ctx.nodeLabel)
        let sliceShape = Array(data.shape.dropFirst(batchDims + depth))
        let sliceSize = try TensorMath.elementCount(sliceShape, op: ctx.nodeLabel)
        let perBatchData = try TensorMath.elementCount(data.shape.dropFirst(batchDims), op: ctx.nodeLabel)
        let tuplesPerBatch = try TensorMath.elementCount(indices.shape.dropFirst(batchDims).dropLast(), op: ctx.nodeLabel)
        let strides = try TensorMath.strides(of: Array(data.shape.dropFirst(batchDims)), op: ctx.nodeLabel)
        let values = indices.int64s
        let count = try TensorMath.allocationCount([batches, tuplesPerBatch, sliceSize], op: ctx.nodeLabel)
        var picks: [Int] = []
        picks.reserveCapacity(count)
        // With no index to check and nothing to pick, no loop: index tuples of 0 elements
        // (an empty indices tensor) may number 2^40.
        for batch in 0..<(values.isEmpty && count == 0 ? 0 : batches) {
            for t in 0..<tuplesPerBatch {
                var start = batch * perBatchData
                for d in 0..<depth {
                    start += try position(ctx, values[(batch * tuplesPerBatch + t) * depth + d], size: data.shape[batchDims + d]) * strides[d]
                }
                for i in 0..<sliceSize { picks.append(start + i) }
            }
        }
        let shape = Array(indices.shape.dropLast()) + sliceShape
        return [ShapeOps.select(data, shape: shape, indices: picks)]
    }

    /// How duplicate or repeated writes combine (opsets 16 and 18); nil is plain assignment.
    static func reduction(_ ctx: OpContext) throws -> ((Double, Double) -> Double, (Int64, Int64) -> Int64)? {
        switch try ctx.string("reduction", default: "none") {
        case "none": return nil
        case "add": return ({ $0 + $1 }, { $0 &+ $1 })
        case "mul": return ({ $0 * $1 }, { $0 &* $1 })
        case "max": return ({ max($0, $1) }, { max($0, $1) })
        case "min": return ({ min($0, $1) }, { min($0, $1) })
        case let other: throw ctx.unsupported("reduction '\(other)'")
        }
    }

    /// Writes `updates` into a copy of `data` at the flat `targets`, in order.
    static func scatter(_ ctx: OpContext, _ data: TensorValue, _ updates: TensorValue, targets: [Int]) throws -> TensorValue {
        guard data.type == updates.type else { throw ctx.invalid("data is \(data.type), updates \(updates.type)") }
        let combine = try reduction(ctx)
        switch (data.storage, updates.storage) {
        case (.floats(var out), .floats(let u)):
            for (k, t) in targets.enumerated() { out[t] = combine.map { $0.0(out[t], u[k]) } ?? u[k] }
            return TensorValue(data.type, shape: data.shape, floats: TensorMath.stored(out, as: data.type))
        case (.ints(var out), .ints(let u)):
            for (k, t) in targets.enumerated() { out[t] = TensorMath.wrapped(combine.map { $0.1(out[t], u[k]) } ?? u[k], to: data.type) }
            return TensorValue(data.type, shape: data.shape, ints: out)
        default:
            throw ctx.unsupported("non-numeric tensors")
        }
    }

    /// ScatterElements: data with updates[i...] written at data[i... with axis replaced by
    /// indices[i...]]; repeated targets combine by `reduction` (none: the last write wins).
    static func scatterElements(_ ctx: OpContext) throws -> [TensorValue] {
        let data = try ctx.input(0)
        let indices = try ctx.input(1)
        let updates = try ctx.input(2)
        let axis = try TensorMath.axis(try ctx.int("axis", default: 0), rank: data.rank, op: ctx.nodeLabel)
        guard indices.shape == updates.shape, indices.rank == data.rank else {
            throw ctx.invalid("indices \(indices.shape), updates \(updates.shape) and data \(data.shape) do not fit")
        }
        let targets = try elementOffsets(ctx, data: data, indices: indices, axis: axis)
        return [try scatter(ctx, data, updates, targets: targets)]
    }

    /// ScatterND: each index tuple (last dim of indices) names a slice of data that the
    /// matching slice of updates replaces (or combines with, by `reduction`).
    static func scatterND(_ ctx: OpContext) throws -> [TensorValue] {
        let data = try ctx.input(0)
        let indices = try ctx.input(1)
        let updates = try ctx.input(2)
        guard indices.rank >= 1, let depth = indices.shape.last, depth <= data.rank else {
            throw ctx.invalid("indices \(indices.shape) do not index data \(data.shape)")
        }
        let sliceShape = Array(data.shape.dropFirst(depth))
        guard updates.shape == Array(indices.shape.dropLast()) + sliceShape else {
            throw ctx.invalid("updates \(updates.shape) are not indices \(indices.shape) without the last dim, then \(sliceShape)")
        }
        let sliceSize = try TensorMath.elementCount(sliceShape, op: ctx.nodeLabel)
        let strides = try TensorMath.strides(of: data.shape, op: ctx.nodeLabel)
        let values = indices.int64s
        let tuples = try TensorMath.elementCount(indices.shape.dropLast(), op: ctx.nodeLabel)
        let count = try TensorMath.allocationCount([tuples, sliceSize], op: ctx.nodeLabel)
        var targets: [Int] = []
        targets.reserveCapacity(count)
        // With no index to check and nothing to write, no loop: index tuples of 0 elements
        // (an empty indices tensor) may number 2^40.
        for t in 0..<(values.isEmpty && count == 0 ? 0 : tuples) {
            var start = 0
            for d in 0..<depth { start += try position(ctx, values[t * depth + d], size: data.shape[d]) * strides[d] }
            for i in 0..<sliceSize { targets.append(start + i) }
        }
        return [try scatter(ctx, data, updates, targets: targets)]
    }

    /// Running sums along `axis` (a scalar input), optionally exclusive (each sum leaves its
    /// own element out) and reversed (summing from the end).
    static func cumSum(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        let axisInput = try ctx.input(1)
        guard axisInput.count == 1, let given = axisInput.int64s.first else { throw ctx.invalid("axis must hold one element, not shape \(axisInput.shape)") }
        guard x.rank >= 1 else { throw ctx.invalid("x must have rank 1 or more") }
        let axis = try TensorMath.axis(given, rank: x.rank, op: ctx.nodeLabel)
        let exclusive = try ctx.int("exclusive", default: 0) != 0
        let reverse = try ctx.int("reverse", default: 0) != 0
        let (outer, size, inner) = (try TensorMath.elementCount(x.shape.prefix(axis), op: ctx.nodeLabel), x.shape[axis],
                                    try TensorMath.elementCount(x.shape.dropFirst(axis + 1), op: ctx.nodeLabel))
        // An empty x has no sums: no table of its axis's positions and no loop over an outer
        // run, either of which may be 2^40 long.
        let steps = x.count == 0 ? 0 : size
        let order = reverse ? Array((0..<steps).reversed()) : Array(0..<steps)
        func run<T>(_ v: [T], zero: T, add: (T, T) -> T) -> [T] {
            var out = v
            for o in 0..<(v.isEmpty ? 0 : outer) {
                for i in 0..<inner {
                    var sum = zero
                    for j in order {
                        let p = (o * size + j) * inner + i
                        if exclusive { out[p] = sum; sum = add(sum, v[p]) } else { sum = add(sum, v[p]); out[p] = sum }
                    }
                }
            }
            return out
        }
        switch x.storage {
        case .floats(let v): return [TensorValue(x.type, shape: x.shape, floats: TensorMath.stored(run(v, zero: 0.0, add: +), as: x.type))]
        case .ints(let v): return [TensorValue(x.type, shape: x.shape, ints: run(v, zero: Int64(0), add: &+).map { TensorMath.wrapped($0, to: x.type) })]
        case .opaque: throw ctx.unsupported("non-numeric input")
        }
    }
}
