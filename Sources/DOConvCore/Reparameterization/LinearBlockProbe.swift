/// A feature map of one image, [channels, height, width], in float64.
public struct FeatureMap: Equatable, Sendable {
    public var channels: Int
    public var height: Int
    public var width: Int
    public var values: [Double]

    public init(channels: Int, height: Int, width: Int, values: [Double]) {
        self.channels = channels
        self.height = height
        self.width = width
        self.values = values
    }
}

extension AffineConv {
    /// The convolution of `x`, computed directly (padding with zeros or `padValue`, groups,
    /// stride, dilation): the reference the probes compare against, sharing nothing with the
    /// merging code.
    public func apply(to x: FeatureMap) throws(ReparamRefusal) -> FeatureMap {
        guard x.channels == inChannels else { throw ReparamRefusal("a \(inChannels)-channel stage given \(x.channels) channels") }
        let outH = (x.height + pads[0] + pads[2] - extent[0]) / stride[0] + 1
        let outW = (x.width + pads[1] + pads[3] - extent[1]) / stride[1] + 1
        guard x.height + pads[0] + pads[2] >= extent[0], x.width + pads[1] + pads[3] >= extent[1] else {
            throw ReparamRefusal("the probe image is smaller than the kernel")
        }
        var out = [Double](repeating: 0, count: outChannels * outH * outW)
        let perGroup = inChannelsPerGroup, outPerGroup = outChannelsPerGroup
        let work = outChannels * perGroup * kernelSize[0] * kernelSize[1] * outH * outW
        out.withUnsafeMutableBufferPointer { output in
            let output = output
            ParallelWork.forEachSlice(of: outChannels, count: ParallelWork.threads(forMultiplyAdds: work, max: ParallelWork.defaultThreads)) { range in
                for o in range {
                    let firstChannel = (o / outPerGroup) * perGroup
                    for y in 0..<outH {
                        for xo in 0..<outW {
                            var sum = bias[o]
                            for c in 0..<perGroup {
                                let plane = (firstChannel + c) * x.height * x.width
                                let padding = padValue?[firstChannel + c] ?? 0
                                for i in 0..<kernelSize[0] {
                                    let row = y * stride[0] + i * dilation[0] - pads[0]
                                    let rowInside = row >= 0 && row < x.height
                                    if !rowInside && padding == 0 { continue }
                                    for j in 0..<kernelSize[1] {
                                        let column = xo * stride[1] + j * dilation[1] - pads[1]
                                        let inside = rowInside && column >= 0 && column < x.width
                                        sum += weight(o, c, i, j) * (inside ? x.values[plane + row * x.width + column] : padding)
                                    }
                                }
                            }
                            output[(o * outH + y) * outW + xo] = sum
                        }
                    }
                }
            }
        }
        return FeatureMap(channels: outChannels, height: outH, width: outW, values: out)
    }
}

/// Checks a merged conv against the block it replaces: a seeded random image through every
/// branch stage by stage (each with its own padding), the branch outputs summed, against the
/// image through the merged conv. Images are small but larger than every kernel, so the
/// border (where a wrong padding shows) is most of the output.
public enum LinearBlockProbe {
    /// The worst |difference| over the largest |reference| value; `stored` is the merged
    /// kernel as written (rounded to the model's element type), when given.
    public static func relativeError(branches: [[AffineConv]], merged: AffineConv, stored: (kernel: [Double], bias: [Double])? = nil,
                                     images: Int = 2, seed: UInt64 = 0x5EED) throws(ReparamRefusal) -> Double {
        var conv = merged
        if let stored {
            conv.kernel = stored.kernel
            conv.bias = stored.bias
        }
        var generator = SeededGenerator(seed: seed)
        var worstDifference = 0.0, largest = 0.0
        let height = 3 * merged.stride[0] + merged.extent[0] + 1
        let width = 3 * merged.stride[1] + merged.extent[1] + 1
        for _ in 0..<images {
            let image = FeatureMap(channels: merged.inChannels, height: height, width: width,
                                   values: (0..<(merged.inChannels * height * width)).map { _ in Double.random(in: -1...1, using: &generator) })
            var reference: FeatureMap?
            for branch in branches {
                var value = image
                for stage in branch { value = try stage.apply(to: value) }
                guard let sum = reference else { reference = value; continue }
                guard (sum.channels, sum.height, sum.width) == (value.channels, value.height, value.width) else {
                    throw ReparamRefusal("branch outputs differ in shape (\(sum.height)x\(sum.width) and \(value.height)x\(value.width))")
                }
                for k in value.values.indices { reference?.values[k] += value.values[k] }
            }
            guard let reference else { throw ReparamRefusal("no branch to probe") }
            let actual = try conv.apply(to: image)
            guard (actual.channels, actual.height, actual.width) == (reference.channels, reference.height, reference.width) else {
                throw ReparamRefusal("the merged conv's output is \(actual.height)x\(actual.width), the block's \(reference.height)x\(reference.width)")
            }
            for k in reference.values.indices {
                worstDifference = max(worstDifference, abs(actual.values[k] - reference.values[k]))
                largest = max(largest, abs(reference.values[k]))
            }
        }
        return worstDifference.isNaN ? .nan : (largest > 0 ? worstDifference / largest : worstDifference)
    }
}

/// Branches of linear stages that read one input and are summed: a RepVGG or ACNet block,
/// MobileOne's k branches plus scale and skip, or (one branch) an ExpandNets chain.
public struct LinearBlock: Sendable {
    /// Each branch's stages in data-flow order; an empty branch is the input itself.
    public var branches: [[AffineConv]]
    public var inChannels: Int

    public init(branches: [[AffineConv]], inChannels: Int) {
        self.branches = branches
        self.inChannels = inChannels
    }

    /// The one conv the block computes.
    public func merged() throws(ReparamRefusal) -> AffineConv {
        var terms: [AffineConv] = []
        for branch in branches {
            guard var composed = branch.first else {
                terms.append(try .identity(channels: inChannels))
                continue
            }
            for stage in branch.dropFirst() { composed = try composed.followed(by: stage) }
            terms.append(composed)
        }
        return try AffineConv.sum(terms)
    }

    /// The block's stages as the probe runs them (an empty branch as the identity).
    public func probeBranches() throws(ReparamRefusal) -> [[AffineConv]] {
        var result: [[AffineConv]] = []
        for branch in branches { result.append(branch.isEmpty ? [try .identity(channels: inChannels)] : branch) }
        return result
    }
}
