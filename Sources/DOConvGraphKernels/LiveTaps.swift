/// The kernel taps of a convolution that read inside the image, by band of output rows.
///
/// A dilated convolution over a small image has taps that read only padding: DeepLabv3's
/// ASPP runs dilations 12, 24 and 36 over 32 x 64 features, where at dilation 36 the top and
/// bottom rows of taps never reach the image and for most outputs the side columns do not
/// either. Those products are zeros. Leaving them out of the GEMM keeps each sum's other
/// terms in the same order, and adding an exact zero changes no sum, so the result is the
/// same bits, in a third of the multiplies at dilation 36.
///
/// A kernel row is dropped for a band of consecutive output rows that all see it only in
/// padding, and a kernel column for every output when none sees it in the image: the GEMM's
/// outputs stay whole runs of rows.
struct LiveTaps: Equatable {
    /// Output rows `outputRows` read the image through kernel rows `kernelRows` only.
    struct Band: Equatable {
        var outputRows: Range<Int>
        var kernelRows: Range<Int>
    }

    var bands: [Band]
    /// The kernel columns that read inside the image for some output.
    var kernelColumns: Range<Int>
    /// Multiply-adds the bands keep, out of `outputRows x kernel taps` per output column.
    var keptTaps: Int
    var allTaps: Int

    /// The taps a 1-D window keeps for output `index`: those that land in 0..<size.
    static func live(index: Int, stride: Int, dilation: Int, padBegin: Int, size: Int, kernel: Int) -> Range<Int> {
        let base = index * stride - padBegin
        let low = base >= 0 ? 0 : min(kernel, (-base + dilation - 1) / dilation)
        let high = size - base <= 0 ? 0 : min(kernel, (size - base + dilation - 1) / dilation)
        return low..<max(low, high)
    }

    init(_ convolution: Convolution2D) {
        let c = convolution
        var columnLow = c.kernel.width, columnHigh = 0
        for ox in 0..<c.output.width {
            let live = Self.live(index: ox, stride: c.stride.width, dilation: c.dilation.width, padBegin: c.padBegin.width, size: c.width,
                                 kernel: c.kernel.width)
            if !live.isEmpty { (columnLow, columnHigh) = (min(columnLow, live.lowerBound), max(columnHigh, live.upperBound)) }
        }
        kernelColumns = columnLow < columnHigh ? columnLow..<columnHigh : 0..<0
        bands = []
        for oy in 0..<c.output.height {
            let live = Self.live(index: oy, stride: c.stride.height, dilation: c.dilation.height, padBegin: c.padBegin.height, size: c.height,
                                 kernel: c.kernel.height)
            if let last = bands.last, last.kernelRows == live {
                bands[bands.count - 1].outputRows = last.outputRows.lowerBound..<(oy + 1)
            } else {
                bands.append(Band(outputRows: oy..<(oy + 1), kernelRows: live))
            }
        }
        keptTaps = bands.reduce(0) { $0 + $1.outputRows.count * $1.kernelRows.count } * kernelColumns.count
        allTaps = c.output.height * c.kernel.height * c.kernel.width
    }

    /// Worth a GEMM per band (each repacks its weights and gives the cores a smaller product)
    /// when it saves at least an eighth of the work: a 3x3 kernel with padding 1 over a large
    /// image saves a sliver at the edges.
    var isWorthSplitting: Bool { keptTaps * 8 <= allTaps * 7 }

    /// The weights of one group for `kernelRows` x `kernelColumns`, [out][in][rows][columns],
    /// or nil if a dropped weight is not finite (its zero product would be NaN: the full
    /// product must then run, to give the same result).
    func weights(_ w: UnsafePointer<Double>, outChannels: Int, inChannels: Int, kernel: (height: Int, width: Int),
                 kernelRows: Range<Int>) -> [Double]? {
        let taps = kernel.height * kernel.width
        var kept: [Int] = [], dropped: [Int] = []
        for i in 0..<kernel.height {
            for j in 0..<kernel.width {
                if kernelRows.contains(i) && kernelColumns.contains(j) { kept.append(i * kernel.width + j) } else { dropped.append(i * kernel.width + j) }
            }
        }
        var zeros = 0.0 // NaN once a dropped weight is infinite or NaN
        let packed = [Double](unsafeUninitializedCapacity: outChannels * inChannels * kept.count) { buffer, count in
            var next = 0
            for block in 0..<(outChannels * inChannels) {
                let source = w + block * taps
                for tap in kept {
                    buffer[next] = source[tap]
                    next += 1
                }
                for tap in dropped { zeros += source[tap] * 0 }
            }
            count = next
        }
        let finite = zeros == 0
        return finite ? packed : nil
    }
}
