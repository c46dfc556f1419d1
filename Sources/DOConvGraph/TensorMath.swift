/// Shape arithmetic and element conversions shared by the op families.
enum TensorMath {
    /// numpy broadcasting of two shapes; nil when they do not broadcast.
    static func broadcast(_ a: [Int], _ b: [Int]) -> [Int]? {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for k in 0..<rank {
            let x = k < rank - a.count ? 1 : a[k - (rank - a.count)]
            let y = k < rank - b.count ? 1 : b[k - (rank - b.count)]
            if x == y || y == 1 { out[k] = x } else if x == 1 { out[k] = y } else { return nil }
        }
        return out
    }

    /// For each flat index of `outShape`, the flat index of a tensor of `shape` broadcast to it.
    static func broadcastIndices(from shape: [Int], to outShape: [Int], op: String) throws -> [Int] {
        let total = try allocationCount(outShape, op: op)
        if shape == outShape { return Array(0..<total) }
        let rank = outShape.count
        let padded = [Int](repeating: 1, count: rank - shape.count) + shape
        let strides = try self.strides(of: padded, op: op).enumerated().map { padded[$0.offset] == 1 ? 0 : $0.element }
        return try offsets(of: outShape, strides: strides, op: op)
    }

    /// For each flat index of `shape` (row-major), the sum of its index times `strides` per
    /// axis: where a strided view (a transpose, a broadcast) reads each element from.
    static func offsets(of shape: [Int], strides: [Int], op: String) throws -> [Int] {
        let total = try allocationCount(shape, op: op)
        var result = [Int](repeating: 0, count: total)
        var index = [Int](repeating: 0, count: shape.count)
        var offset = 0
        for flat in 0..<total {
            result[flat] = offset
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                offset += strides[axis]
                if index[axis] < shape[axis] { break }
                offset -= strides[axis] * index[axis]
                index[axis] = 0
                axis -= 1
            }
        }
        return result
    }

    /// The most elements one tensor may have: a hostile shape must not exhaust memory.
    static var maxElements: Int { ExecutorLimits.maxElements }

    /// The number of elements of a tensor of `shape` (or of a run of its dims: the `outer` or
    /// `inner` of an axis). Every size the executor derives from a graph's dims goes through
    /// here: dims come from a file, where an empty tensor may claim any others (0 x 2^40 x
    /// 2^40), so a product past Int's range must be a one-line error, never a trap.
    static func elementCount<Dims: Sequence<Int>>(_ shape: Dims, op: String) throws -> Int {
        var total = 1
        for dim in shape {
            guard dim >= 0 else { throw ExecutionError.invalid(op: op, reason: "negative dim in \(Array(shape))") }
            let (product, overflow) = total.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw ExecutionError.unsupported(op: op, reason: "the element count of dims \(Array(shape)) overflows") }
            total = product
        }
        return total
    }

    /// `elementCount` of a tensor or index table about to be allocated (an op's output, a
    /// broadcast's indices): also an error past `maxElements`, checked before allocating, as
    /// an empty input's dims may multiply to 2^60 in another op's output.
    static func allocationCount<Dims: Sequence<Int>>(_ shape: Dims, op: String) throws -> Int {
        let count = try elementCount(shape, op: op)
        guard count <= maxElements else {
            throw ExecutionError.unsupported(op: op, reason: "a tensor of shape \(Array(shape)) is too large for the reference executor")
        }
        return count
    }

    /// The entries of a `rows` x `columns` index table (a conv or pool window's offsets),
    /// checked against `maxElements` before it is built: pads or dims from a file may ask for
    /// 2^40 of them.
    static func tableSize(_ rows: Int, _ columns: Int, op: String) throws -> Int {
        let count = try checkedProduct(rows, columns, op: op)
        guard count <= maxElements else {
            throw ExecutionError.unsupported(op: op, reason: "an index table of \(rows) x \(columns) entries is too large for the reference executor")
        }
        return count
    }

    /// Row-major strides of `shape`: each axis's stride is the element count of the dims after
    /// it, checked as `elementCount` checks (an empty tensor's trailing dims may be huge).
    static func strides(of shape: [Int], op: String) throws -> [Int] {
        try shape.indices.map { try elementCount(shape[($0 + 1)...], op: op) }
    }

    /// `a * b` for sizes read from a model (repeats, pads, scales): an error, never a trap.
    static func checkedProduct(_ a: Int, _ b: Int, op: String) throws -> Int {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow else { throw ExecutionError.unsupported(op: op, reason: "a size of \(a) x \(b) overflows") }
        return product
    }

    /// `a + b` for sizes read from a model (pads added to a dim, dims concatenated): an
    /// error, never a trap.
    static func checkedSum(_ a: Int, _ b: Int, op: String) throws -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        guard !overflow else { throw ExecutionError.unsupported(op: op, reason: "a size of \(a) + \(b) overflows") }
        return sum
    }

    /// `Int(value)` for a size computed in floating point (Resize's output dims): an error
    /// for NaN, infinities and values past what a dim can be, never a trap.
    static func checkedSize(_ value: Double, op: String) throws -> Int {
        guard value.isFinite, value > -1, value < Double(Int32.max) else {
            throw ExecutionError.unsupported(op: op, reason: "an output dim of \(value)")
        }
        return Int(value)
    }

    /// Checks that `shape` is valid and not larger than `maxElements`.
    static func checkShape(_ shape: [Int], op: String) throws {
        var total = 1
        for dim in shape {
            guard dim >= 0 else { throw ExecutionError.invalid(op: op, reason: "negative dim in \(shape)") }
            let (product, overflow) = total.multipliedReportingOverflow(by: dim)
            // Each dim on its own too: ops size per-axis tables by it, even when another dim
            // is 0 and the tensor is empty.
            guard !overflow, product <= maxElements, dim <= maxElements else {
                throw ExecutionError.unsupported(op: op, reason: "a tensor of shape \(shape) is too large for the reference executor")
            }
            total = product
        }
    }

    /// Normalizes a possibly negative axis for a tensor of `rank`.
    static func axis(_ axis: Int64, rank: Int, op: String) throws -> Int {
        let a = Int(axis) < 0 ? Int(axis) + rank : Int(axis)
        guard a >= 0, a < max(rank, 1) else { throw ExecutionError.invalid(op: op, reason: "axis \(axis) is out of range for rank \(rank)") }
        return a
    }

    /// Rounds a double to the nearest float16 value (round to nearest even), as a double.
    static func roundToHalf(_ x: Double) -> Double {
        Double(Float16(x))
    }

    /// Rounds a double to the nearest bfloat16 value (round to nearest even), as a double.
    static func roundToBFloat16(_ x: Double) -> Double {
        let f = Float(x)
        if f.isNaN { return x }
        let bits = f.bitPattern
        let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000
        return Double(Float(bitPattern: rounded))
    }

    /// Converts float values to what `type` can hold (rounding for narrow floats).
    static func stored(_ values: [Double], as type: DataType) -> [Double] {
        switch type {
        case .float16: return values.map(roundToHalf)
        case .bfloat16: return values.map(roundToBFloat16)
        // float32 values are computed in float64 on purpose (see ReferenceExecutor).
        default: return values
        }
    }

    /// Wraps integers into the range of `type`, as a cast to it does.
    static func wrapped(_ v: Int64, to type: DataType) -> Int64 {
        switch type {
        case .bool: return v != 0 ? 1 : 0
        case .int8: return Int64(Int8(truncatingIfNeeded: v))
        case .uint8: return Int64(UInt8(truncatingIfNeeded: v))
        case .int16: return Int64(Int16(truncatingIfNeeded: v))
        case .uint16: return Int64(UInt16(truncatingIfNeeded: v))
        case .int32: return Int64(Int32(truncatingIfNeeded: v))
        case .uint32: return Int64(UInt32(truncatingIfNeeded: v))
        default: return v
        }
    }

    /// Double to integer as C's conversion does (toward zero), saturating out-of-range values.
    static func truncated(_ x: Double) -> Int64 {
        guard x.isFinite else { return x.isNaN ? 0 : (x < 0 ? Int64.min : Int64.max) }
        let t = x.rounded(.towardZero)
        if t >= 9.2233720368547758e18 { return Int64.max }
        if t <= -9.2233720368547758e18 { return Int64.min }
        return Int64(t)
    }

    /// `tensor` cast to `type`.
    static func cast(_ tensor: TensorValue, to type: DataType) throws -> TensorValue {
        switch (tensor.storage, type.isFloat, type.isInteger) {
        case (.floats(let v), true, _): return TensorValue(type, shape: tensor.shape, floats: stored(v, as: type))
        case (.ints(let v), true, _): return TensorValue(type, shape: tensor.shape, floats: stored(v.map { Double($0) }, as: type))
        case (.floats(let v), _, true):
            if type == .bool { return TensorValue(.bool, shape: tensor.shape, ints: v.map { $0 != 0 ? 1 : 0 }) }
            return TensorValue(type, shape: tensor.shape, ints: v.map { wrapped(truncated($0), to: type) })
        case (.ints(let v), _, true): return TensorValue(type, shape: tensor.shape, ints: v.map { wrapped($0, to: type) })
        default:
            throw ExecutionError.unsupported(op: "Cast", reason: "cast from \(tensor.type) to \(type)")
        }
    }
}

extension DataType {
    /// `v` wrapped into this integer type's range, as a cast to it does.
    public func wrapped(_ v: Int64) -> Int64 { TensorMath.wrapped(v, to: self) }
}

/// The reference executor's size limits. A fuzz harness lowers them so that its inputs
/// exercise the checks rather than spend their time on legal but huge tensors.
public enum ExecutorLimits {
    /// The most elements one tensor may have (2^28 by default: a hostile shape must not
    /// exhaust memory, and real models' tensors are far smaller).
    public nonisolated(unsafe) static var maxElements = 1 << 28
}
