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
        var out = [Float](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: rank)
        values.withUnsafeBufferPointer { src in
            for flat in 0..<count {
                var offset = 0
                for axis in 0..<rank { offset += index[axis] * outStrides[axis] }
                out[flat] = src[offset]
                var axis = rank - 1
                while axis >= 0 {
                    index[axis] += 1
                    if index[axis] < outShape[axis] { break }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
        return try Tensor(shape: outShape, values: out)
    }
}
