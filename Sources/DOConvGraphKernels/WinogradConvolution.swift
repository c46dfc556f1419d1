import Dispatch

/// A 3x3, stride-1 convolution (any dilation, groups, padding) as Winograd's minimal
/// filtering F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
/// Networks", 2016): each 2x2 block of outputs from a 4x4 block of the image, in 16
/// multiplies per channel pair where the direct product takes 36. The 16 products of every
/// block are 16 GEMMs over the channels; the transforms around them are additions.
///
/// With dilation d a block's outputs are d apart and its 4x4 input block d apart: the same
/// algebra over a sub-grid of the image.
///
/// Error, in float64: the transforms' coefficients are 0, +-1 and +-1/2 (exact in binary);
/// each weight passes through 4 additions and a halving, each input value through 4
/// additions, each output through 4. That adds a few units in float64's last place to each
/// sum, below 1e-15 relative, against verify's tolerance of 1e-5 for float32 models. Its
/// results are not the direct product's bits, but they are the same bits for every thread
/// count and for the AVX2 and AVX-512 GEMMs (the transforms run in this module).
struct WinogradConvolution {
    let convolution: Convolution2D
    /// Where each block of outputs starts along each axis (two outputs `dilation` apart).
    let rowOrigins: [Int]
    let columnOrigins: [Int]

    init(_ convolution: Convolution2D) {
        self.convolution = convolution
        rowOrigins = Self.origins(count: convolution.output.height, dilation: convolution.dilation.height)
        columnOrigins = Self.origins(count: convolution.output.width, dilation: convolution.dilation.width)
    }

    /// Block starts along an axis of `count` outputs: in each residue class modulo `dilation`,
    /// every other output.
    static func origins(count: Int, dilation: Int) -> [Int] {
        var origins: [Int] = []
        for phase in 0..<min(dilation, count) {
            var origin = phase
            while origin < count {
                origins.append(origin)
                origin += 2 * dilation
            }
        }
        return origins
    }

    var blocks: Int { rowOrigins.count * columnOrigins.count }

    /// Whether it pays: a 3x3 stride-1 kernel, channels enough for the GEMMs (16 each way),
    /// and blocks that hold, on average, at least 2.4 of their 4 outputs (a dilation close to
    /// the image's size leaves most blocks half empty).
    static func applies(to c: Convolution2D) -> Bool {
        guard c.kernel == (3, 3), c.stride == (1, 1), c.inPerGroup >= 16, c.outPerGroup >= 16, c.positions >= 16 else { return false }
        let w = WinogradConvolution(c)
        return c.positions * 10 >= w.blocks * 4 * 6
    }

    func run(_ multiplier: TileMultiplier, x: UnsafePointer<Double>, w: UnsafePointer<Double>, bias: UnsafePointer<Double>?,
             out: UnsafeMutablePointer<Double>, threads: Int) {
        let c = convolution
        let (cin, cout) = (c.inPerGroup, c.outPerGroup)
        // Blocks per pass: the transformed inputs and products (16 x channels x blocks each)
        // stay within 16 MB apiece.
        let chunk = min(blocks, max(64, (1 << 21) / (16 * max(cin, cout))) / 8 * 8)
        let transformed = UnsafeMutablePointer<Double>.allocate(capacity: 16 * cout * cin)
        let inputs = UnsafeMutablePointer<Double>.allocate(capacity: 16 * cin * chunk)
        let products = UnsafeMutablePointer<Double>.allocate(capacity: 16 * cout * chunk)
        defer {
            transformed.deallocate()
            inputs.deallocate()
            products.deallocate()
        }
        for g in 0..<c.groups {
            transformWeights(w + g * cout * cin * 9, into: transformed, threads: threads)
            for b in 0..<c.batch {
                let image = x + (b * c.inChannels + g * cin) * c.height * c.width
                let target = out + (b * c.outChannels + g * cout) * c.positions
                var first = 0
                while first < blocks {
                    let count = min(chunk, blocks - first)
                    let places = places(first..<(first + count))
                    transformInput(image, places: places, into: inputs, threads: threads)
                    multiplyChannels(multiplier, weights: transformed, inputs: inputs, count: count, into: products, threads: threads)
                    transformOutput(products, places: places, bias: bias.map { $0 + g * cout }, into: target, threads: threads)
                    first += count
                }
            }
        }
    }

