import DOConvGraphKernels

/// Two-operand einsums without broadcasting, repeated labels or labels summed inside one
/// operand (a DO-Conv kernel composition, 'ims,ois->oim'), as batched matrix products on the
/// GEMM: each operand permuted to (batch, free, contracted) order, one product per batch, the
/// result permuted to the output's order. Anything else takes the general loop.
enum EinsumContraction {
    /// The result, or nil when the equation is not such a contraction.
    static func contract(_ equation: String, _ operands: [TensorValue]) -> TensorValue? {
        guard operands.count == 2, operands.allSatisfy({ $0.type.isFloat }) else { return nil }
        let text = equation.filter { !$0.isWhitespace }
        let sides = text.components(separatedBy: "->")
        guard sides.count == 2, !text.contains("."), let lhs = Optional(sides[0].split(separator: ",", omittingEmptySubsequences: false)),
              lhs.count == 2 else { return nil }
        let a = lhs[0].map { $0 }, b = lhs[1].map { $0 }, out = sides[1].map { $0 }
        guard [a, b, out].allSatisfy({ Set($0).count == $0.count && $0.allSatisfy { $0.isLetter && $0.isASCII } }),
              a.count == operands[0].rank, b.count == operands[1].rank else { return nil }
        var size: [Character: Int] = [:]
        for (labels, x) in [(a, operands[0]), (b, operands[1])] {
            for (label, dim) in zip(labels, x.shape) {
                if let known = size[label], known != dim { return nil }
                size[label] = dim
            }
        }
        let inA = Set(a), inB = Set(b), inOut = Set(out)
        guard inOut.isSubset(of: inA.union(inB)), inA.subtracting(inB).isSubset(of: inOut), inB.subtracting(inA).isSubset(of: inOut) else { return nil }
        // Sorted, as the general loop sums labels in sorted order.
        let batch = out.filter { inA.contains($0) && inB.contains($0) }
        let left = out.filter { inA.contains($0) && !inB.contains($0) }
        let right = out.filter { inB.contains($0) && !inA.contains($0) }
        let summed = inA.intersection(inB).subtracting(inOut).sorted()
        func count(_ labels: [Character]) -> Int { labels.reduce(1) { $0 * size[$1]! } }
        let (nb, nl, nr, nk) = (count(batch), count(left), count(right), count(summed))
        let pa = permute(operands[0].doubles, labels: a, shape: operands[0].shape, to: batch + left + summed)
        let pb = permute(operands[1].doubles, labels: b, shape: operands[1].shape, to: batch + summed + right)
        var product = [Double](repeating: 0, count: nb * nl * nr)
        if nl > 0, nr > 0, nb > 0 {
            pa.withUnsafeBufferPointer { ap in
                pb.withUnsafeBufferPointer { bp in
                    product.withUnsafeMutableBufferPointer { cp in
                        for batchIndex in 0..<nb {
                            let c = cp.baseAddress! + batchIndex * nl * nr
                            guard nk > 0, let aBase = ap.baseAddress, let bBase = bp.baseAddress else { continue }
                            MatrixMultiply.multiply(FastKernels.multiplier, m: nl, n: nr, k: nk, a: aBase + batchIndex * nl * nk, lda: nk,
                                                    b: bBase + batchIndex * nk * nr, ldb: nr, c: c, ldc: nr, threads: FastKernels.threads)
                        }
                    }
                }
            }
        }
        let order = batch + left + right
        let result = permute(product, labels: order, shape: order.map { size[$0]! }, to: out)
        let type = operands[0].type
        return TensorValue(type, shape: out.map { size[$0]! }, floats: TensorMath.stored(result, as: type))
    }

    /// `data` (axes named by `labels`, of `shape`) with its axes in the order `target`.
    static func permute(_ data: [Double], labels: [Character], shape: [Int], to target: [Character]) -> [Double] {
        guard labels != target, !data.isEmpty else { return data }
        let strides = TensorValue.strides(of: shape)
        let sourceStride = target.map { label in strides[labels.firstIndex(of: label)!] }
        let dims = target.map { label in shape[labels.firstIndex(of: label)!] }
        var result = [Double](repeating: 0, count: data.count)
        var index = [Int](repeating: 0, count: dims.count)
        var offset = 0
        let last = dims.count - 1
        var k = 0
        while k < result.count {
            // The innermost axis in one run.
            let step = sourceStride[last]
            for j in 0..<dims[last] { result[k + j] = data[offset + j * step] }
            k += dims[last]
            var axis = last - 1
            while axis >= 0 {
                index[axis] += 1
                offset += sourceStride[axis]
                if index[axis] < dims[axis] { break }
                offset -= sourceStride[axis] * index[axis]
                index[axis] = 0
                axis -= 1
            }
            if axis < 0 { break }
        }
        return result
    }
}
