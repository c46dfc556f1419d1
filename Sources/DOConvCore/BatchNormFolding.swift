/// Folds an inference-mode BatchNormalization into the convolution before it:
/// with k = gamma / sqrt(var + epsilon), K'[o] = K[o] * k[o] and b'[o] = (b[o] - mean[o]) * k[o] + beta[o].
/// The parameters are kept in float64, as read (float32 values widen exactly); the kernel and
/// bias are folded in the arithmetic of their own type's caller: float64 models in float64.
public struct BatchNormFolding: Sendable {
    public var gamma: [Double]
    public var beta: [Double]
    public var mean: [Double]
    public var variance: [Double]
    public var epsilon: Double

    public init<T: BinaryFloatingPoint>(gamma: [T], beta: [T], mean: [T], variance: [T], epsilon: Double) throws(TensorError) {
        let n = gamma.count
        guard beta.count == n, mean.count == n, variance.count == n else {
            throw .inconsistentLayer("BatchNormalization parameters have \(gamma.count), \(beta.count), \(mean.count) and \(variance.count) channels")
        }
        self.gamma = gamma.map(Double.init)
        self.beta = beta.map(Double.init)
        self.mean = mean.map(Double.init)
        self.variance = variance.map(Double.init)
        self.epsilon = epsilon
    }

    /// Channel scales k = gamma / sqrt(var + epsilon), in float64.
    private var scales: [Double] {
        (0..<gamma.count).map { gamma[$0] / (variance[$0] + epsilon).squareRoot() }
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
    /// channel, along `outputAxis`) and optional `bias`; the kernel keeps its layout. Each
    /// value is computed in float64 and rounded once to `T`.
    public func fold<T: BinaryFloatingPoint>(kernel: [T], bias: [T]?, outputAxis: OutputChannelAxis = .first) throws(TensorError) -> (kernel: [T], bias: [T]) {
        let channels = gamma.count
        guard channels > 0, kernel.count % channels == 0, (bias?.count ?? channels) == channels else {
            throw .inconsistentLayer("a conv with \(kernel.count) kernel values cannot take a \(channels)-channel BatchNormalization")
        }
        let row = kernel.count / channels
        let k = scales
        var fusedKernel = kernel
        var fusedBias = [T](repeating: 0, count: channels)
        for o in 0..<channels {
            for j in 0..<row {
                let at = Self.offset(o, j, row: row, channels: channels, axis: outputAxis)
                fusedKernel[at] = T(Double(kernel[at]) * k[o])
            }
            fusedBias[o] = T((Double(bias?[o] ?? 0) - mean[o]) * k[o] + beta[o])
        }
        return (fusedKernel, fusedBias)
    }

    /// Worst relative difference between BN(conv(patch)) and the fused conv on random
    /// patches (each output channel sees `row` inputs), computed in float64. Both kernels
    /// are laid out along `outputAxis`.
    public func probe<T: BinaryFloatingPoint>(kernel: [T], bias: [T]?, fused: (kernel: [T], bias: [T]), outputAxis: OutputChannelAxis = .first,
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
                let reference = (conv - mean[o]) / (variance[o] + epsilon).squareRoot() * gamma[o] + beta[o]
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