    /// U = G g G^T for every (out, in) pair of the group's weights [out][in][3][3], into
    /// [16][out][in].
    func transformWeights(_ w: UnsafePointer<Double>, into u: UnsafeMutablePointer<Double>, threads: Int) {
        let (cin, cout) = (convolution.inPerGroup, convolution.outPerGroup)
        let plane = cout * cin
        Self.perform(cout, threads: threads, work: cout * cin * 64) { o in
            for i in 0..<cin {
                let g = w + (o * cin + i) * 9
                // G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2 (3 values each).
                let (g0, g1, g2) = (SIMD4(g[0], g[1], g[2], 0), SIMD4(g[3], g[4], g[5], 0), SIMD4(g[6], g[7], g[8], 0))
                let at = u + o * cin + i
                Self.storeWeightRow(g0, at: at, plane: plane)
                Self.storeWeightRow((g0 + g1 + g2) * 0.5, at: at + 4 * plane, plane: plane)
                Self.storeWeightRow((g0 - g1 + g2) * 0.5, at: at + 8 * plane, plane: plane)
                Self.storeWeightRow(g2, at: at + 12 * plane, plane: plane)
            }
        }
    }

    /// A row t of G g times G^T: t0, (t0 + t1 + t2) / 2, (t0 - t1 + t2) / 2, t2, a plane apart.
    @inline(__always)
    static func storeWeightRow(_ t: SIMD4<Double>, at: UnsafeMutablePointer<Double>, plane: Int) {
        at[0] = t[0]
        at[plane] = (t[0] + t[1] + t[2]) * 0.5
        at[2 * plane] = (t[0] - t[1] + t[2]) * 0.5
        at[3 * plane] = t[2]
    }

    /// Where a block reads and writes: its first input (row `y`, column `x`, which may lie in
    /// the padding) and first output, and whether all 16 inputs lie inside the image.
    struct Place {
        var y: Int, x: Int
        var inside: Bool
        var outputRow: Int, outputColumn: Int
    }

    func places(_ blocks: Range<Int>) -> [Place] {
        let c = convolution
        let columns = columnOrigins.count
        return blocks.map { block in
            let (row, column) = block.quotientAndRemainder(dividingBy: columns)
            let (oy, ox) = (rowOrigins[row], columnOrigins[column])
            let (y, x) = (oy - c.padBegin.height, ox - c.padBegin.width)
            let inside = y >= 0 && y + 3 * c.dilation.height < c.height && x >= 0 && x + 3 * c.dilation.width < c.width
            return Place(y: y, x: x, inside: inside, outputRow: oy, outputColumn: ox)
        }
    }

    /// V = B^T d B for every input channel and block of `places`, into [16][in][count]; image
    /// values outside the image (padding) read 0.
    func transformInput(_ image: UnsafePointer<Double>, places: [Place], into v: UnsafeMutablePointer<Double>, threads: Int) {
        let c = convolution
        let (cin, count) = (c.inPerGroup, places.count)
        let plane = cin * count
        let (dy, dx) = (c.dilation.height * c.width, c.dilation.width)
        Self.perform(cin, threads: threads, work: cin * count * 64) { channel in
            let source = image + channel * c.height * c.width
            // Row i of a block: 4 values dx apart from `first`, or checked one by one.
            func line(_ place: Place, _ i: Int) -> SIMD4<Double> {
                if place.inside {
                    let first = source + (place.y * c.width + place.x) + i * dy
                    return SIMD4(first[0], first[dx], first[2 * dx], first[3 * dx])
                }
                let y = place.y + i * c.dilation.height
                guard y >= 0, y < c.height else { return SIMD4() }
                var values = SIMD4<Double>()
                for j in 0..<4 {
                    let x = place.x + j * c.dilation.width
                    if x >= 0 && x < c.width { values[j] = source[y * c.width + x] }
                }
                return values
            }
            for slot in 0..<count {
                let place = places[slot]
                let (d0, d1, d2, d3) = (line(place, 0), line(place, 1), line(place, 2), line(place, 3))
                // B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3.
                let at = v + channel * count + slot
                Self.storeInputRow(d0 - d2, at: at, plane: plane)
                Self.storeInputRow(d1 + d2, at: at + 4 * plane, plane: plane)
                Self.storeInputRow(d2 - d1, at: at + 8 * plane, plane: plane)
                Self.storeInputRow(d1 - d3, at: at + 12 * plane, plane: plane)
            }
        }
    }

