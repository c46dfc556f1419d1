/// A dense row-major tensor of `Float` values.
public struct Tensor: Equatable, Sendable {
    /// Dimension sizes, outermost first.
    public let shape: [Int]
    /// Elements in row-major order; `values.count` is the product of `shape`.
    public var values: [Float]

    /// Creates a tensor, checking that `values` fills `shape` exactly.
    public init(shape: [Int], values: [Float]) throws(TensorError) {
        guard let count = Tensor.elementCount(of: shape) else { throw .invalidShape(shape) }
        guard count == values.count else { throw .elementCountMismatch(shape: shape, actual: values.count) }
        self.shape = shape
        self.values = values
    }

    /// Number of elements.
    public var count: Int { values.count }

    /// Steps a multi-index to the next element in row-major order of `shape` (the last dim
    /// fastest); false, with the index back at zero, after the last element.
    public static func advance(_ index: inout [Int], within shape: [Int]) -> Bool {
        var d = index.count - 1
        while d >= 0 {
            index[d] += 1
            if index[d] < shape[d] { return true }
            index[d] = 0
            d -= 1
        }
        return false
    }

    /// The element count of `shape`, or nil when a dimension is negative or the product overflows.
    public static func elementCount(of shape: [Int]) -> Int? {
        var total = 1
        for dim in shape {
            guard dim >= 0 else { return nil }
            let (product, overflow) = total.multipliedReportingOverflow(by: dim)
            guard !overflow else { return nil }
            total = product
        }
        return total
    }

    /// Returns this tensor with its axes permuted: result axis k is this tensor's axis `perm[k]`.
    public func transposed(_ perm: [Int]) throws(TensorError) -> Tensor {
        guard perm.count == shape.count, Set(perm) == Set(0..<shape.count) else {
            throw .invalidShape(perm)
        }
        let rank = shape.count
        var strides = [Int](repeating: 1, count: rank)
        for axis in stride(from: rank - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
        let outShape = perm.map { shape[$0] }
        let outStrides = perm.map { strides[$0] }
        guard count > 0, rank > 0 else { return try Tensor(shape: outShape, values: values) }
        // Row by row of the result: the innermost axis is one strided gather, and the index
        // arithmetic runs once per row rather than once per element.
        let inner = outShape[rank - 1]
        let innerStride = outStrides[rank - 1]
        var index = [Int](repeating: 0, count: rank)
        let out = [Float](unsafeUninitializedCapacity: count) { dst, initialized in
            values.withUnsafeBufferPointer { src in
                guard let from = src.baseAddress, let to = dst.baseAddress else { return }
                var flat = 0
                while flat < count {
                    var base = 0
                    for axis in 0..<(rank - 1) { base += index[axis] * outStrides[axis] }
                    for j in 0..<inner { (to + flat + j).initialize(to: from[base + j * innerStride]) }
                    flat += inner
                    var axis = rank - 2
                    while axis >= 0 {
                        index[axis] += 1
                        if index[axis] < outShape[axis] { break }
                        index[axis] = 0
                        axis -= 1
                    }
                }
            }
            initialized = count
        }
        return try Tensor(shape: outShape, values: out)
    }
}
