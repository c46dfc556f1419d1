import DOConvGraphKernels

/// Einsum (any equation: explicit or implicit output, ellipsis, repeated labels, any number
/// of operands), MatMul (numpy semantics) and Gemm.
enum LinearAlgebraOps {
    static let kernels: [String: OpKernel] = [
        "Einsum": { ctx in
            guard case .string(let equation)? = ctx.node[attribute: "equation"] else { throw ctx.invalid("no equation") }
            let operands = try (0..<ctx.inputs.count).map { try ctx.input($0) }
            return [try einsum(equation, operands, op: ctx.nodeLabel, threads: ctx.threads)]
        },
        "MatMul": matmul,
        "Gemm": gemm,
    ]

    /// A parsed einsum term: letters as label ids, with the ellipsis position if any.
    struct Term {
        var labels: [Int]
        var ellipsisAt: Int?
    }

    static func parseTerm(_ text: Substring, op: String) throws -> Term {
        var labels: [Int] = []
        var ellipsisAt: Int?
        var rest = text[...]
        while let ch = rest.first {
            if rest.hasPrefix("...") {
                guard ellipsisAt == nil else { throw ExecutionError.invalid(op: op, reason: "two ellipses in '\(text)'") }
                ellipsisAt = labels.count
                rest = rest.dropFirst(3)
                continue
            }
            guard ch.isLetter, ch.isASCII, let value = ch.asciiValue else {
                throw ExecutionError.invalid(op: op, reason: "unexpected '\(ch)' in einsum term '\(text)'")
            }
            labels.append(Int(value))
            rest = rest.dropFirst()
        }
        return Term(labels: labels, ellipsisAt: ellipsisAt)
    }