    /// A row t of B^T d times B: t0 - t2, t1 + t2, t2 - t1, t1 - t3, a plane apart.
    @inline(__always)
    static func storeInputRow(_ t: SIMD4<Double>, at: UnsafeMutablePointer<Double>, plane: Int) {
        at[0] = t[0] - t[2]
        at[plane] = t[1] + t[2]
        at[2 * plane] = t[2] - t[1]
        at[3 * plane] = t[1] - t[3]
    }

    /// M[e] = U[e] (out x in) times V[e] (in x count) for each of the 16 elements e, a GEMM
    /// each, spread over the cores whole (each on one thread: the same bits for any count).
    func multiplyChannels(_ multiplier: TileMultiplier, weights u: UnsafeMutablePointer<Double>, inputs v: UnsafeMutablePointer<Double>,
                          count: Int, into m: UnsafeMutablePointer<Double>, threads: Int) {
        let (cin, cout) = (convolution.inPerGroup, convolution.outPerGroup)
        Self.perform(16, threads: threads, work: Int.max) { e in
            MatrixMultiply.multiply(multiplier, m: cout, n: count, k: cin, a: u + e * cout * cin, lda: cin, b: v + e * cin * count, ldb: count,
                                    c: m + e * cout * count, ldc: count, threads: 1)
        }
    }

    /// Y = A^T M A for every output channel and block, plus the bias, into the outputs the
    /// block holds (a block past the output's edge holds fewer than 4).
    func transformOutput(_ m: UnsafeMutablePointer<Double>, places: [Place], bias: UnsafePointer<Double>?,
                         into target: UnsafeMutablePointer<Double>, threads: Int) {
        let c = convolution
        let (cout, count) = (c.outPerGroup, places.count)
        let plane = cout * count
        Self.perform(cout, threads: threads, work: cout * count * 64) { o in
            let output = target + o * c.positions
            let initial = bias?[o] ?? 0
            for slot in 0..<count {
                let at = m + o * count + slot
                func row(_ r: Int) -> SIMD4<Double> {
                    SIMD4(at[4 * r * plane], at[(4 * r + 1) * plane], at[(4 * r + 2) * plane], at[(4 * r + 3) * plane])
                }
                let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3))
                // A^T M: rows m0 + m1 + m2 and m1 - m2 - m3; then each times A: columns
                // t0 + t1 + t2 and t1 - t2 - t3.
                let (t0, t1) = (m0 + m1 + m2, m1 - m2 - m3)
                let place = places[slot]
                let (oy, ox) = (place.outputRow, place.outputColumn)
                let right = ox + c.dilation.width < c.output.width
                var line = output + oy * c.output.width + ox
                line[0] = t0[0] + t0[1] + t0[2] + initial
                if right { line[c.dilation.width] = t0[1] - t0[2] - t0[3] + initial }
                guard oy + c.dilation.height < c.output.height else { continue }
                line += c.dilation.height * c.output.width
                line[0] = t1[0] + t1[1] + t1[2] + initial
                if right { line[c.dilation.width] = t1[1] - t1[2] - t1[3] + initial }
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
    /// is worth it; each worker takes every workers-th item, so their writes never meet.
    static func perform(_ items: Int, threads: Int, work: Int, _ body: (Int) -> Void) {
        let workers = max(1, min(threads, items, work / 200_000 + 1))
        if workers == 1 {
            for i in 0..<items { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let run = body
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                var i = worker
                while i < items {
                    run(i)
                    i += workers
                }
            }
        }
    }
}
