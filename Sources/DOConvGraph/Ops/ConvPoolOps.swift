import DOConvGraphKernels

/// Convolution and pooling over any number of spatial dims (N, C, D1, ..., Dk):
/// Conv, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.
enum ConvPoolOps {
    static let kernels: [String: OpKernel] = [
        "Conv": conv,
        "ConvTranspose": convTranspose,
        "MaxPool": { ctx in try pool(ctx, max: true) },
        "AveragePool": { ctx in try pool(ctx, max: false) },
        "GlobalAveragePool": { ctx in try globalPool(ctx, max: false) },
        "GlobalMaxPool": { ctx in try globalPool(ctx, max: true) },
    ]

    /// The sliding-window geometry of one op application.
    struct Window {
        var input: [Int]
        var kernel: [Int]
        var strides: [Int]
        var dilations: [Int]
        var padsBegin: [Int]
        var padsEnd: [Int]
        var output: [Int]

        /// For each output position and kernel position (both flat), the flat input position,
        /// or -1 where the window reads padding: one row of the kernel's element count per
        /// output position, in one array (entry `o * kernelCount + k`).
        func offsets(op: String) throws -> [Int] {
            let outCount = try TensorMath.elementCount(output, op: op)
            let kernelCount = try TensorMath.elementCount(kernel, op: op)
            let inStrides = try TensorMath.strides(of: input, op: op)
            // Every flat input position below is less than the input's element count.
            _ = try TensorMath.elementCount(input, op: op)
            // Pads from a file may ask for 2^40 output positions: the size is checked first.
            var table = [Int](repeating: -1, count: try TensorMath.tableSize(outCount, kernelCount, op: op))
            for o in 0..<outCount {
                let oi = TensorValue.index(of: o, in: output)
                for k in 0..<kernelCount {
                    let ki = TensorValue.index(of: k, in: kernel)
                    var flat = 0
                    var inside = true
                    for axis in 0..<input.count {
                        let position = oi[axis] * strides[axis] - padsBegin[axis] + ki[axis] * dilations[axis]
                        if position < 0 || position >= input[axis] { inside = false; break }
                        flat += position * inStrides[axis]
                    }
                    if inside { table[o * kernelCount + k] = flat }
                }
            }
            return table
        }
    }

