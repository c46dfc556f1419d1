/// A 3x3, stride-1 convolution (any dilation, groups, padding) by Winograd's minimal
/// filtering (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
/// each m x m block of outputs from an (m + 2) x (m + 2) block of the image, its products per
/// channel pair (m + 2)^2 rather than 9 m^2: one GEMM over the channels for each element of
/// the transformed block; the transforms around them are sums (WinogradTiles).
///
/// With dilation d a block's outputs are d apart and its input block d apart: the same
/// algebra over a sub-grid of the image.
///
/// F(4x4, 3x3) where its transformed weights fit in 96 MB, else F(2x2, 3x3) where its do:
/// 4 and 2.25 times fewer multiplies than the direct product. Error, in float64: F(2x2)'s coefficients are 0,
/// +-1 and +-1/2 (exact in binary), and its rounding stays below 1e-15 of the sums' size;
/// F(4x4)'s reach 8 and 1/24, about 1e-14. verify's tolerance is 1e-5 for float32 models and
/// 1e-10 for float64 ones. The results are not the direct product's bits, but they are the
/// same bits for every thread count and for the AVX2 and AVX-512 GEMMs (the transforms run
/// in this module).
struct WinogradConvolution {
    let convolution: Convolution2D
    /// m: outputs per block side.
    let outputs: Int
    /// Where each block of outputs starts along each axis (m outputs `dilation` apart).
    let rowOrigins: [Int]
    let columnOrigins: [Int]

    init(_ convolution: Convolution2D, outputs: Int) {
        self.convolution = convolution
        self.outputs = outputs
        rowOrigins = Self.origins(count: convolution.output.height, dilation: convolution.dilation.height, outputs: outputs)
        columnOrigins = Self.origins(count: convolution.output.width, dilation: convolution.dilation.width, outputs: outputs)
    }

    /// Block starts along an axis of `count` outputs: in each residue class modulo `dilation`,
    /// every m-th output.
    static func origins(count: Int, dilation: Int, outputs: Int) -> [Int] {
        var origins: [Int] = []
        for phase in 0..<min(dilation, count) {
            var origin = phase
            while origin < count {
                origins.append(origin)
                origin += outputs * dilation
            }
        }
        return origins
    }

    var blocks: Int { rowOrigins.count * columnOrigins.count }

    /// Doubles of transformed weights a layer may hold.
    static let transformedWeightsBudget = 12 << 20

    /// The algorithm for `c`, if one pays: a 3x3 stride-1 kernel, channels enough for the
    /// GEMMs (16 each way), and fewer multiply-adds per channel pair than the direct product's
    /// 9 per output, counting the weights' transform as 32 per element (its time, measured
    /// against the GEMM's). A small image does not pay it back: ResNet-50's 7x7 layers took
    /// longer by F(4x4, 3x3) than directly. Nor do blocks that a dilation close to the image's
    /// size leaves mostly empty.
    static func plan(for c: Convolution2D) -> WinogradConvolution? {
        guard c.kernel == (3, 3), c.stride == (1, 1), c.inPerGroup >= 16, c.outPerGroup >= 16 else { return nil }
        var best: (cost: Int, plan: WinogradConvolution?) = (9 * c.positions, nil)
        // The transformed weights, (m + 2)^2 per channel pair, are held for the whole layer:
        // at most 96 MB (DeepLabv3's 512-channel layers take 75 MB with F(4x4, 3x3)).
        for outputs in [4, 2] where c.inPerGroup * c.outPerGroup * (outputs + 2) * (outputs + 2) <= transformedWeightsBudget {
            let plan = WinogradConvolution(c, outputs: outputs)
            let elements = (outputs + 2) * (outputs + 2)
            let cost = elements * plan.blocks + 32 * elements
            if cost < best.cost { best = (cost, plan) }
        }
        return best.plan
    }

    func run(_ multiplier: TileMultiplier, x: UnsafePointer<Double>, w: UnsafePointer<Double>, bias: UnsafePointer<Double>?,
             out: UnsafeMutablePointer<Double>, threads: Int) {
        if outputs == 4 {
            run(WinogradF4.self, multiplier, x: x, w: w, bias: bias, out: out, threads: threads)
        } else {
            run(WinogradF2.self, multiplier, x: x, w: w, bias: bias, out: out, threads: threads)
        }
    }

