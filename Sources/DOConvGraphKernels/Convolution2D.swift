import Dispatch

/// A 2-D convolution in float64 (NCHW input, OIHW kernel, zero padding, groups, strides,
/// dilations), computed as one GEMM per image and group over an im2col matrix, or for
/// depthwise kernels (one input channel per group) directly.
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
        // The im2col matrix is built a band of output positions at a time, so it stays small
        // (at most about 16 MB) however large the feature map.
        let band = isPlainPointwise ? n : max(MatrixMultiply.tileColumns, min(n, (1 << 21) / max(k, 1) / 8 * 8))
        let columns: UnsafeMutablePointer<Double>? = isPlainPointwise ? nil : .allocate(capacity: k * band)
        defer { columns?.deallocate() }
        for b in 0..<batch {
            for g in 0..<groups {
                let image = x + (b * inChannels + g * inPerGroup) * height * width
                let target = out + (b * outChannels + g * outPerGroup) * n
                var first = 0
                while first < n {
                    let count = min(band, n - first)
                    let matrix: UnsafePointer<Double>
                    if let columns {
                        im2col(image, into: columns, positions: first..<(first + count), threads: threads)
                        matrix = UnsafePointer(columns)
                    } else {
                        matrix = image
                    }
                    MatrixMultiply.multiply(multiplier, m: outPerGroup, n: count, k: k, a: w + g * outPerGroup * k, lda: k, b: matrix,
                                            ldb: columns == nil ? n : count, c: target + first, ldc: n, rowBias: bias.map { $0 + g * outPerGroup },
                                            threads: threads)
                    first += count
                }
            }
        }
    }

    /// Row (c, i, j) of the matrix holds input channel c at tap (i, j) for the output
    /// positions `positions` (flat, row-major); zero where the tap reads padding.
    func im2col(_ image: UnsafePointer<Double>, into columns: UnsafeMutablePointer<Double>, positions: Range<Int>, threads: Int) {
        let rows = inPerGroup * taps, n = positions.count
        let work = rows * n
        let workers = max(1, min(threads, work / 200_000 + 1))
        let body: (Int) -> Void = { worker in
            var row = worker
            while row < rows {
                let (c, tap) = row.quotientAndRemainder(dividingBy: taps)
                let (i, j) = tap.quotientAndRemainder(dividingBy: kernel.width)
                let plane = image + c * height * width
                let target = columns + row * n
                // Output columns [lowest, highest) read inside the row; the rest read padding.
                let xBase = j * dilation.width - padBegin.width
                let lowest = xBase >= 0 ? 0 : (-xBase + stride.width - 1) / stride.width
                let highest = width - xBase <= 0 ? 0 : min(output.width, (width - xBase + stride.width - 1) / stride.width)
                var p = positions.lowerBound
                while p < positions.upperBound {
                    let (oy, ox0) = p.quotientAndRemainder(dividingBy: output.width)
                    let end = min(positions.upperBound, p - ox0 + output.width)
                    let y = oy * stride.height + i * dilation.height - padBegin.height
                    let line = target + (p - positions.lowerBound) - ox0 // indexed by output column
                    if y < 0 || y >= height || lowest >= highest {
                        for ox in ox0..<(ox0 + end - p) { line[ox] = 0 }
                    } else {
                        let last = ox0 + end - p
                        let (from, to) = (min(max(ox0, lowest), last), min(max(ox0, highest), last))
                        for ox in ox0..<from { line[ox] = 0 }
                        let source = plane + y * width + xBase
                        if stride.width == 1 {
                            for ox in from..<to { line[ox] = source[ox] }
                        } else {
                            for ox in from..<to { line[ox] = source[ox * stride.width] }
                        }
                        for ox in max(to, ox0)..<last { line[ox] = 0 }
                    }
                    p = end
                }
                row += workers
            }
        }
        // Each worker takes every workers-th row or tile: their writes never meet.
        nonisolated(unsafe) let perform = body
        if workers == 1 { perform(0) } else { DispatchQueue.concurrentPerform(iterations: workers) { perform($0) } }
    }

    /// Each output channel from its group's single input channel, tap by tap over whole rows.
    func depthwise(x: UnsafePointer<Double>, w: UnsafePointer<Double>, bias: UnsafePointer<Double>?, out: UnsafeMutablePointer<Double>, threads: Int) {
        let planes = batch * outChannels
        let workers = max(1, min(threads, planes * positions * taps / 200_000 + 1))
        let body: (Int) -> Void = { worker in
            var plane = worker
            while plane < planes {
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
                plane += workers
            }
        }
        // Each worker takes every workers-th row or tile: their writes never meet.
        nonisolated(unsafe) let perform = body
        if workers == 1 { perform(0) } else { DispatchQueue.concurrentPerform(iterations: workers) { perform($0) } }
    }
}