    /// numpy's einsum, computed by a plain loop over every label combination, in Float64.
    static func einsum(_ equation: String, _ operands: [TensorValue], op: String = "Einsum", threads: Int = FastKernels.threads) throws -> TensorValue {
        if let contracted = try EinsumContraction.contract(equation, operands, op: op, threads: threads) { return contracted }
        func fail(_ reason: String) -> ExecutionError { .invalid(op: op, reason: "'\(equation)': \(reason)") }
        let text = equation.filter { !$0.isWhitespace }
        let sides = text.components(separatedBy: "->")
        guard sides.count <= 2 else { throw fail("more than one '->'") }
        let lhs = sides[0].split(separator: ",", omittingEmptySubsequences: false)
        guard lhs.count == operands.count, !operands.isEmpty else { throw fail("\(lhs.count) terms for \(operands.count) operands") }
        let terms = try lhs.map { try parseTerm($0, op: op) }
        // Expand ellipses into label ids 1000+j, right-aligned over the widest ellipsis.
        var ellipsisRank = 0
        for (term, x) in zip(terms, operands) {
            let extra = x.rank - term.labels.count
            guard extra == 0 || (term.ellipsisAt != nil && extra > 0) else { throw fail("operand of shape \(x.shape) does not fit its term") }
            ellipsisRank = max(ellipsisRank, extra)
        }
        let expanded: [[Int]] = zip(terms, operands).map { term, x in
            guard let at = term.ellipsisAt else { return term.labels }
            let extra = x.rank - term.labels.count
            return Array(term.labels[..<at]) + (ellipsisRank - extra..<ellipsisRank).map { 1000 + $0 } + Array(term.labels[at...])
        }
        // Label sizes (size-1 dims broadcast).
        var sizes: [Int: Int] = [:]
        for (labels, x) in zip(expanded, operands) {
            for (label, dim) in zip(labels, x.shape) {
                if let known = sizes[label], known != dim {
                    guard known == 1 || dim == 1 else { throw fail("label sizes \(known) and \(dim) disagree") }
                    sizes[label] = max(known, dim)
                } else {
                    sizes[label] = dim
                }
            }
        }
        // Output labels.
        var output: [Int]
        if sides.count == 2 {
            let term = try parseTerm(Substring(sides[1]), op: op)
            if let at = term.ellipsisAt {
                output = Array(term.labels[..<at]) + (0..<ellipsisRank).map { 1000 + $0 } + Array(term.labels[at...])
            } else {
                guard ellipsisRank == 0 || (0..<ellipsisRank).allSatisfy({ sizes[1000 + $0] == 1 }) else {
                    throw fail("the output drops the ellipsis dims")
                }
                output = term.labels
            }
            guard Set(output).count == output.count else { throw fail("a label repeats in the output") }
            for label in output where sizes[label] == nil { throw fail("output label '\(UnicodeScalar(UInt8(label)))' is in no operand") }
        } else {
            var counts: [Int: Int] = [:]
            for labels in expanded { for label in labels where label < 1000 { counts[label, default: 0] += 1 } }
            output = (0..<ellipsisRank).map { 1000 + $0 } + counts.filter { $0.value == 1 }.keys.sorted()
        }
        let summed = Array(Set(sizes.keys).subtracting(output)).sorted()
        let all = output + summed
        let position = Dictionary(uniqueKeysWithValues: all.enumerated().map { ($0.element, $0.offset) })
        // Per operand, its stride for each label (0 where broadcast; repeated labels add up).
        var strides = [[Int]](repeating: [Int](repeating: 0, count: all.count), count: operands.count)
        for (k, (labels, x)) in zip(expanded, operands).enumerated() {
            let s = try TensorMath.strides(of: x.shape, op: op)
            for (axis, label) in labels.enumerated() where x.shape[axis] != 1 {
                strides[k][position[label]!] += s[axis]
            }
        }
        let dims = all.map { sizes[$0]! }
        let outShape = output.map { sizes[$0]! }
        let outCount = try TensorMath.allocationCount(outShape, op: op)
        let sumCount = try TensorMath.elementCount(summed.map { sizes[$0]! }, op: op)
        let data = operands.map(\.doubles)
        var result = [Double](repeating: 0, count: outCount)
        guard outCount > 0, sumCount > 0 else {
            return TensorValue(operands[0].type.isFloat ? operands[0].type : .double, shape: outShape, floats: result)
        }
        var index = [Int](repeating: 0, count: all.count)
        var offsets = [Int](repeating: 0, count: operands.count)
        for o in 0..<outCount {
            var sum = 0.0
            for _ in 0..<sumCount {
                var product = 1.0
                for k in 0..<operands.count { product *= data[k][offsets[k]] }
                sum += product
                // Advance the odometer over all labels (summed labels fastest).
                var axis = all.count - 1
                while axis >= 0 {
                    index[axis] += 1
                    for k in 0..<operands.count { offsets[k] += strides[k][axis] }
                    if index[axis] < dims[axis] { break }
                    for k in 0..<operands.count { offsets[k] -= strides[k][axis] * index[axis] }
                    index[axis] = 0
                    axis -= 1
                }
                if axis < output.count { break } // an output label moved: the sum is complete
            }
            result[o] = sum
        }
        let type = operands[0].type
        if type.isFloat { return TensorValue(type, shape: outShape, floats: TensorMath.stored(result, as: type)) }
        return TensorValue(type, shape: outShape, ints: result.map(TensorMath.truncated))
    }