    func run<Tile: WinogradTile>(_ tile: Tile.Type, _ multiplier: TileMultiplier, x: UnsafePointer<Double>, w: UnsafePointer<Double>,
                                 bias: UnsafePointer<Double>?, out: UnsafeMutablePointer<Double>, threads: Int) {
        let c = convolution
        let (cin, cout) = (c.inPerGroup, c.outPerGroup)
        let elements = (outputs + 2) * (outputs + 2)
        // Blocks per pass: the transformed inputs and products (elements x channels x blocks
        // each) stay within 16 MB apiece.
        let chunk = min(blocks, max(64, (1 << 21) / (elements * max(cin, cout))) / 8 * 8)
        let transformed = UnsafeMutablePointer<Double>.allocate(capacity: elements * cout * cin)
        let inputs = UnsafeMutablePointer<Double>.allocate(capacity: elements * cin * chunk)
        let products = UnsafeMutablePointer<Double>.allocate(capacity: elements * cout * chunk)
        defer {
            transformed.deallocate()
            inputs.deallocate()
            products.deallocate()
        }
        for g in 0..<c.groups {
            transformWeights(tile, w + g * cout * cin * 9, into: transformed, threads: threads)
            for b in 0..<c.batch {
                let image = x + (b * c.inChannels + g * cin) * c.height * c.width
                let target = out + (b * c.outChannels + g * cout) * c.positions
                var first = 0
                while first < blocks {
                    let count = min(chunk, blocks - first)
                    let places = places(first..<(first + count))
                    transformInput(tile, image, places: places, into: inputs, threads: threads)
                    multiplyChannels(multiplier, elements: elements, weights: transformed, inputs: inputs, count: count, into: products,
                                     threads: threads)
                    transformOutput(tile, products, places: places, bias: bias.map { $0 + g * cout }, into: target, threads: threads)
                    first += count
                }
            }
        }
    }

    /// G g G^T for every (out, in) pair of the group's weights [out][in][3][3], into
    /// [element][out][in].
    func transformWeights<Tile: WinogradTile>(_ tile: Tile.Type, _ w: UnsafePointer<Double>, into u: UnsafeMutablePointer<Double>,
                                              threads: Int) {
        let (cin, cout) = (convolution.inPerGroup, convolution.outPerGroup)
        let plane = cout * cin
        let elements = (outputs + 2) * (outputs + 2)
        Self.perform(cout, threads: threads, work: cout * cin * 100) { o in
            // Eight pairs at a time into a buffer, then a cache line to each element's plane
            // (36 planes written a value at a time left each line to be fetched again).
            withUnsafeTemporaryAllocation(of: Double.self, capacity: elements * 8) { buffer in
                let staged = buffer.baseAddress!
                var i0 = 0
                while i0 < cin {
                    let run = min(8, cin - i0)
                    for i in 0..<run { Tile.transformWeights(w + (o * cin + i0 + i) * 9, at: staged + i, plane: 8) }
                    for e in 0..<elements { Self.copy(run, from: staged + e * 8, to: u + e * plane + o * cin + i0) }
                    i0 += run
                }
            }
        }
    }

    /// Where a block reads and writes: its first input (row `y`, column `x`, which may lie in
    /// the padding) and first output, and whether its whole input block lies inside the image.
    struct Place {
        var y: Int, x: Int
        var inside: Bool
        var outputRow: Int, outputColumn: Int
    }

    func places(_ blocks: Range<Int>) -> [Place] {
        let c = convolution
        let (columns, span) = (columnOrigins.count, outputs + 1)
        return blocks.map { block in
            let (row, column) = block.quotientAndRemainder(dividingBy: columns)
            let (oy, ox) = (rowOrigins[row], columnOrigins[column])
            let (y, x) = (oy - c.padBegin.height, ox - c.padBegin.width)
            let inside = y >= 0 && y + span * c.dilation.height < c.height && x >= 0 && x + span * c.dilation.width < c.width
            return Place(y: y, x: x, inside: inside, outputRow: oy, outputColumn: ox)
        }
    }

    /// B^T d B for every input channel and block of `places`, into [element][in][count];
    /// image values outside the image (padding) read 0.
    func transformInput<Tile: WinogradTile>(_ tile: Tile.Type, _ image: UnsafePointer<Double>, places: [Place],
                                            into v: UnsafeMutablePointer<Double>, threads: Int) {
        let c = convolution
        let (cin, count, side) = (c.inPerGroup, places.count, outputs + 2)
        let (plane, elements) = (cin * count, side * side)
        let (dy, dx) = (c.dilation.height * c.width, c.dilation.width)
        Self.perform(cin, threads: threads, work: cin * count * 100) { channel in
            let source = image + channel * c.height * c.width
            // Row i of a block: `side` values dx apart, or checked one by one.
            func line(_ place: Place, _ i: Int) -> SIMD8<Double> {
                var values = SIMD8<Double>()
                guard i < side else { return values }
                if place.inside {
                    let first = source + (place.y * c.width + place.x) + i * dy
                    for j in 0..<side { values[j] = first[j * dx] }
                    return values
                }
                let y = place.y + i * c.dilation.height
                guard y >= 0, y < c.height else { return values }
                for j in 0..<side {
                    let x = place.x + j * c.dilation.width
                    if x >= 0 && x < c.width { values[j] = source[y * c.width + x] }
                }
                return values
            }
            // Eight blocks at a time into a buffer, then a cache line to each element's plane.
            withUnsafeTemporaryAllocation(of: Double.self, capacity: elements * 8) { buffer in
                let staged = buffer.baseAddress!
                var slot0 = 0
                while slot0 < count {
                    let run = min(8, count - slot0)
                    for k in 0..<run {
                        let place = places[slot0 + k]
                        let rows = (line(place, 0), line(place, 1), line(place, 2), line(place, 3), line(place, 4), line(place, 5))
                        Tile.transformInput(rows, at: staged + k, plane: 8)
                    }
                    for e in 0..<elements { Self.copy(run, from: staged + e * 8, to: v + e * plane + channel * count + slot0) }
                    slot0 += run
                }
            }
        }
    }