    /// Reads strides, dilations and pads (explicit or auto_pad) and computes the output size.
    static func window(_ ctx: OpContext, input: [Int], kernel: [Int], ceilMode: Bool = false) throws -> Window {
        let rank = input.count
        let strides = try ctx.ints("strides").map { $0.map(Int.init) } ?? [Int](repeating: 1, count: rank)
        let dilations = try ctx.ints("dilations").map { $0.map(Int.init) } ?? [Int](repeating: 1, count: rank)
        guard strides.count == rank, dilations.count == rank, kernel.count == rank else {
            throw ctx.invalid("strides \(strides), dilations \(dilations) or kernel \(kernel) do not have \(rank) spatial dims")
        }
        guard strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }), kernel.allSatisfy({ $0 > 0 }) else {
            throw ctx.invalid("non-positive stride, dilation or kernel size")
        }
        // Dims and attributes from the model, bounded before any arithmetic on them (as
        // ConvTranspose's): a dim past 2^40 can only be an empty tensor's.
        guard input.allSatisfy({ $0 <= spatialBound }), kernel.allSatisfy({ $0 <= spatialBound }),
              strides.allSatisfy({ $0 <= attributeBound }), dilations.allSatisfy({ $0 <= attributeBound }) else {
            throw ctx.invalid("spatial dims \(input), kernel \(kernel), strides \(strides) or dilations \(dilations) out of range")
        }
        var begin = [Int](repeating: 0, count: rank)
        var end = [Int](repeating: 0, count: rank)
        var output = [Int](repeating: 0, count: rank)
        let autoPad = try ctx.string("auto_pad", default: "NOTSET")
        for axis in 0..<rank {
            let dk = (kernel[axis] - 1) * dilations[axis] + 1
            switch autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                output[axis] = (input[axis] + strides[axis] - 1) / strides[axis]
                let total = max(0, (output[axis] - 1) * strides[axis] + dk - input[axis])
                begin[axis] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                end[axis] = total - begin[axis]
            case "VALID":
                output[axis] = (input[axis] - dk) / strides[axis] + 1
            case "NOTSET", "":
                if let pads = try ctx.ints("pads") {
                    guard pads.count == 2 * rank else { throw ctx.invalid("pads \(pads) do not have \(2 * rank) values") }
                    let bound = Int64(attributeBound)
                    guard pads.allSatisfy({ (-bound...bound).contains($0) }) else { throw ctx.invalid("pads \(pads) out of range") }
                    begin[axis] = Int(pads[axis])
                    end[axis] = Int(pads[axis + rank])
                }
                let span = input[axis] + begin[axis] + end[axis] - dk
                if ceilMode {
                    output[axis] = (span + strides[axis] - 1) / strides[axis] + 1
                    // The last window must start inside the input or the leading padding.
                    if (output[axis] - 1) * strides[axis] >= input[axis] + begin[axis] { output[axis] -= 1 }
                } else {
                    output[axis] = span >= 0 ? span / strides[axis] + 1 : 0
                }
            default:
                throw ctx.invalid("unknown auto_pad '\(autoPad)'")
            }
            guard output[axis] > 0 else { throw ctx.invalid("the output would be empty along spatial axis \(axis)") }
        }
        return Window(input: input, kernel: kernel, strides: strides, dilations: dilations, padsBegin: begin, padsEnd: end, output: output)
    }

    /// The largest spatial dim (input or kernel) the window arithmetic takes: larger ones
    /// belong only to empty tensors (a tensor holding 2^40 values would be 8 TB).
    static let spatialBound = 1 << 40
    /// The largest stride, dilation, pad or output padding it takes. With `spatialBound`,
    /// no sum or product of the window arithmetic leaves Int's range.
    static let attributeBound = 1 << 20

    static func conv(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.floatInput(0)
        let w = try ctx.floatInput(1)
        let bias = ctx.optionalInput(2)?.doubles
        guard x.rank >= 3, w.rank == x.rank else { throw ctx.invalid("input \(x.shape) and weight \(w.shape) ranks do not fit") }
        let groups = Int(try ctx.int("group", default: 1))
        let (n, cin, cout) = (x.shape[0], x.shape[1], w.shape[0])
        guard groups > 0, cin % groups == 0, cout % groups == 0, w.shape[1] == cin / groups else {
            throw ctx.invalid("weight \(w.shape) does not fit \(cin) input channels in \(groups) groups")
        }
        if let bias, bias.count != cout { throw ctx.invalid("bias has \(bias.count) values for \(cout) channels") }
        let kernel = Array(w.shape.dropFirst(2))
        if let declared = try ctx.ints("kernel_shape"), declared.map(Int.init) != kernel {
            throw ctx.invalid("kernel_shape \(declared) differs from the weight's \(kernel)")
        }
        let win = try window(ctx, input: Array(x.shape.dropFirst(2)), kernel: kernel)
        let outShape = [n, cout] + win.output
        let outCount = try TensorMath.allocationCount(outShape, op: ctx.nodeLabel)
        if x.rank == 4 { return [conv2D(x: x, w: w, bias: bias, groups: groups, window: win, count: outCount, threads: ctx.threads)] }
        // An empty output needs no table and no loop (over a batch that may be 2^40 long).
        guard outCount > 0 else { return [TensorValue(x.type, shape: outShape, floats: [])] }
        let table = try win.offsets(op: ctx.nodeLabel)
        let (inSpatial, outSpatial, kSpatial) = (try TensorMath.elementCount(win.input, op: ctx.nodeLabel),
                                                 try TensorMath.elementCount(win.output, op: ctx.nodeLabel),
                                                 try TensorMath.elementCount(kernel, op: ctx.nodeLabel))
        let (inPerGroup, outPerGroup) = (cin / groups, cout / groups)
        let xs = x.doubles
        let ws = w.doubles
        var out = [Double](repeating: 0, count: outCount)
        for b in 0..<n {
            for oc in 0..<cout {
                let g = oc / outPerGroup
                let base = (b * cout + oc) * outSpatial
                let initial = bias?[oc] ?? 0
                for o in 0..<outSpatial {
                    var sum = initial
                    let row = o * kSpatial
                    for ic in 0..<inPerGroup {
                        let xBase = (b * cin + g * inPerGroup + ic) * inSpatial
                        let wBase = (oc * inPerGroup + ic) * kSpatial
                        for k in 0..<kSpatial where table[row + k] >= 0 {
                            sum += xs[xBase + table[row + k]] * ws[wBase + k]
                        }
                    }
                    out[base + o] = sum
                }
            }
        }
        return [TensorValue(x.type, shape: outShape, floats: TensorMath.stored(out, as: x.type))]
    }

    /// The 2-D case on the optimized kernels (im2col + GEMM, or direct depthwise); `count`
    /// is the output's element count, checked by the caller.
    static func conv2D(x: TensorValue, w: TensorValue, bias: [Double]?, groups: Int, window win: Window, count: Int, threads: Int) -> TensorValue {
        let (n, cin, cout) = (x.shape[0], x.shape[1], w.shape[0])
        let convolution = Convolution2D(batch: n, inChannels: cin, height: win.input[0], width: win.input[1], outChannels: cout, groups: groups,
                                        kernel: (win.kernel[0], win.kernel[1]), stride: (win.strides[0], win.strides[1]),
                                        dilation: (win.dilations[0], win.dilations[1]), padBegin: (win.padsBegin[0], win.padsBegin[1]),
                                        output: (win.output[0], win.output[1]))
        let xs = x.doubles, ws = w.doubles
        guard !xs.isEmpty, !ws.isEmpty, count > 0 else {
            return TensorValue(x.type, shape: [n, cout] + win.output, floats: [Double](repeating: 0, count: count))
        }
        // Every way `run` computes writes every output (GEMM tiles, Winograd blocks, bands of
        // rows, depthwise planes): no zero fill first.
        let out = [Double](unsafeUninitializedCapacity: count) { buffer, initialized in
            xs.withUnsafeBufferPointer { xp in
                ws.withUnsafeBufferPointer { wp in
                    let target = buffer.baseAddress!
                    let run = { (bp: UnsafePointer<Double>?) in
                        convolution.run(FastKernels.multiplier, x: xp.baseAddress!, w: wp.baseAddress!, bias: bp, out: target, threads: threads)
                    }
                    if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
                }
            }
            initialized = count
        }
        return TensorValue(x.type, shape: [n, cout] + win.output, floats: TensorMath.stored(out, as: x.type))
    }

    static func convTranspose(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.floatInput(0)
        let w = try ctx.floatInput(1)
        let bias = ctx.optionalInput(2)?.doubles
        guard x.rank >= 3, w.rank == x.rank else { throw ctx.invalid("input \(x.shape) and weight \(w.shape) ranks do not fit") }
        let rank = x.rank - 2
        let groups = Int(try ctx.int("group", default: 1))
        let (n, cin) = (x.shape[0], x.shape[1])
        guard groups > 0, w.shape[0] == cin, cin % groups == 0 else { throw ctx.invalid("weight \(w.shape) does not fit \(cin) input channels") }
        let outPerGroup = w.shape[1]
        let cout = try TensorMath.checkedProduct(outPerGroup, groups, op: ctx.nodeLabel)
        if let bias, bias.count != cout { throw ctx.invalid("bias has \(bias.count) values for \(cout) channels") }
        let kernel = Array(w.shape.dropFirst(2))
        let input = Array(x.shape.dropFirst(2))
        let strides = try ctx.ints("strides").map { $0.map(Int.init) } ?? [Int](repeating: 1, count: rank)
        let dilations = try ctx.ints("dilations").map { $0.map(Int.init) } ?? [Int](repeating: 1, count: rank)
        let outputPadding = try ctx.ints("output_padding").map { $0.map(Int.init) } ?? [Int](repeating: 0, count: rank)
        guard strides.count == rank, dilations.count == rank, outputPadding.count == rank else { throw ctx.invalid("attribute ranks do not fit") }
        let autoPad = try ctx.string("auto_pad", default: "NOTSET")
        var begin = [Int](repeating: 0, count: rank)
        var output = [Int](repeating: 0, count: rank)
        let declared = try ctx.ints("output_shape").map { Array($0.suffix(rank)).map(Int.init) }
        let pads = try ctx.ints("pads").map { $0.map(Int.init) }
        // Dims and attributes from the model, bounded before any arithmetic on them.
        let bound = attributeBound
        guard input.allSatisfy({ $0 <= spatialBound }), kernel.allSatisfy({ $0 <= spatialBound }),
              strides.allSatisfy({ (1...bound).contains($0) }), dilations.allSatisfy({ (1...bound).contains($0) }),
              outputPadding.allSatisfy({ (0...bound).contains($0) }), pads.map({ $0.count == 2 * rank && $0.allSatisfy { (0...bound).contains($0) } }) ?? true,
              declared.map({ $0.count == rank && $0.allSatisfy { (1...(1 << 28)).contains($0) } }) ?? true else {
            throw ctx.invalid("spatial dims, kernel, strides, dilations, output_padding, pads or output_shape out of range")
        }
        for axis in 0..<rank {
            let full = strides[axis] * (input[axis] - 1) + outputPadding[axis] + (kernel[axis] - 1) * dilations[axis] + 1
            if let declared {
                // As onnxruntime does: padding never negative (a larger output is zero-filled);
                // the odd unit at the tail for SAME_UPPER, at the head otherwise.
                output[axis] = declared[axis]
                let total = max(0, full - declared[axis])
                begin[axis] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
            } else if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
                output[axis] = input[axis] * strides[axis]
                let total = full - output[axis]
                begin[axis] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
            } else {
                let b = pads.map { $0[axis] } ?? 0
                let e = pads.map { $0[axis + rank] } ?? 0
                begin[axis] = b
                output[axis] = full - b - e
            }
            guard output[axis] > 0 else { throw ctx.invalid("the output would be empty") }
        }
        let (inSpatial, outSpatial, kSpatial) = (try TensorMath.elementCount(input, op: ctx.nodeLabel),
                                                 try TensorMath.elementCount(output, op: ctx.nodeLabel),
                                                 try TensorMath.elementCount(kernel, op: ctx.nodeLabel))
        let outStrides = try TensorMath.strides(of: output, op: ctx.nodeLabel)
        let inPerGroup = cin / groups
        let xs = x.doubles
        let ws = w.doubles
        var out = [Double](repeating: 0, count: try TensorMath.allocationCount([n, cout, outSpatial], op: ctx.nodeLabel))
        // An empty x or output scatters nothing: no table, and no loop over a batch that may
        // be 2^40 long.
        let scatters = !xs.isEmpty && !out.isEmpty
        let rows = scatters ? inSpatial : 0
        // Target output position of (input position, kernel position), or -1 (entry i * kSpatial + k).
        var target = [Int](repeating: -1, count: try TensorMath.tableSize(rows, kSpatial, op: ctx.nodeLabel))
        for i in 0..<rows {
            let ii = TensorValue.index(of: i, in: input)
            for k in 0..<kSpatial {
                let ki = TensorValue.index(of: k, in: kernel)
                var flat = 0
                var inside = true
                for axis in 0..<rank {
                    let p = ii[axis] * strides[axis] + ki[axis] * dilations[axis] - begin[axis]
                    if p < 0 || p >= output[axis] { inside = false; break }
                    flat += p * outStrides[axis]
                }
                if inside { target[i * kSpatial + k] = flat }
            }
        }
        for b in 0..<(scatters ? n : 0) {
            for ic in 0..<cin {
                let g = ic / inPerGroup
                for oc in 0..<outPerGroup {
                    let outBase = (b * cout + g * outPerGroup + oc) * outSpatial
                    let wBase = (ic * outPerGroup + oc) * kSpatial
                    for i in 0..<inSpatial {
                        let v = xs[(b * cin + ic) * inSpatial + i]
                        for k in 0..<kSpatial where target[i * kSpatial + k] >= 0 {
                            out[outBase + target[i * kSpatial + k]] += v * ws[wBase + k]
                        }
                    }
                }
            }
        }
        if let bias {
            for k in out.indices { out[k] += bias[(k / outSpatial) % cout] }
        }
        return [TensorValue(x.type, shape: [n, cout] + output, floats: TensorMath.stored(out, as: x.type))]
    }

    static func pool(_ ctx: OpContext, max isMax: Bool) throws -> [TensorValue] {
        let x = try ctx.floatInput(0)
        guard x.rank >= 3 else { throw ctx.invalid("input rank \(x.rank) < 3") }
        guard let kernel = try ctx.ints("kernel_shape")?.map(Int.init) else { throw ctx.invalid("no kernel_shape") }
        let win = try window(ctx, input: Array(x.shape.dropFirst(2)), kernel: kernel, ceilMode: try ctx.int("ceil_mode", default: 0) != 0)
        let includePad = try ctx.int("count_include_pad", default: 0) != 0
        let wantsIndices = ctx.node.outputs.count > 1 && !ctx.node.outputs[1].isEmpty
        if wantsIndices, try ctx.int("storage_order", default: 0) != 0 { throw ctx.unsupported("storage_order=1 indices") }
        let table = try win.offsets(op: ctx.nodeLabel)
        let (inSpatial, outSpatial, kSpatial) = (try TensorMath.elementCount(win.input, op: ctx.nodeLabel),
                                                 try TensorMath.elementCount(win.output, op: ctx.nodeLabel),
                                                 try TensorMath.elementCount(kernel, op: ctx.nodeLabel))
        // For count_include_pad: window positions inside the padded extent (not the ceil_mode overhang).
        var paddedCounts = [Int](repeating: 0, count: outSpatial)
        if !isMax, includePad {
            for o in 0..<outSpatial {
                let oi = TensorValue.index(of: o, in: win.output)
                var count = 1
                for axis in 0..<kernel.count {
                    var inside = 0
                    for k in 0..<kernel[axis] {
                        let p = oi[axis] * win.strides[axis] - win.padsBegin[axis] + k * win.dilations[axis]
                        if p >= -win.padsBegin[axis], p < win.input[axis] + win.padsEnd[axis] { inside += 1 }
                    }
                    count *= inside
                }
                paddedCounts[o] = count
            }
        }
        let planes = try TensorMath.elementCount(x.shape.prefix(2), op: ctx.nodeLabel)
        let outCount = try TensorMath.allocationCount([planes, outSpatial], op: ctx.nodeLabel)
        let xs = x.doubles
        var out = [Double](repeating: 0, count: outCount)
        var indices = [Int64](repeating: 0, count: wantsIndices ? outCount : 0)
        let workers = ParallelLoop.workers(threads: ctx.threads, items: planes, work: outCount * kSpatial)
        xs.withUnsafeBufferPointer { xs in
            table.withUnsafeBufferPointer { table in
                paddedCounts.withUnsafeBufferPointer { paddedCounts in
                    out.withUnsafeMutableBufferPointer { out in
                        indices.withUnsafeMutableBufferPointer { indices in
                            // Each plane writes its own outputs (and indices); the input is only read.
                            ParallelLoop.run(planes, workers: workers) { plane in
                                let base = plane * inSpatial
                                for o in 0..<outSpatial {
                                    let row = table[(o * kSpatial)..<((o + 1) * kSpatial)]
                                    if isMax {
                                        var best = -Double.infinity
                                        var bestIndex = -1
                                        for offset in row where offset >= 0 {
                                            let v = xs[base + offset]
                                            if v > best || bestIndex < 0 || v.isNaN { best = v; bestIndex = offset }
                                        }
                                        out[plane * outSpatial + o] = best
                                        if wantsIndices { indices[plane * outSpatial + o] = Int64(base + max(bestIndex, 0)) }
                                    } else {
                                        var sum = 0.0
                                        var count = 0
                                        for offset in row where offset >= 0 {
                                            sum += xs[base + offset]
                                            count += 1
                                        }
                                        let divisor = includePad ? paddedCounts[o] : count
                                        out[plane * outSpatial + o] = divisor > 0 ? sum / Double(divisor) : .nan
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let shape = Array(x.shape.prefix(2)) + win.output
        var results = [TensorValue(x.type, shape: shape, floats: TensorMath.stored(out, as: x.type))]
        if wantsIndices { results.append(TensorValue(.int64, shape: shape, ints: indices)) }
        return results
    }

    static func globalPool(_ ctx: OpContext, max isMax: Bool) throws -> [TensorValue] {
        let x = try ctx.floatInput(0)
        guard x.rank >= 3 else { throw ctx.invalid("input rank \(x.rank) < 3") }
        let planes = try TensorMath.elementCount(x.shape.prefix(2), op: ctx.nodeLabel)
        let inner = try TensorMath.elementCount(x.shape.dropFirst(2), op: ctx.nodeLabel)
        let xs = x.doubles
        // One value per plane, even of an empty x: its planes may be 2^40.
        var out = [Double](repeating: 0, count: try TensorMath.allocationCount([planes], op: ctx.nodeLabel))
        for p in 0..<planes {
            let slice = xs[(p * inner)..<((p + 1) * inner)]
            out[p] = isMax ? (slice.max() ?? .nan) : slice.reduce(0, +) / Double(inner)
        }
        return [TensorValue(x.type, shape: Array(x.shape.prefix(2)) + [Int](repeating: 1, count: x.rank - 2), floats: TensorMath.stored(out, as: x.type))]
    }
}
