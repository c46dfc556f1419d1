/// Folds an inference-mode BatchNormalization into the convolution before it:
/// with k = gamma / sqrt(var + epsilon), K'[o] = K[o] * k[o] and b'[o] = (b[o] - mean[o]) * k[o] + beta[o].
public struct BatchNormFolding: Sendable {
    public var gamma: [Float]
    public var beta: [Float]
    public var mean: [Float]
    public var variance: [Float]
    public var epsilon: Float

    public init(gamma: [Float], beta: [Float], mean: [Float], variance: [Float], epsilon: Float) throws(TensorError) {
        let n = gamma.count
        guard beta.count == n, mean.count == n, variance.count == n else {
            throw .inconsistentLayer("BatchNormalization parameters have \(gamma.count), \(beta.count), \(mean.count) and \(variance.count) channels")
        }
        self.gamma = gamma
        self.beta = beta
        self.mean = mean
        self.variance = variance
        self.epsilon = epsilon
    }

    /// Channel scales k = gamma / sqrt(var + epsilon), in float64.
    private var scales: [Double] {
        (0..<gamma.count).map { Double(gamma[$0]) / (Double(variance[$0]) + Double(epsilon)).squareRoot() }
    }

    /// Where a conv kernel keeps its output channel, the axis the BatchNormalization scales.
    public enum OutputChannelAxis: Sendable {
        /// Outermost, as ONNX and PyTorch store kernels (Cout, Cin/g, M, N): each output
        /// channel's weights are one contiguous row.
        case first
        /// Innermost, as Keras stores kernels (M, N, Cin/g, Cout): output channel o's
        /// weights are o, o + Cout, o + 2 Cout, ...
        case last
    }

    /// The position of weight `j` of output channel `o` in a kernel of `channels` output
    /// channels and `row` weights each.
    private static func offset(_ o: Int, _ j: Int, row: Int, channels: Int, axis: OutputChannelAxis) -> Int {
        axis == .first ? o * row + j : j * channels + o
    }

    /// The fused kernel and bias of a conv with `kernel` (one output channel per BatchNorm
    /// channel, along `outputAxis`) and optional `bias`; the kernel keeps its layout.
    public func fold(kernel: [Float], bias: [Float]?, outputAxis: OutputChannelAxis = .first) throws(TensorError) -> (kernel: [Float], bias: [Float]) {
        let channels = gamma.count
        guard channels > 0, kernel.count % channels == 0, (bias?.count ?? channels) == channels else {
            throw .inconsistentLayer("a conv with \(kernel.count) kernel values cannot take a \(channels)-channel BatchNormalization")
        }
        let row = kernel.count / channels
        let k = scales
        var fusedKernel = kernel
        var fusedBias = [Float](repeating: 0, count: channels)
        for o in 0..<channels {
            for j in 0..<row {
                let at = Self.offset(o, j, row: row, channels: channels, axis: outputAxis)
                fusedKernel[at] = Float(Double(kernel[at]) * k[o])
            }
            fusedBias[o] = Float((Double(bias?[o] ?? 0) - Double(mean[o])) * k[o] + Double(beta[o]))
        }
        return (fusedKernel, fusedBias)
    }

    /// Worst relative difference between BN(conv(patch)) and the fused conv on random
    /// patches (each output channel sees `row` inputs), computed in float64. Both kernels
    /// are laid out along `outputAxis`.
    public func probe(kernel: [Float], bias: [Float]?, fused: (kernel: [Float], bias: [Float]), outputAxis: OutputChannelAxis = .first,
                      patches: Int = 2, seed: UInt64 = 0x5EED) -> Double {
        let channels = gamma.count
        let row = kernel.count / max(channels, 1)
        var random = SeededGenerator(seed: seed)
        var worst = 0.0
        for _ in 0..<max(1, patches) {
            let patch = (0..<row).map { _ in Double.random(in: -1..<1, using: &random) }
            var scale = 0.0
            var diff = 0.0
            for o in 0..<channels {
                var conv = Double(bias?[o] ?? 0)
                var folded = Double(fused.bias[o])
                for j in 0..<row {
                    let at = Self.offset(o, j, row: row, channels: channels, axis: outputAxis)
                    conv += Double(kernel[at]) * patch[j]
                    folded += Double(fused.kernel[at]) * patch[j]
                }
                let reference = (conv - Double(mean[o])) / (Double(variance[o]) + Double(epsilon)).squareRoot() * Double(gamma[o]) + Double(beta[o])
                let delta = abs(reference - folded)
                if delta.isNaN { return .nan }
                scale = max(scale, abs(reference))
                diff = max(diff, delta)
            }
            worst = max(worst, scale > 0 ? diff / scale : diff)
        }
        return worst
    }
}