    /// The product of each element's transformed weights (out x in) and transformed inputs
    /// (in x count), a GEMM each, spread over the cores whole (each on one thread: the same
    /// bits for any thread count).
    func multiplyChannels(_ multiplier: TileMultiplier, elements: Int, weights u: UnsafeMutablePointer<Double>,
                          inputs v: UnsafeMutablePointer<Double>, count: Int, into m: UnsafeMutablePointer<Double>, threads: Int) {
        let (cin, cout) = (convolution.inPerGroup, convolution.outPerGroup)
        Self.perform(elements, threads: threads, work: Int.max) { e in
            MatrixMultiply.multiply(multiplier, m: cout, n: count, k: cin, a: u + e * cout * cin, lda: cin, b: v + e * cin * count, ldb: count,
                                    c: m + e * cout * count, ldc: count, threads: 1)
        }
    }

    /// A^T M A for every output channel and block, plus the bias, into the outputs the block
    /// holds (a block past the output's edge holds fewer than m x m).
    func transformOutput<Tile: WinogradTile>(_ tile: Tile.Type, _ m: UnsafeMutablePointer<Double>, places: [Place],
                                             bias: UnsafePointer<Double>?, into target: UnsafeMutablePointer<Double>, threads: Int) {
        let c = convolution
        let (cout, count, size) = (c.outPerGroup, places.count, outputs)
        let (plane, elements) = (cout * count, (outputs + 2) * (outputs + 2))
        Self.perform(cout, threads: threads, work: cout * count * 100) { o in
            let output = target + o * c.positions
            let initial = bias?[o] ?? 0
            // Eight blocks' products at a time, a cache line from each element's plane.
            withUnsafeTemporaryAllocation(of: Double.self, capacity: elements * 8) { buffer in
              let staged = buffer.baseAddress!
              var slot0 = 0
              while slot0 < count {
                let run = min(8, count - slot0)
                for e in 0..<elements { Self.copy(run, from: m + e * plane + o * count + slot0, to: staged + e * 8) }
                for k in 0..<run {
                let rows = Tile.transformOutput(staged + k, plane: 8)
                let place = places[slot0 + k]
                for i in 0..<size {
                    let y = place.outputRow + i * c.dilation.height
                    guard y < c.output.height else { break }
                    let values = i == 0 ? rows.0 : i == 1 ? rows.1 : i == 2 ? rows.2 : rows.3
                    let line = output + y * c.output.width
                    for j in 0..<size {
                        let x = place.outputColumn + j * c.dilation.width
                        guard x < c.output.width else { break }
                        line[x] = values[j] + initial
                    }
                }
                }
                slot0 += run
              }
            }
        }
    }

    /// `count` (at most 8) values: one vector move when there are 8 (a call to memmove per
    /// run of 8 cost more than the transforms).
    @inline(__always)
    static func copy(_ count: Int, from source: UnsafePointer<Double>, to target: UnsafeMutablePointer<Double>) {
        if count == 8 {
            UnsafeMutableRawPointer(target).storeBytes(of: UnsafeRawPointer(source).loadUnaligned(as: SIMD8<Double>.self), as: SIMD8<Double>.self)
        } else {
            for k in 0..<count { target[k] = source[k] }
        }
    }

    /// Whether every one of `count` values is finite: the transforms' sums would turn an
    /// infinity into NaN (inf - inf) where the direct product keeps it.
    static func allFinite(_ values: UnsafePointer<Double>, count: Int) -> Bool {
        var zeros = SIMD8<Double>()
        let raw = UnsafeRawPointer(values)
        var i = 0
        while i + 8 <= count {
            zeros += raw.loadUnaligned(fromByteOffset: i * 8, as: SIMD8<Double>.self) * 0 // NaN from inf or NaN, else 0
            i += 8
        }
        var rest = zeros.sum()
        while i < count {
            rest += values[i] * 0
            i += 1
        }
        return rest == 0
    }

    /// `body(i)` for i in 0..<items, on up to `threads` cores when `work` (rough operations)
    /// is worth it.
    static func perform(_ items: Int, threads: Int, work: Int, _ body: (Int) -> Void) {
        ParallelLoop.run(items, workers: ParallelLoop.workers(threads: threads, items: items, work: work), body)
    }
}
