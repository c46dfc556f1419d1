import XCTest
@testable import DOConvGraphKernels
import DOConvGraphKernelsAVX2
import DOConvGraphKernelsAVX512
import CCPUSupport

/// The 2-D convolution's shortcuts against the plain product: taps that read only padding
/// left out must give the same bits as every tap multiplied.
final class ConvolutionTests: XCTestCase {
    var random = SystemRandomNumberGenerator()

    struct Shape {
        var channels: (in: Int, out: Int)
        var image: (Int, Int)
        var kernel: (Int, Int)
        var stride: (Int, Int)
        var dilation: (Int, Int)
        var pad: (Int, Int)
        var groups = 1
        var output: (Int, Int) {
            ((image.0 + 2 * pad.0 - dilation.0 * (kernel.0 - 1) - 1) / stride.0 + 1,
             (image.1 + 2 * pad.1 - dilation.1 * (kernel.1 - 1) - 1) / stride.1 + 1)
        }
        func convolution(_ method: Convolution2D.Method) -> Convolution2D {
            var c = Convolution2D(batch: 2, inChannels: channels.in, height: image.0, width: image.1, outChannels: channels.out, groups: groups,
                                  kernel: kernel, stride: stride, dilation: dilation, padBegin: pad, output: output)
            c.method = method
            return c
        }
    }

    func run(_ shape: Shape, _ method: Convolution2D.Method, x: [Double], w: [Double], bias: [Double], threads: Int = 2,
             multiplier chosen: TileMultiplier? = nil) -> [Double] {
        let multiplier = chosen ?? self.multiplier
        let c = shape.convolution(method)
        var out = [Double](repeating: .nan, count: 2 * shape.channels.out * c.output.height * c.output.width)
        x.withUnsafeBufferPointer { x in
            w.withUnsafeBufferPointer { w in
                bias.withUnsafeBufferPointer { bias in
                    out.withUnsafeMutableBufferPointer { out in
                        c.run(multiplier, x: x.baseAddress!, w: w.baseAddress!, bias: bias.baseAddress!, out: out.baseAddress!, threads: threads)
                    }
                }
            }
        }
        return out
    }

    var multiplier: TileMultiplier {
        (doconv_cpu_has_avx512() != 0 ? TileMultiplier.avx512 : nil) ?? (doconv_cpu_has_avx2_fma() != 0 ? TileMultiplier.fused : nil) ?? .portable
    }

    func inputs(_ shape: Shape) -> (x: [Double], w: [Double], bias: [Double]) {
        let x = (0..<(2 * shape.channels.in * shape.image.0 * shape.image.1)).map { _ in Double.random(in: -1...1, using: &random) }
        let w = (0..<(shape.channels.out * shape.channels.in / shape.groups * shape.kernel.0 * shape.kernel.1)).map { _ in
            Double.random(in: -1...1, using: &random)
        }
        let bias = (0..<shape.channels.out).map { _ in Double.random(in: -1...1, using: &random) }
        return (x, w, bias)
    }

    /// Shapes whose taps leave the image by whole rows and columns: ASPP's dilations over a
    /// small image, strides, groups, and padding wider than the kernel (output rows that see
    /// no pixel at all).
    let dropping: [Shape] = [
        Shape(channels: (40, 24), image: (12, 20), kernel: (3, 3), stride: (1, 1), dilation: (12, 12), pad: (12, 12)),
        Shape(channels: (33, 17), image: (9, 16), kernel: (3, 3), stride: (1, 1), dilation: (6, 7), pad: (6, 7)),
        Shape(channels: (16, 20), image: (11, 13), kernel: (3, 5), stride: (2, 1), dilation: (5, 4), pad: (5, 8), groups: 2),
        Shape(channels: (8, 8), image: (4, 6), kernel: (3, 3), stride: (1, 1), dilation: (1, 1), pad: (5, 1)),
    ]

    func testDroppedTapsGiveTheSameBitsAsEveryTap() {
        for shape in dropping {
            XCTAssertTrue(LiveTaps(shape.convolution(.fastest)).isWorthSplitting, "\(shape): the test needs a shape whose dropped taps are worth a split")
            let (x, w, bias) = inputs(shape)
            let every = run(shape, .everyTap, x: x, w: w, bias: bias)
            for threads in [1, 2, 3] {
                XCTAssertEqual(run(shape, .fastest, x: x, w: w, bias: bias, threads: threads), every, "\(shape), \(threads) threads")
            }
            XCTAssertFalse(every.contains { $0.isNaN })
        }
    }

    /// 0 x inf is NaN: a dropped weight that is not finite sends the layer down the full product.
    func testANonFiniteDroppedWeightKeepsItsNaN() {
        let shape = dropping[0]
        var (x, w, bias) = inputs(shape)
        w[0] = .infinity // kernel row 0, column 0 of the first filter: dropped for the top band
        let every = run(shape, .everyTap, x: x, w: w, bias: bias)
        XCTAssertTrue(every.contains { $0.isNaN })
        XCTAssertEqual(run(shape, .fastest, x: x, w: w, bias: bias).map(\.bitPattern), every.map(\.bitPattern))
    }

