/// The two exact rules of linear re-parameterization: parallel branches add, sequential
/// stages compose (paper, Section 3: a composition of linear maps is one linear map).
extension AffineConv {
    /// One conv computing the sum of `terms` applied to the same input.
    ///
    /// Each kernel is zero-padded to the largest, placed so every tap reads the input pixel
    /// it read before (1x1 in 3x3 at the centre for RepVGG, 1x3 and 3x1 in 3x3 for ACNet);
    /// strides, channels and the dilation of kernels wider than 1 must agree, and each term's
    /// padding must line up with its place. Groups become the finest grouping all terms fit.
    public static func sum(_ terms: [AffineConv]) throws(ReparamRefusal) -> AffineConv {
        guard let first = terms.first else { throw ReparamRefusal("no branch to merge") }
        for term in terms.dropFirst() {
            guard term.inChannels == first.inChannels, term.outChannels == first.outChannels else {
                throw ReparamRefusal("branches map \(first.inChannels) -> \(first.outChannels) and \(term.inChannels) -> \(term.outChannels) channels")
            }
            guard term.stride == first.stride else { throw ReparamRefusal("branch strides differ (\(dims(first.stride)) and \(dims(term.stride)))") }
        }
        // Branches that pad must pad with the same values (one input, one padding).
        let padValues = terms.filter(\.hasPadding).map(\.padValue)
        guard padValues.allSatisfy({ $0 == padValues.first ?? nil }) else { throw ReparamRefusal("branches pad with different values") }
        var size = [1, 1], dilation = [1, 1], pads = [0, 0, 0, 0]
        for axis in 0..<2 {
            size[axis] = terms.map { $0.kernelSize[axis] }.max() ?? 1
            let widest = terms.filter { $0.kernelSize[axis] == size[axis] }
            let wide = terms.filter { $0.kernelSize[axis] > 1 }
            dilation[axis] = wide.first?.dilation[axis] ?? 1
            guard wide.allSatisfy({ $0.dilation[axis] == dilation[axis] }) else {
                throw ReparamRefusal("branch dilations differ (\(wide.map { dims($0.dilation) }.joined(separator: ", ")))")
            }
            let begins = Set(widest.map { $0.pads[axis] }), ends = Set(widest.map { $0.pads[axis + 2] })
            guard begins.count == 1, ends.count == 1, let begin = begins.first, let end = ends.first else {
                throw ReparamRefusal("branches with the largest kernel pad differently")
            }
            pads[axis] = begin
            pads[axis + 2] = end
        }
        let groups = terms.map(\.groups).reduce(first.groups, greatestCommonDivisor)
        let area = size[0] * size[1]
        var kernel = [Double](repeating: 0, count: first.outChannels * (first.inChannels / groups) * area)
        var bias = [Double](repeating: 0, count: first.outChannels)
        for term in terms {
            // Where this kernel's first tap sits in the merged one, per axis.
            var offset = [0, 0]
            for axis in 0..<2 {
                let shift = pads[axis] - term.pads[axis]
                let (o, remainder) = shift.quotientAndRemainder(dividingBy: dilation[axis])
                let endShift = pads[axis + 2] - term.pads[axis + 2]
                guard shift >= 0, remainder == 0, o + term.kernelSize[axis] <= size[axis],
                      endShift == (size[axis] - term.kernelSize[axis] - o) * dilation[axis] else {
                    throw ReparamRefusal("a \(term.kernelSize[0])x\(term.kernelSize[1]) branch with pads \(dims(term.pads)) does not line up inside "
                        + "\(size[0])x\(size[1]) with pads \(dims(pads))")
                }
                offset[axis] = o
            }
            let t = term.regrouped(to: groups)
            let perGroup = t.inChannelsPerGroup
            for o in 0..<t.outChannels {
                bias[o] += t.bias[o]
                for c in 0..<perGroup {
                    for i in 0..<t.kernelSize[0] {
                        for j in 0..<t.kernelSize[1] {
                            kernel[((o * perGroup + c) * size[0] + i + offset[0]) * size[1] + j + offset[1]] += t.weight(o, c, i, j)
                        }
                    }
                }
            }
        }
        return try AffineConv(outChannels: first.outChannels, inChannels: first.inChannels, groups: groups, kernelSize: size,
                              stride: first.stride, dilation: dilation, pads: pads, kernel: kernel, bias: bias, padValue: padValues.first ?? nil)
    }

