/// A 3x3, stride-1 convolution (any dilation, groups, padding) by Winograd's minimal
/// filtering (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
/// each m x m block of outputs from an (m + 2) x (m + 2) block of the image, its products per
/// channel pair (m + 2)^2 rather than 9 m^2: one GEMM over the channels for each element of
/// the transformed block; the transforms around them are sums (WinogradTiles).
///
/// With dilation d a block's outputs are d apart and its input block d apart: the same
/// algebra over a sub-grid of the image.
///
/// F(4x4, 3x3) or F(2x2, 3x3), 4 and 2.25 times fewer multiplies than the direct product,
/// whichever costs less counted work with its transformed weights within 96 MB, or neither
/// (`plan`). Error, in float64: F(2x2)'s coefficients are 0, +-1 and +-1/2 (exact in
/// binary), and its rounding stays below 1e-15 of the sums' size; F(4x4)'s reach 8 and 1/24,
/// about 1e-14. verify's tolerance is 1e-5 for float32 models and 1e-10 for float64 ones.
/// The results are not the direct product's bits, but they are the same bits for every
/// thread count and for the AVX2 and AVX-512 GEMMs (the transforms run in this module).
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
        for outputs in [WinogradF4.outputs, WinogradF2.outputs] where c.inPerGroup * c.outPerGroup * (outputs + 2) * (outputs + 2) <= transformedWeightsBudget {
            let plan = WinogradConvolution(c, outputs: outputs)
            let elements = (outputs + 2) * (outputs + 2)
            let cost = elements * plan.blocks + 32 * elements
            if cost < best.cost { best = (cost, plan) }
        }
        return best.plan
    }

    func run(_ multiplier: TileMultiplier, x: UnsafePointer<Double>, w: UnsafePointer<Double>, bias: UnsafePointer<Double>?,
             out: UnsafeMutablePointer<Double>, threads: Int) {
        if outputs == WinogradF4.outputs {
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
    /// [element][out][in]: eight pairs at a time, one in each lane, so that each element
    /// goes to its plane eight values at once.
    func transformWeights<Tile: WinogradTile>(_ tile: Tile.Type, _ w: UnsafePointer<Double>, into u: UnsafeMutablePointer<Double>,
                                              threads: Int) {
        let (cin, cout) = (convolution.inPerGroup, convolution.outPerGroup)
        let (plane, side) = (cout * cin, outputs + 2)
        Self.perform(cout, threads: threads, work: cout * cin * 100) { o in
            withUnsafeTemporaryAllocation(of: WinogradLanes.self, capacity: 9 + 4 * side * side) { buffer in
                let (g, t) = (buffer.baseAddress!, buffer.baseAddress! + 9)
                let transformed = t + 3 * side
                var i0 = 0
                while i0 < cin {
                    let run = min(8, cin - i0)
                    for k in 0..<9 {
                        g[k] = WinogradLanes()
                        for lane in 0..<run { Self.set(g + k, lane, w[(o * cin + i0 + lane) * 9 + k]) }
                    }
                    // G g down each column of the kernel, then (G g) G^T along each row.
                    for c in 0..<3 { Tile.g(g + c, 3, t + c, 3) }
                    for r in 0..<side { Tile.g(t + 3 * r, 1, transformed + side * r, 1) }
                    for e in 0..<(side * side) { Self.store(transformed[e], run, to: u + e * plane + o * cin + i0) }
                    i0 += run
                }
            }
        }
    }

    /// Lane `lane` of the vector at `vector`.
    @inline(__always)
    static func set(_ vector: UnsafeMutablePointer<WinogradLanes>, _ lane: Int, _ value: Double) {
        UnsafeMutableRawPointer(vector).storeBytes(of: value, toByteOffset: lane * MemoryLayout<Double>.stride, as: Double.self)
    }

    /// The first `count` (at most 8) lanes of `lanes` to `target`.
    @inline(__always)
    static func store(_ lanes: WinogradLanes, _ count: Int, to target: UnsafeMutablePointer<Double>) {
        if count == 8 {
            UnsafeMutableRawPointer(target).storeBytes(of: lanes, as: WinogradLanes.self)
        } else {
            for k in 0..<count { target[k] = lanes[k] }
        }
    }

    /// `count` (at most 8) values from `source` into lanes, the rest zero.
    @inline(__always)
    static func load(_ count: Int, from source: UnsafePointer<Double>) -> WinogradLanes {
        if count == 8 { return UnsafeRawPointer(source).loadUnaligned(as: WinogradLanes.self) }
        var lanes = WinogradLanes()
        for k in 0..<count { lanes[k] = source[k] }
        return lanes
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

    /// B^T d B for every input channel and block of `places`, into [element][in][count]
    /// (image values outside the image, in the padding, read 0): eight blocks at a time, one
    /// in each lane.
    func transformInput<Tile: WinogradTile>(_ tile: Tile.Type, _ image: UnsafePointer<Double>, places: [Place],
                                            into v: UnsafeMutablePointer<Double>, threads: Int) {
        let c = convolution
        let (cin, count, side) = (c.inPerGroup, places.count, outputs + 2)
        let (plane, elements) = (cin * count, side * side)
        let (dy, dx) = (c.dilation.height * c.width, c.dilation.width)
        Self.perform(cin, threads: threads, work: cin * count * 100) { channel in
            let source = image + channel * c.height * c.width
            withUnsafeTemporaryAllocation(of: WinogradLanes.self, capacity: 3 * elements) { buffer in
                let (d, t) = (buffer.baseAddress!, buffer.baseAddress! + elements)
                let transformed = t + elements
                var slot0 = 0
                while slot0 < count {
                    let run = min(8, count - slot0)
                    for e in 0..<elements { d[e] = WinogradLanes() }
                    for lane in 0..<run {
                        let place = places[slot0 + lane]
                        if place.inside {
                            let first = source + (place.y * c.width + place.x)
                            for i in 0..<side {
                                for j in 0..<side { Self.set(d + i * side + j, lane, first[i * dy + j * dx]) }
                            }
                            continue
                        }
                        for i in 0..<side {
                            let y = place.y + i * c.dilation.height
                            guard y >= 0, y < c.height else { continue }
                            for j in 0..<side {
                                let x = place.x + j * c.dilation.width
                                if x >= 0 && x < c.width { Self.set(d + i * side + j, lane, source[y * c.width + x]) }
                            }
                        }
                    }
                    // B^T d down each column, then (B^T d) B along each row.
                    for j in 0..<side { Tile.bt(d + j, side, t + j, side) }
                    for r in 0..<side { Tile.bt(t + side * r, 1, transformed + side * r, 1) }
                    for e in 0..<elements { Self.store(transformed[e], run, to: v + e * plane + channel * count + slot0) }
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
    /// holds (a block past the output's edge holds fewer than m x m): eight blocks at a time,
    /// one in each lane.
    func transformOutput<Tile: WinogradTile>(_ tile: Tile.Type, _ m: UnsafeMutablePointer<Double>, places: [Place],
                                             bias: UnsafePointer<Double>?, into target: UnsafeMutablePointer<Double>, threads: Int) {
        let c = convolution
        let (cout, count, size, side) = (c.outPerGroup, places.count, outputs, outputs + 2)
        let (plane, elements) = (cout * count, side * side)
        Self.perform(cout, threads: threads, work: cout * count * 100) { o in
            let output = target + o * c.positions
            let initial = bias?[o] ?? 0
            withUnsafeTemporaryAllocation(of: WinogradLanes.self, capacity: elements + size * side + size * size) { buffer in
                let (products, t) = (buffer.baseAddress!, buffer.baseAddress! + elements)
                let y = t + size * side
                var slot0 = 0
                while slot0 < count {
                    let run = min(8, count - slot0)
                    for e in 0..<elements { products[e] = Self.load(run, from: m + e * plane + o * count + slot0) }
                    // A^T M down each column, then (A^T M) A along each row.
                    for j in 0..<side { Tile.at(products + j, side, t + j, side) }
                    for r in 0..<size { Tile.at(t + side * r, 1, y + size * r, 1) }
                    for lane in 0..<run {
                        let place = places[slot0 + lane]
                        for i in 0..<size {
                            let row = place.outputRow + i * c.dilation.height
                            guard row < c.output.height else { break }
                            let line = output + row * c.output.width
                            for j in 0..<size {
                                let column = place.outputColumn + j * c.dilation.width
                                guard column < c.output.width else { break }
                                line[column] = y[i * size + j][lane] + initial
                            }
                        }
                    }
                    slot0 += run
                }
            }
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
