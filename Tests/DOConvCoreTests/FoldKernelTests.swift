import XCTest
import Foundation
@testable import DOConvCore
import DOConvFoldKernels

/// The vectorized fold against the plain einsum loop, over many random layer shapes.
final class FoldKernelTests: XCTestCase {
    func randomLayer(layout: DOConvLayout, cin: Int, cout: Int, groups: Int, m: Int, n: Int, dmul: Int, using random: inout SeededGenerator) throws -> DOConvLayer {
        let g = DOConvGeometry(inChannels: cin, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
        let d: [Float]? = g.kernelArea == 1 ? nil : (0..<g.dCount).map { _ in Float.random(in: -1...1, using: &random) }
        let w = (0..<g.wCount).map { _ in Float.random(in: -1...1, using: &random) }
        return try DOConvLayer(layout: layout, geometry: g, d: d, w: w)
    }

    func assertClose(_ a: [Float], _ b: [Float], tolerance: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let scale = max(b.map(abs).max() ?? 0, 1e-30)
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, tolerance, file: file, line: line)
    }

    func testVectorizedMatchesScalarOverRandomShapes() throws {
        var random = SeededGenerator(seed: 42)
        for trial in 0..<300 {
            let layout: DOConvLayout = trial % 2 == 0 ? .pytorch : .keras
            let groups = [1, 1, 2, 3, 4][Int.random(in: 0..<5, using: &random)]
            // Up to 20 channels per group: whole blocks of eight, partial ones, and none.
            let cin = groups * Int.random(in: 1...20, using: &random)
            let cout = groups * Int.random(in: 1...9, using: &random)
            let m = Int.random(in: 1...5, using: &random)
            let n = Int.random(in: 1...5, using: &random)
            let mn = m * n
            let dmul = mn == 1 ? 1 : mn + Int.random(in: 0...6, using: &random)
            let layer = try randomLayer(layout: layout, cin: cin, cout: cout, groups: groups, m: m, n: n, dmul: dmul, using: &random)
            let slow = ScalarFold.kernel(of: layer)
            for kernels in FoldKernelSet.available {
                let fast = layer.foldedKernel(kernels: kernels)
                XCTAssertEqual(fast.shape, [cout, cin / groups, m, n])
                XCTAssertEqual(fast.shape, slow.shape)
                assertClose(fast.values, slow.values)
            }
        }
    }

    func testDepthwiseAndWideLayersMatchScalar() throws {
        var random = SeededGenerator(seed: 7)
        let cases: [(DOConvLayout, Int, Int, Int, Int, Int, Int)] = [
            (.pytorch, 32, 32, 32, 3, 3, 9), (.keras, 32, 32, 32, 3, 3, 9),      // DO-DConv
            (.pytorch, 16, 64, 16, 3, 3, 9), (.keras, 16, 64, 16, 3, 3, 9),      // channel multiplier 4
            (.pytorch, 24, 40, 1, 7, 7, 49), (.keras, 24, 40, 1, 5, 5, 30),      // large kernels
            (.pytorch, 64, 128, 1, 3, 3, 9), (.keras, 64, 128, 1, 3, 3, 9),      // multi-threaded sizes
            (.pytorch, 256, 256, 1, 3, 3, 9),
        ]
        for (layout, cin, cout, groups, m, n, dmul) in cases {
            let layer = try randomLayer(layout: layout, cin: cin, cout: cout, groups: groups, m: m, n: n, dmul: dmul, using: &random)
            for kernels in FoldKernelSet.available {
                assertClose(layer.foldedKernel(kernels: kernels).values, ScalarFold.kernel(of: layer).values)
            }
        }
    }

    func testThreadCountDoesNotChangeTheResult() throws {
        var random = SeededGenerator(seed: 9)
        // 255 output channels: one thread's slice is odd, so a channel folded in a pair on
        // one thread count is folded alone on the other.
        for layout in [DOConvLayout.pytorch, .keras] {
            for cout in [256, 255] {
                let layer = try randomLayer(layout: layout, cin: 256, cout: cout, groups: 1, m: 3, n: 3, dmul: 9, using: &random)
                for kernels in FoldKernelSet.available {
                    XCTAssertEqual(layer.foldedKernel(maxThreads: 1, kernels: kernels).values,
                                   layer.foldedKernel(maxThreads: 2, kernels: kernels).values, "\(layout) \(cout) \(kernels.name)")
                }
            }
        }
    }