    /// One conv computing `next` applied to this conv's output.
    ///
    /// Exact when one of the two is 1x1 without padding: a 1x1 first stage (stride 1) mixes
    /// channels before `next`'s taps; a 1x1 second stage mixes them after this conv's taps
    /// (its stride multiplies). A first stage's bias would meet `next`'s padding at the
    /// border, where the composition would see the bias pushed through instead: refused
    /// unless `next` pads with that bias (zeros, or DBB's padding value, to `padTolerance` of
    /// the largest of them). Two wider kernels would compose into a larger kernel (more MACs
    /// than either): refused.
    public func followed(by next: AffineConv, padTolerance: Double = 1e-5) throws(ReparamRefusal) -> AffineConv {
        guard next.inChannels == outChannels else {
            throw ReparamRefusal("a stage of \(outChannels) channels feeds one of \(next.inChannels)")
        }
        let groups = greatestCommonDivisor(self.groups, next.groups)
        let a = regrouped(to: groups), b = next.regrouped(to: groups)
        let outer: AffineConv   // the stage whose geometry the composition keeps
        let mixesFirst: Bool    // true: this 1x1 conv mixes channels before next's taps
        if isPointwise, !hasPadding, stride == [1, 1] {
            outer = b
            mixesFirst = true
            if next.hasPadding {
                let value = next.padValue ?? [Double](repeating: 0, count: next.inChannels)
                let scale = max(value.map(abs).max() ?? 0, bias.map(abs).max() ?? 0)
                let gap = zip(value, bias).map { abs($0 - $1) }.max() ?? 0
                guard gap <= padTolerance * scale else {
                    throw ReparamRefusal(next.padValue == nil
                        ? "the first conv's bias would reach the second conv's zero padding at the border (DBB pads with the bias instead)"
                        : "the second conv pads with values that differ from the first conv's bias (by up to \(gap))")
                }
            }
        } else if next.isPointwise, !next.hasPadding {
            outer = a
            mixesFirst = false
        } else {
            throw ReparamRefusal("two \(kernelSize[0])x\(kernelSize[1]) and \(next.kernelSize[0])x\(next.kernelSize[1]) convs in a row compose into a larger kernel")
        }
        let size = outer.kernelSize, area = size[0] * size[1]
        let inPerGroup = a.inChannelsPerGroup, midPerGroup = a.outChannelsPerGroup
        var kernel = [Double](repeating: 0, count: b.outChannels * inPerGroup * area)
        var bias = b.bias
        for o in 0..<b.outChannels {
            let group = o / b.outChannelsPerGroup
            for m in 0..<midPerGroup {
                let mid = group * midPerGroup + m
                if mixesFirst {
                    // K[o, c, t] = sum_m B[o, m, t] * A[mid, c]; bias gains B[o, m, t] * a[mid] over all taps.
                    for t in 0..<area {
                        let w = b.kernel[(o * midPerGroup + m) * area + t]
                        bias[o] += w * a.bias[mid]
                        for c in 0..<inPerGroup { kernel[(o * inPerGroup + c) * area + t] += w * a.kernel[mid * inPerGroup + c] }
                    }
                } else {
                    // K[o, c, t] = sum_m B[o, m] * A[mid, c, t]; bias gains B[o, m] * a[mid].
                    let w = b.kernel[o * midPerGroup + m]
                    bias[o] += w * a.bias[mid]
                    for c in 0..<inPerGroup {
                        for t in 0..<area { kernel[(o * inPerGroup + c) * area + t] += w * a.kernel[(mid * inPerGroup + c) * area + t] }
                    }
                }
            }
        }
        let stride = mixesFirst ? next.stride : (0..<2).map { self.stride[$0] * next.stride[$0] }
        // The padding the composition applies to its input: this 1x1 conv has none (the second
        // stage's padding now reads the input, padded with zeros), or this conv's own.
        return try AffineConv(outChannels: next.outChannels, inChannels: inChannels, groups: groups, kernelSize: size,
                              stride: stride, dilation: outer.dilation, pads: outer.pads, kernel: kernel, bias: bias,
                              padValue: mixesFirst ? nil : padValue)
    }
}

func dims(_ values: [Int]) -> String { values.map(String.init).joined(separator: "x") }
