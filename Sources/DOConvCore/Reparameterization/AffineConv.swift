/// Why a linear block cannot become one convolution: one line for the report.
public struct ReparamRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A 2-D convolution with bias, as a linear map in float64: what every stage of a linear
/// over-parameterization is (a conv, a BatchNormalization as a per-channel scale and shift,
/// an average pool, the identity), and what a whole block of them merges into.
///
/// Kernel layout: [outChannels, inChannels / groups, kernelSize[0], kernelSize[1]], as ONNX
/// and PyTorch store it. Pads: [top, left, bottom, right].
public struct AffineConv: Equatable, Sendable {
    public var outChannels: Int
    public var inChannels: Int
    public var groups: Int
    public var kernelSize: [Int]
    public var stride: [Int]
    public var dilation: [Int]
    public var pads: [Int]
    public var kernel: [Double]
    /// One value per output channel (zeros when the conv has none).
    public var bias: [Double]
    /// What the conv pads its input with, one value per input channel; nil: zeros, as ONNX
    /// and PyTorch pad. DBB's BNAndPad pads with its BN's shift, which a 1x1 conv before it
    /// with that bias computes at the border too, so the two compose exactly.
    public var padValue: [Double]?

    public var inChannelsPerGroup: Int { inChannels / groups }
    public var outChannelsPerGroup: Int { outChannels / groups }
    public var isPointwise: Bool { kernelSize == [1, 1] }
    public var hasPadding: Bool { pads.contains { $0 != 0 } }
    /// The kernel's reach per axis: dilation * (size - 1) + 1.
    public var extent: [Int] { (0..<2).map { dilation[$0] * (kernelSize[$0] - 1) + 1 } }

    /// Checks the geometry against the kernel's size.
    public init(outChannels: Int, inChannels: Int, groups: Int, kernelSize: [Int], stride: [Int] = [1, 1], dilation: [Int] = [1, 1],
                pads: [Int] = [0, 0, 0, 0], kernel: [Double], bias: [Double]? = nil, padValue: [Double]? = nil) throws(ReparamRefusal) {
        guard groups > 0, outChannels > 0, inChannels > 0, outChannels % groups == 0, inChannels % groups == 0 else {
            throw ReparamRefusal("channels \(inChannels) -> \(outChannels) do not split into \(groups) groups")
        }
        guard kernelSize.count == 2, stride.count == 2, dilation.count == 2, pads.count == 4,
              kernelSize.allSatisfy({ $0 > 0 }), stride.allSatisfy({ $0 > 0 }), dilation.allSatisfy({ $0 > 0 }), pads.allSatisfy({ $0 >= 0 }) else {
            throw ReparamRefusal("only 2-D convolutions with positive kernel, stride and dilation and non-negative pads re-parameterize")
        }
        guard kernel.count == outChannels * (inChannels / groups) * kernelSize[0] * kernelSize[1] else {
            throw ReparamRefusal("a kernel of \(kernel.count) values does not fit \(outChannels)x\(inChannels / groups)x\(kernelSize[0])x\(kernelSize[1])")
        }
        if let bias, bias.count != outChannels { throw ReparamRefusal("a bias of \(bias.count) values for \(outChannels) output channels") }
        if let padValue, padValue.count != inChannels { throw ReparamRefusal("a padding value of \(padValue.count) values for \(inChannels) input channels") }
        self.outChannels = outChannels
        self.inChannels = inChannels
        self.groups = groups
        self.kernelSize = kernelSize
        // A 1x1 kernel reads one tap: its dilation is immaterial, so it never blocks a merge.
        self.dilation = (0..<2).map { kernelSize[$0] == 1 ? 1 : dilation[$0] }
        self.stride = stride
        self.pads = pads
        self.kernel = kernel
        self.bias = bias ?? [Double](repeating: 0, count: outChannels)
        self.padValue = padValue.flatMap { $0.allSatisfy { $0 == 0 } ? nil : $0 }
    }

    /// A per-channel scale and shift (an inference-mode BatchNormalization): a 1x1 depthwise conv.
    public static func channelAffine(scale: [Double], shift: [Double]) throws(ReparamRefusal) -> AffineConv {
        guard scale.count == shift.count, !scale.isEmpty else { throw ReparamRefusal("scale and shift of different lengths") }
        return try AffineConv(outChannels: scale.count, inChannels: scale.count, groups: scale.count, kernelSize: [1, 1], kernel: scale, bias: shift)
    }

    /// The identity on `channels` channels (a branch that is the block's input itself).
    public static func identity(channels: Int) throws(ReparamRefusal) -> AffineConv {
        try channelAffine(scale: [Double](repeating: 1, count: channels), shift: [Double](repeating: 0, count: channels))
    }

    /// An average pool that counts the padding in its divisor (ONNX `count_include_pad=1`,
    /// PyTorch's default): a depthwise conv with 1/(kh*kw) everywhere.
    public static func averagePool(channels: Int, kernelSize: [Int], stride: [Int], pads: [Int], padValue: [Double]? = nil) throws(ReparamRefusal) -> AffineConv {
        let area = kernelSize.reduce(1, *)
        return try AffineConv(outChannels: channels, inChannels: channels, groups: channels, kernelSize: kernelSize, stride: stride, pads: pads,
                              kernel: [Double](repeating: 1 / Double(area), count: channels * area), padValue: padValue)
    }

    /// The same map with `target` groups, where `target` divides `groups`: the kernel becomes
    /// block diagonal in the coarser grouping (zeros across the old groups).
    public func regrouped(to target: Int) -> AffineConv {
        guard target != groups, target > 0, groups % target == 0 else { return self }
        let area = kernelSize[0] * kernelSize[1]
        let oldIn = inChannelsPerGroup, newIn = inChannels / target
        let oldOut = outChannelsPerGroup, newOut = outChannels / target
        var result = [Double](repeating: 0, count: outChannels * newIn * area)
        for o in 0..<outChannels {
            let oldGroup = o / oldOut, newGroup = o / newOut
            for c in 0..<oldIn {
                let local = oldGroup * oldIn + c - newGroup * newIn
                for t in 0..<area { result[(o * newIn + local) * area + t] = kernel[(o * oldIn + c) * area + t] }
            }
        }
        var copy = self
        copy.groups = target
        copy.kernel = result
        return copy
    }

    /// Tap (i, j) of kernel (o, c).
    @inline(__always) func weight(_ o: Int, _ c: Int, _ i: Int, _ j: Int) -> Double {
        kernel[((o * inChannelsPerGroup + c) * kernelSize[0] + i) * kernelSize[1] + j]
    }
}

/// Greatest common divisor, for the grouping two convs share.
func greatestCommonDivisor(_ a: Int, _ b: Int) -> Int {
    var (a, b) = (a, b)
    while b != 0 { (a, b) = (b, a % b) }
    return a
}
