/// A 2-D convolution in float64 (NCHW input, OIHW kernel, zero padding, groups, strides,
/// dilations), computed as one GEMM per image and group over its im2col matrix (packed from
/// the image as the GEMM goes, never built), or for depthwise kernels (one input channel per
/// group) directly.
public struct Convolution2D: Sendable {
    public var batch: Int
    public var inChannels: Int
    public var height: Int
    public var width: Int
    public var outChannels: Int
    public var groups: Int
    public var kernel: (height: Int, width: Int)
    public var stride: (height: Int, width: Int)
    public var dilation: (height: Int, width: Int)
    /// Padding before the first row and column (the padding after only sets the output size).
    public var padBegin: (height: Int, width: Int)
    public var output: (height: Int, width: Int)
    /// How `run` computes the product (tests compare the methods).
    public var method: Method = .fastest

    public enum Method: Sendable {
        /// Taps that read only padding left out (the same bits: see LiveTaps), and 3x3
        /// stride-1 kernels by Winograd's algorithms (not the same bits: see
        /// WinogradConvolution) when their weights and image are finite.
        case fastest
        /// Every tap multiplied, as the im2col matrix has it.
        case everyTap
    }

    public init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int, groups: Int, kernel: (Int, Int), stride: (Int, Int),
                dilation: (Int, Int), padBegin: (Int, Int), output: (Int, Int)) {
        self.batch = batch
        self.inChannels = inChannels
        self.height = height
        self.width = width
        self.outChannels = outChannels
        self.groups = groups
        self.kernel = kernel
        self.stride = stride
        self.dilation = dilation
        self.padBegin = padBegin
        self.output = output
    }

    var inPerGroup: Int { inChannels / groups }
    var outPerGroup: Int { outChannels / groups }
    var taps: Int { kernel.height * kernel.width }
    var positions: Int { output.height * output.width }
    /// A 1x1 kernel that reads every pixel once, in order: the input is its own im2col matrix.
    var isPlainPointwise: Bool {
        kernel == (1, 1) && stride == (1, 1) && padBegin == (0, 0) && output == (height, width)
    }

    /// out[N, Cout, oh, ow] = conv(x[N, Cin, H, W], w[Cout, Cin/g, kh, kw]) + bias.
    public func run(_ multiplier: TileMultiplier, x: UnsafePointer<Double>, w: UnsafePointer<Double>, bias: UnsafePointer<Double>?,
                    out: UnsafeMutablePointer<Double>, threads: Int) {
        if inPerGroup == 1 && outPerGroup <= 4 {
            depthwise(x: x, w: w, bias: bias, out: out, threads: threads)
            return
        }
        let k = inPerGroup * taps, n = positions
        let live = method == .fastest && !isPlainPointwise ? LiveTaps(self) : nil
        if method == .fastest, live?.isWorthSplitting == false, let winograd = WinogradConvolution.plan(for: self),
           WinogradConvolution.allFinite(w, count: outChannels * k), WinogradConvolution.allFinite(x, count: batch * inChannels * height * width) {
            winograd.run(multiplier, x: x, w: w, bias: bias, out: out, threads: threads)
            return
        }
        for b in 0..<batch {
            for g in 0..<groups {
                let image = x + (b * inChannels + g * inPerGroup) * height * width
                let target = out + (b * outChannels + g * outPerGroup) * n
                let weights = w + g * outPerGroup * k
                let bias = bias.map { $0 + g * outPerGroup }
                if isPlainPointwise {
                    // A 1x1 kernel that reads every pixel once, in order: the input is its own im2col matrix.
                    MatrixMultiply.multiply(multiplier, m: outPerGroup, n: n, k: k, a: weights, lda: k, b: image, ldb: n, c: target, ldc: n,
                                            rowBias: bias, threads: threads)
                    continue
                }
                if let live, live.isWorthSplitting,
                   runBands(live, multiplier, image: image, weights: weights, bias: bias, target: target, threads: threads) {
                    continue
                }
                // The GEMM packs B's panels from the image itself (see Im2ColView).
                let view = Im2ColView(image: image, height: height, width: width, kernel: self.kernel, stride: stride, dilation: dilation,
                                      padBegin: padBegin, outputWidth: output.width)
                MatrixMultiply.multiply(multiplier, m: outPerGroup, n: n, k: k, a: weights, lda: k, im2col: view, c: target, ldc: n,
                                        rowBias: bias, threads: threads)
            }
        }
    }

    /// One image and group as a GEMM per band of output rows over the taps that read inside
    /// the image (see LiveTaps); false, with nothing written, if a dropped weight is not finite.
    func runBands(_ live: LiveTaps, _ multiplier: TileMultiplier, image: UnsafePointer<Double>, weights: UnsafePointer<Double>,
                  bias: UnsafePointer<Double>?, target: UnsafeMutablePointer<Double>, threads: Int) -> Bool {
        var packed: [Range<Int>: [Double]] = [:]
        for band in live.bands where !band.kernelRows.isEmpty && !live.kernelColumns.isEmpty && packed[band.kernelRows] == nil {
            guard let matrix = live.weights(weights, outChannels: outPerGroup, inChannels: inPerGroup, kernel: kernel,
                                            kernelRows: band.kernelRows) else { return false }
            packed[band.kernelRows] = matrix
        }
        let n = positions
        for band in live.bands {
            let first = band.outputRows.lowerBound * output.width, count = band.outputRows.count * output.width
            guard let matrix = packed[band.kernelRows] else {
                // No tap reads the image: the outputs are the bias.
                for o in 0..<outPerGroup { (target + o * n + first).update(repeating: bias?[o] ?? 0, count: count) }
                continue
            }
            // The band's rows and taps as a convolution of their own: its first output row and
            // first tap move into the padding.
            let view = Im2ColView(image: image, height: height, width: width,
                                  kernel: (band.kernelRows.count, live.kernelColumns.count), stride: stride, dilation: dilation,
                                  padBegin: (padBegin.height - band.outputRows.lowerBound * stride.height - band.kernelRows.lowerBound * dilation.height,
                                             padBegin.width - live.kernelColumns.lowerBound * dilation.width),
                                  outputWidth: output.width)
            let k = inPerGroup * band.kernelRows.count * live.kernelColumns.count
            matrix.withUnsafeBufferPointer { a in
                MatrixMultiply.multiply(multiplier, m: outPerGroup, n: count, k: k, a: a.baseAddress!, lda: k, im2col: view, c: target + first,
                                        ldc: n, rowBias: bias, threads: threads)
            }
        }
        return true
    }

    /// Each output channel from its group's single input channel, tap by tap over whole rows.
    func depthwise(x: UnsafePointer<Double>, w: UnsafePointer<Double>, bias: UnsafePointer<Double>?, out: UnsafeMutablePointer<Double>, threads: Int) {
        let planes = batch * outChannels
        let workers = ParallelLoop.workers(threads: threads, items: planes, work: planes * positions * taps)
        // Each plane is its own output channel of one image: the planes' writes never meet.
        ParallelLoop.run(planes, workers: workers) { plane in
            let (b, o) = plane.quotientAndRemainder(dividingBy: outChannels)
            let c = o / outPerGroup
            let source = x + (b * inChannels + c) * height * width
            let target = out + plane * positions
            let initial = bias?[o] ?? 0
            for p in 0..<positions { target[p] = initial }
            for i in 0..<kernel.height {
                for j in 0..<kernel.width {
                    let weight = w[(o * kernel.height + i) * kernel.width + j]
                    for oy in 0..<output.height {
                        let y = oy * stride.height + i * dilation.height - padBegin.height
                        guard y >= 0, y < height else { continue }
                        let line = target + oy * output.width
                        let row = source + y * width
                        for ox in 0..<output.width {
                            let x = ox * stride.width + j * dilation.width - padBegin.width
                            if x >= 0 && x < width { line[ox] += weight * row[x] }
                        }
                    }
                }
            }
        }
    }
}
