import DOConvGraphKernels

/// Two-operand einsums without broadcasting, repeated labels or labels summed inside one
/// operand (a DO-Conv kernel composition, 'ims,ois->oim'): one short summed label directly,
/// longer sums as batched matrix products on the GEMM (each operand permuted to (batch, free,
/// contracted) order, one product per batch, the result permuted to the output's order).
/// Anything else takes the general loop.
enum EinsumContraction {
    /// The result, or nil when the equation is not such a contraction.
    static func contract(_ equation: String, _ operands: [TensorValue], op: String = "Einsum", threads: Int) throws -> TensorValue? {
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
        func count(_ labels: [Character]) throws -> Int { try TensorMath.elementCount(labels.map { size[$0]! }, op: op) }
        let (nb, nl, nr, nk) = (try count(batch), try count(left), try count(right), try count(summed))
        // The output's labels are batch, left and right, in another order: the same count,
        // checked before allocating (empty operands may ask for 2^60).
        let total = try TensorMath.allocationCount([nb, nl, nr], op: op)
        if summed.count == 1, nk <= directDepth {
            let values = try direct(out: out, size: size, a: (a, operands[0]), b: (b, operands[1]), summed: summed[0], total: total,
                                    op: op, threads: threads)
            let type = operands[0].type
            return TensorValue(type, shape: out.map { size[$0]! }, floats: TensorMath.stored(values, as: type))
        }
        let pa = permute(operands[0].doubles, labels: a, shape: operands[0].shape, to: batch + left + summed)
        let pb = permute(operands[1].doubles, labels: b, shape: operands[1].shape, to: batch + summed + right)
        var product = [Double](repeating: 0, count: total)
        if nl > 0, nr > 0, nb > 0 {
            pa.withUnsafeBufferPointer { ap in
                pb.withUnsafeBufferPointer { bp in
                    product.withUnsafeMutableBufferPointer { cp in
                        for batchIndex in 0..<nb {
                            let c = cp.baseAddress! + batchIndex * nl * nr
                            guard nk > 0, let aBase = ap.baseAddress, let bBase = bp.baseAddress else { continue }
                            MatrixMultiply.multiply(FastKernels.multiplier, m: nl, n: nr, k: nk, a: aBase + batchIndex * nl * nk, lda: nk,
                                                    b: bBase + batchIndex * nk * nr, ldb: nr, c: c, ldc: nr, threads: threads)
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

    /// Sums at most this long (one label) are computed in place: each output element's dot
    /// product read straight from the operands, in output order.
    static let directDepth = 64

    /// The contraction over one short summed label without permuting anything: a DO-Conv
    /// composition's operands (Cout x Cin x Dmul and Cin x MN x Dmul) are read along their
    /// rows and the kernel written in order, where permuting 20 MB operands for a GEMM is
    /// bound by TLB misses. Output slices along the first axis run on `threads` cores.
    /// `total` is the output's element count, checked by the caller.
    static func direct(out: [Character], size: [Character: Int], a: ([Character], TensorValue), b: ([Character], TensorValue),
                       summed: Character, total: Int, op: String, threads: Int) throws -> [Double] {
        let dims = out.map { size[$0]! }
        func strides(_ operand: ([Character], TensorValue)) throws -> (outer: [Int], summed: Int) {
            let own = try TensorMath.strides(of: operand.1.shape, op: op)
            let outer = out.map { label in operand.0.firstIndex(of: label).map { own[$0] } ?? 0 }
            return (outer, operand.0.firstIndex(of: summed).map { own[$0] } ?? 0)
        }
        let (sa, ka) = try strides(a)
        let (sb, kb) = try strides(b)
        let depth = size[summed]!
        let (x, y) = (a.1.doubles, b.1.doubles)
        return [Double](unsafeUninitializedCapacity: total) { result, initialized in
            x.withUnsafeBufferPointer { x in
                y.withUnsafeBufferPointer { y in
                    let slices = dims.isEmpty ? 1 : dims[0]
                    let sliceCount = dims.isEmpty ? 1 : total / max(slices, 1)
                    let workers = ParallelLoop.workers(threads: threads, items: slices, work: total * depth, grain: 1_000_000)
                    // Each slice writes its own part of `result`; x and y are only read.
                    nonisolated(unsafe) let result = result
                    ParallelLoop.run(total > 0 ? slices : 0, workers: workers) { slice in
                        // The output's axes after the first, stepped with both operands' offsets.
                        var odometer = StridedOdometer(dims: Array(dims.dropFirst()), first: Array(sa.dropFirst()), second: Array(sb.dropFirst()),
                                                       offsets: (dims.isEmpty ? 0 : slice * sa[0], dims.isEmpty ? 0 : slice * sb[0]))
                        for k in (slice * sliceCount)..<((slice + 1) * sliceCount) {
                            var sum = 0.0
                            for s in 0..<depth { sum += x[odometer.offsets.0 + s * ka] * y[odometer.offsets.1 + s * kb] }
                            result[k] = sum
                            _ = odometer.advance()
                        }
                    }
                }
            }
            initialized = total
        }
    }

    /// `data` (axes named by `labels`, of `shape`) with its axes in the order `target`.
    ///
    /// The output's last axis and the axis the input is contiguous along are copied as 2-D
    /// tiles of 16 x 16, so reads and writes both run along cache lines; the other axes are
    /// stepped by an odometer.
    static func permute(_ data: [Double], labels: [Character], shape: [Int], to target: [Character]) -> [Double] {
        guard labels != target, !data.isEmpty else { return data }
        // `data` holds values, so `shape`'s dims multiply to its count: no stride overflows.
        let sourceStrides = TensorValue.strides(of: shape)
        let dims = target.map { label in shape[labels.firstIndex(of: label)!] }
        let from = target.map { label in sourceStrides[labels.firstIndex(of: label)!] }
        let to = TensorValue.strides(of: dims)
        let last = dims.count - 1
        // The input's contiguous axis (stride 1, size above 1), if it is not the output's last.
        let inner = from.indices.first { from[$0] == 1 && dims[$0] > 1 && $0 != last }
        let outer = dims.indices.filter { $0 != last && $0 != inner }
        let (rows, rowFrom, rowTo) = inner.map { (dims[$0], from[$0], to[$0]) } ?? (1, 0, 0)
        let (columns, columnFrom) = (dims[last], from[last])
        return [Double](unsafeUninitializedCapacity: data.count) { out, initialized in
            data.withUnsafeBufferPointer { source in
                var odometer = StridedOdometer(dims: outer.map { dims[$0] }, first: outer.map { from[$0] }, second: outer.map { to[$0] })
                repeat {
                    let block = source.baseAddress! + odometer.offsets.0
                    let target = out.baseAddress! + odometer.offsets.1
                    for r0 in stride(from: 0, to: rows, by: 16) {
                        for c0 in stride(from: 0, to: columns, by: 16) {
                            for r in r0..<min(rows, r0 + 16) {
                                for c in c0..<min(columns, c0 + 16) { target[r * rowTo + c] = block[r * rowFrom + c * columnFrom] }
                            }
                        }
                    }
                } while odometer.advance()
            }
            initialized = data.count
        }
    }
}

/// A row-major multi-index over `dims` with two running offsets (into two arrays, each with
/// its own stride per axis), so nested loops of any depth become one loop.
struct StridedOdometer {
    let dims: [Int]
    let first: [Int]
    let second: [Int]
    private var index: [Int]
    /// The offsets of the current index.
    private(set) var offsets: (Int, Int)

    init(dims: [Int], first: [Int], second: [Int], offsets: (Int, Int) = (0, 0)) {
        self.dims = dims
        self.first = first
        self.second = second
        self.index = [Int](repeating: 0, count: dims.count)
        self.offsets = offsets
    }

    /// Steps to the next index; false (and back at the start) after the last one.
    mutating func advance() -> Bool {
        var axis = dims.count - 1
        while axis >= 0 {
            index[axis] += 1
            offsets.0 += first[axis]
            offsets.1 += second[axis]
            if index[axis] < dims[axis] { return true }
            offsets.0 -= first[axis] * dims[axis]
            offsets.1 -= second[axis] * dims[axis]
            index[axis] = 0
            axis -= 1
        }
        return false
    }
}