    static func matmul(_ ctx: OpContext) throws -> [TensorValue] {
        var a = try ctx.input(0)
        var b = try ctx.input(1)
        let aVector = a.rank == 1
        let bVector = b.rank == 1
        if aVector { a = ShapeOps.with(a, shape: [1] + a.shape) }
        if bVector { b = ShapeOps.with(b, shape: b.shape + [1]) }
        guard a.rank >= 2, b.rank >= 2 else { throw ctx.invalid("scalar operands") }
        let (n, k) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (k2, m) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        guard k == k2 else { throw ctx.invalid("shapes \(a.shape) and \(b.shape) do not multiply") }
        let batchA = Array(a.shape.dropLast(2))
        let batchB = Array(b.shape.dropLast(2))
        guard let batch = TensorMath.broadcast(batchA, batchB) else { throw ctx.invalid("batch dims \(batchA) and \(batchB) do not broadcast") }
        let ia = try TensorMath.broadcastIndices(from: batchA, to: batch, op: ctx.nodeLabel)
        let ib = try TensorMath.broadcastIndices(from: batchB, to: batch, op: ctx.nodeLabel)
        let (xs, ys) = (a.doubles, b.doubles)
        // [2^30, 0] x [0, 2^30] holds no values but asks for 2^60: checked before allocating.
        var out = [Double](repeating: 0, count: try TensorMath.allocationCount([ia.count, n, m], op: ctx.nodeLabel))
        if n > 0, m > 0, k > 0 {
            xs.withUnsafeBufferPointer { ap in
                ys.withUnsafeBufferPointer { bp in
                    out.withUnsafeMutableBufferPointer { cp in
                        for p in 0..<ia.count {
                            MatrixMultiply.multiply(FastKernels.multiplier, m: n, n: m, k: k, a: ap.baseAddress! + ia[p] * n * k, lda: k,
                                                    b: bp.baseAddress! + ib[p] * k * m, ldb: m, c: cp.baseAddress! + p * n * m, ldc: m,
                                                    threads: ctx.threads)
                        }
                    }
                }
            }
        }
        var shape = batch + [n, m]
        if bVector { shape.removeLast() }
        if aVector { shape.remove(at: shape.count - (bVector ? 1 : 2)) }
        if a.type.isFloat { return [TensorValue(a.type, shape: shape, floats: TensorMath.stored(out, as: a.type))] }
        return [TensorValue(a.type, shape: shape, ints: out.map(TensorMath.truncated))]
    }

    static func gemm(_ ctx: OpContext) throws -> [TensorValue] {
        let a = try ctx.floatInput(0)
        let b = try ctx.floatInput(1)
        guard a.rank == 2, b.rank == 2 else { throw ctx.invalid("A \(a.shape) and B \(b.shape) must be matrices") }
        let alpha = try ctx.float("alpha", default: 1)
        let beta = try ctx.float("beta", default: 1)
        let transA = try ctx.int("transA", default: 0) != 0
        let transB = try ctx.int("transB", default: 0) != 0
        let (m, k) = transA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (k2, n) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == k2 else { throw ctx.invalid("A \(a.shape) and B \(b.shape) do not multiply") }
        // A transposed A is laid out plainly first; a transposed B (a Linear layer's weight)
        // is read as it is by the GEMM's packing.
        let xs = transA ? EinsumContraction.permute(a.doubles, labels: ["k", "m"], shape: a.shape, to: ["m", "k"]) : a.doubles
        let ys = b.doubles
        var out = [Double](repeating: 0, count: try TensorMath.allocationCount([m, n], op: ctx.nodeLabel))
        if m > 0, n > 0, k > 0 {
            xs.withUnsafeBufferPointer { ap in
                ys.withUnsafeBufferPointer { bp in
                    out.withUnsafeMutableBufferPointer { cp in
                        MatrixMultiply.multiply(FastKernels.multiplier, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!,
                                                ldb: transB ? k : n, transposedB: transB, c: cp.baseAddress!, ldc: n, threads: ctx.threads)
                    }
                }
            }
        }
        if alpha != 1 { for p in out.indices { out[p] *= alpha } }
        if let c = ctx.optionalInput(2) {
            guard let shape = TensorMath.broadcast(c.shape, [m, n]), shape == [m, n] else { throw ctx.invalid("C \(c.shape) does not broadcast to \([m, n])") }
            let ic = try TensorMath.broadcastIndices(from: c.shape, to: [m, n], op: ctx.nodeLabel)
            let cs = c.doubles
            for p in out.indices { out[p] += beta * cs[ic[p]] }
        }
        return [TensorValue(a.type, shape: [m, n], floats: TensorMath.stored(out, as: a.type))]
    }
}
