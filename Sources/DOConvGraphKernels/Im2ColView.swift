/// The im2col matrix of one image and group, never built: a GEMM whose B is this view packs
/// its panels straight from the image (an implicit GEMM). Row (c, i, j) of the matrix is
/// input channel c at tap (i, j), column p output position p (row-major); padding reads 0.
///
/// Building the matrix wrote, for DeepLabv3's dilated 3x3 layers, 16 MB per band of output
/// positions that the GEMM then read back to pack: the image itself (8 MB for a whole layer)
/// is read here instead, each value once per tap.
public struct Im2ColView: @unchecked Sendable {
    // @unchecked: the image is only read, for the product's duration.
    let image: UnsafePointer<Double>
    let height: Int, width: Int
    let kernelWidth: Int, taps: Int
    let stride: (height: Int, width: Int)
    let dilation: (height: Int, width: Int)
    let padBegin: (height: Int, width: Int)
    let outputWidth: Int

    /// `image`: the group's first input channel, planes of height x width.
    public init(image: UnsafePointer<Double>, height: Int, width: Int, kernel: (height: Int, width: Int), stride: (height: Int, width: Int),
                dilation: (height: Int, width: Int), padBegin: (height: Int, width: Int), outputWidth: Int) {
        self.image = image
        self.height = height
        self.width = width
        self.kernelWidth = kernel.width
        self.taps = kernel.height * kernel.width
        self.stride = stride
        self.dilation = dilation
        self.padBegin = padBegin
        self.outputWidth = outputWidth
    }

    /// Rows `k0..<(k0 + depth)` and columns `columns` of the matrix into panels
    /// [panel][p][panelColumns], zero beyond the last column (as the GEMM's `packB`), a block
    /// of `blockRows` rows at a time, panel by panel, so that each panel takes whole cache
    /// lines at once. What a row reads (its channel, tap and the columns inside the image) is
    /// worked out once per block, where a panel starts once per panel.
    public func pack(k0: Int, depth: Int, columns: Range<Int>, panelColumns: Int, blockRows: Int, into packed: UnsafeMutablePointer<Double>) {
        let panels = (columns.count + panelColumns - 1) / panelColumns
        withUnsafeTemporaryAllocation(of: Tap.self, capacity: max(1, blockRows)) { taps in
            var p0 = 0
            while p0 < depth {
                let rows = min(blockRows, depth - p0)
                for r in 0..<rows { taps[r] = tap(row: k0 + p0 + r) }
                for panel in 0..<panels {
                    let first = columns.lowerBound + panel * panelColumns
                    let count = min(panelColumns, columns.upperBound - first)
                    let start = first.quotientAndRemainder(dividingBy: outputWidth)
                    for r in 0..<rows {
                        let out = packed + (panel * depth + p0 + r) * panelColumns
                        fill(taps[r], from: start, count: count, into: out)
                        for q in count..<panelColumns { out[q] = 0 }
                    }
                }
                p0 += rows
            }
        }
    }

    /// What one row of the matrix reads: its channel's plane, the offsets of its tap, and the
    /// output columns [lowest, highest) that read inside the image's rows (the rest read
    /// padding).
    struct Tap {
        var plane: UnsafePointer<Double>
        var yOffset: Int
        var xBase: Int
        var lowest: Int
        var highest: Int
    }

    @inline(__always)
    func tap(row: Int) -> Tap {
        let (c, tap) = row.quotientAndRemainder(dividingBy: taps)
        let (i, j) = tap.quotientAndRemainder(dividingBy: kernelWidth)
        let xBase = j * dilation.width - padBegin.width
        let lowest = xBase >= 0 ? 0 : (-xBase + stride.width - 1) / stride.width
        let highest = width - xBase <= 0 ? 0 : min(outputWidth, (width - xBase + stride.width - 1) / stride.width)
        return Tap(plane: image + c * height * width, yOffset: i * dilation.height - padBegin.height, xBase: xBase, lowest: lowest, highest: highest)
    }

    /// `count` values of a row from output position `start` (row, column) into `out`.
    @inline(__always)
    func fill(_ tap: Tap, from start: (quotient: Int, remainder: Int), count: Int, into out: UnsafeMutablePointer<Double>) {
        var q = 0
        var (oy, ox) = start
        while q < count {
            let run = min(count - q, outputWidth - ox)
            let y = oy * stride.height + tap.yOffset
            let line = out + q - ox // indexed by output column
            let end = ox + run
            if y < 0 || y >= height || tap.lowest >= tap.highest {
                for x in ox..<end { line[x] = 0 }
            } else {
                let (from, to) = (min(max(ox, tap.lowest), end), min(max(ox, tap.highest), end))
                for x in ox..<from { line[x] = 0 }
                let source = tap.plane + y * width + tap.xBase
                if stride.width == 1 {
                    Self.copy(to - from, from: source + from, to: line + from)
                } else {
                    for x in from..<to { line[x] = source[x * stride.width] }
                }
                for x in max(to, ox)..<end { line[x] = 0 }
            }
            q += run
            oy += 1
            ox = 0
        }
    }

    /// `count` values, four at a time: runs are a panel wide at most (16 values), too short
    /// for a call to memmove (3.5% of DeepLabv3's verification).
    @inline(__always)
    static func copy(_ count: Int, from source: UnsafePointer<Double>, to target: UnsafeMutablePointer<Double>) {
        var k = 0
        while k + 4 <= count {
            UnsafeMutableRawPointer(target + k).storeBytes(of: UnsafeRawPointer(source + k).loadUnaligned(as: SIMD4<Double>.self), as: SIMD4<Double>.self)
            k += 4
        }
        while k < count {
            target[k] = source[k]
            k += 1
        }
    }
}