    /// 3x3 stride-1 shapes Winograd's algorithms take: dilations, padding that is not
    /// symmetric (only the leading one is given), output sizes that leave blocks part empty,
    /// groups, and more blocks than one pass holds.
    let winograd: [Shape] = [
        Shape(channels: (32, 24), image: (13, 17), kernel: (3, 3), stride: (1, 1), dilation: (1, 1), pad: (1, 1)),
        Shape(channels: (20, 33), image: (16, 15), kernel: (3, 3), stride: (1, 1), dilation: (2, 3), pad: (2, 1)),
        Shape(channels: (64, 32), image: (19, 21), kernel: (3, 3), stride: (1, 1), dilation: (1, 1), pad: (0, 0), groups: 2),
        Shape(channels: (16, 16), image: (70, 90), kernel: (3, 3), stride: (1, 1), dilation: (4, 4), pad: (4, 4)),
    ]

    /// F(2x2, 3x3) and F(4x4, 3x3) alike, each forced on every shape, against every tap
    /// multiplied directly.
    func testWinogradAgreesWithTheDirectProductToFloat64Rounding() {
        for shape in winograd {
            let convolution = shape.convolution(.fastest)
            XCTAssertNotNil(WinogradConvolution.plan(for: convolution), "\(shape): the test needs a shape Winograd takes")
            XCTAssertFalse(LiveTaps(convolution).isWorthSplitting, "\(shape)")
            let (x, w, bias) = inputs(shape)
            let direct = run(shape, .everyTap, x: x, w: w, bias: bias)
            for outputs in [2, 4] {
                let algorithm = WinogradConvolution(convolution, outputs: outputs)
                func winograd(threads: Int) -> [Double] {
                    var out = [Double](repeating: .nan, count: direct.count)
                    x.withUnsafeBufferPointer { x in
                        w.withUnsafeBufferPointer { w in
                            bias.withUnsafeBufferPointer { bias in
                                out.withUnsafeMutableBufferPointer { out in
                                    algorithm.run(multiplier, x: x.baseAddress!, w: w.baseAddress!, bias: bias.baseAddress!, out: out.baseAddress!,
                                                  threads: threads)
                                }
                            }
                        }
                    }
                    return out
                }
                let fast = winograd(threads: 1)
                // Sums of up to 576 products of values in [-1, 1], rounded a few more times.
                let worst = zip(fast, direct).map { abs($0 - $1) }.max() ?? .nan
                XCTAssertLessThan(worst, outputs == 2 ? 1e-13 : 1e-12, "\(shape), F(\(outputs)x\(outputs))")
                XCTAssertFalse(fast.contains { $0.isNaN }, "\(shape), F(\(outputs)x\(outputs)): an output left unwritten")
                for threads in [2, 3] {
                    XCTAssertEqual(winograd(threads: threads), fast, "\(shape), F(\(outputs)x\(outputs)), \(threads) threads")
                }
            }
            XCTAssertEqual(run(shape, .fastest, x: x, w: w, bias: bias).count, direct.count)
        }
    }

    /// F(4x4, 3x3) while its transformed weights fit the budget, then F(2x2, 3x3), then none;
    /// none where the blocks are too few to pay for the weights' transform (a 7x7 image) or
    /// mostly empty (a dilation close to the image's size).
    func testWinogradPlanKeepsItsWeightsWithinTheBudgetAndPaysForItsTransforms() {
        func plan(_ channels: Int, image: Int = 32, dilation: Int = 1) -> Int? {
            let shape = Shape(channels: (channels, channels), image: (image, image), kernel: (3, 3), stride: (1, 1), dilation: (dilation, dilation),
                              pad: (dilation, dilation))
            return WinogradConvolution.plan(for: shape.convolution(.fastest))?.outputs
        }
        XCTAssertEqual(plan(512), 4) // 75 MB
        XCTAssertEqual(plan(600), 2) // 104 MB as F(4x4), 46 MB as F(2x2)
        XCTAssertNil(plan(1000)) // 128 MB even as F(2x2)
        XCTAssertEqual(plan(64, image: 32, dilation: 4), 4)
        XCTAssertEqual(plan(64, image: 14), 2)
        XCTAssertNil(plan(512, image: 7))
        XCTAssertNil(plan(64, image: 12, dilation: 10))
    }

    /// The AVX2 and AVX-512 GEMMs give the same bits, and the Winograd transforms and the
    /// bands run in the portable module: whole convolutions agree bit for bit across builds.
    func testEveryShortcutGivesTheSameBitsOnAVX2AndAVX512() throws {
        guard doconv_cpu_has_avx512() != 0, let avx512 = TileMultiplier.avx512, let avx2 = TileMultiplier.fused else {
            throw XCTSkip("this CPU has no AVX-512")
        }
        for shape in winograd + dropping {
            let (x, w, bias) = inputs(shape)
            XCTAssertEqual(run(shape, .fastest, x: x, w: w, bias: bias, multiplier: avx2), run(shape, .fastest, x: x, w: w, bias: bias, multiplier: avx512),
                           "\(shape)")
        }
    }

    /// inf - inf is NaN: an image or weight that is not finite takes the direct product.
    func testWinogradLeavesNonFiniteValuesToTheDirectProduct() {
        let shape = winograd[0]
        for spoilWeight in [false, true] {
            var (x, w, bias) = inputs(shape)
            if spoilWeight { w[4] = .infinity } else { x[100] = -.infinity }
            let direct = run(shape, .everyTap, x: x, w: w, bias: bias)
            XCTAssertTrue(direct.contains { $0.isInfinite })
            XCTAssertEqual(run(shape, .fastest, x: x, w: w, bias: bias).map(\.bitPattern), direct.map(\.bitPattern))
        }
    }
}