    /// A hand-computed PyTorch DO-DConv with channel multiplier 2: the W reshape pairs
    /// output channel o with D row o % Cin, not with its real input channel o / 2.
    func testPyTorchReshapePairsOutputWithDRowModuloCin() throws {
        let g = DOConvGeometry(inChannels: 2, outChannels: 4, groups: 2, kernelHeight: 1, kernelWidth: 2, depthMultiplier: 2)
        // D[i] = [[a, b], [c, d]] as (MN, Dmul); W[o] = [1, 0] selects column s = 0.
        let d: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]
        let w: [Float] = [1, 0, 1, 0, 1, 0, 1, 0]
        let layer = try DOConvLayer(layout: .pytorch, geometry: g, d: d, w: w)
        // kernel[o, 0, m] = D[o % 2, m, 0].
        XCTAssertEqual(ScalarFold.kernel(of: layer).values, [1, 3, 5, 7, 1, 3, 5, 7])
        XCTAssertEqual(layer.foldedKernel().values, [1, 3, 5, 7, 1, 3, 5, 7])
        XCTAssertEqual(layer.dChannel(output: 3, localInput: 0), 1)
    }

    func testLayerRejectsInconsistentTensors() {
        let g = DOConvGeometry(inChannels: 4, outChannels: 8, groups: 1, kernelHeight: 3, kernelWidth: 3, depthMultiplier: 9)
        XCTAssertThrowsError(try DOConvLayer(layout: .pytorch, geometry: g, d: [Float](repeating: 0, count: 10), w: [Float](repeating: 0, count: g.wCount)))
        XCTAssertThrowsError(try DOConvLayer(layout: .pytorch, geometry: g, d: nil, w: [Float](repeating: 0, count: g.wCount)))
        var bad = g
        bad.groups = 3
        XCTAssertThrowsError(try DOConvLayer(layout: .pytorch, geometry: bad, d: nil, w: []))
    }

    func testKindFollowsGroups() {
        func kind(_ cin: Int, _ groups: Int) -> DOConvKind {
            DOConvGeometry(inChannels: cin, outChannels: cin, groups: groups, kernelHeight: 3, kernelWidth: 3, depthMultiplier: 9).kind
        }
        XCTAssertEqual(kind(8, 1), .doConv)
        XCTAssertEqual(kind(8, 8), .doDConv)
        XCTAssertEqual(kind(8, 4), .doGConv)
    }
}

/// The identity offset against FORMATS.md's definition, in both layouts.
final class IdentityOffsetTests: XCTestCase {
    func testOffsetMatchesTheDefinition() {
        for layout in [DOConvLayout.pytorch, .keras] {
            for (m, n, dmul) in [(3, 3, 9), (3, 3, 20), (1, 3, 5), (2, 2, 4)] {
                let g = DOConvGeometry(inChannels: 3, outChannels: 3, groups: 1, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
                var d = [Float](repeating: 0, count: g.dCount)
                IdentityOffset.add(to: &d, layout: layout, geometry: g)
                let mn = m * n
                for i in 0..<3 {
                    for row in 0..<mn {
                        for s in 0..<dmul {
                            let expected: Float = (s < mn * (dmul / mn) && s % mn == row) ? 1 : 0
                            let index = layout == .pytorch ? (i * mn + row) * dmul + s : (row * dmul + s) * 3 + i
                            XCTAssertEqual(d[index], expected, "\(layout) \(m)x\(n) Dmul \(dmul)")
                        }
                    }
                }
            }
        }
    }
}

/// The run-time choice of kernels against what the kernel reports about the CPU.
final class KernelSelectionTests: XCTestCase {
    func testAVX2KernelsAreChosenExactlyWhenTheCPUHasAVX2AndFMA() throws {
        #if arch(x86_64)
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
        let expected = flags.contains("avx2") && flags.contains("fma") ? "avx2-fma" : "portable"
        XCTAssertEqual(FoldKernelSet.fastest.name, expected)
        #else
        XCTAssertEqual(FoldKernelSet.fastest.name, "portable")
        #endif
    }
}
