import XCTest
@testable import DOConvCore

/// The zero-copy and fast paths against the plain ones: borrowed bytes, folding into
/// caller memory, both PyTorch kernel paths, and the probe's canonical route.
final class FastPathTests: XCTestCase {
    func values(_ count: Int, _ random: inout SeededGenerator) -> [Float] {
        (0..<count).map { _ in Float.random(in: -1...1, using: &random) }
    }

    func testBorrowedUnalignedBytesReadLikeTheArray() throws {
        var random = SeededGenerator(seed: 11)
        let floats = values(37, &random)
        var bytes = [UInt8](repeating: 0, count: 1 + 4 * floats.count)
        for (k, v) in floats.enumerated() { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.replaceSubrange((1 + 4 * k)..<(5 + 4 * k), with: $0) } }
        let owner = TestOwner()
        try bytes.withUnsafeBytes { raw in
            let borrowed = try FloatValues(borrowing: UnsafeRawBufferPointer(rebasing: raw[1...]), count: floats.count, owner: owner)
            XCTAssertEqual(Array(borrowed), floats)
            XCTAssertThrowsError(try FloatValues(borrowing: UnsafeRawBufferPointer(rebasing: raw[1...]), count: floats.count + 1, owner: owner))
        }
    }

    func testFoldIntoMemoryEqualsFoldedKernelAndBorrowedEqualsOwned() throws {
        var random = SeededGenerator(seed: 12)
        for layout in [DOConvLayout.pytorch, .keras] {
            for (cin, cout, groups, m, n, dmul) in [(8, 12, 1, 3, 3, 9), (5, 8, 1, 3, 3, 11), (12, 12, 12, 5, 5, 25), (6, 9, 3, 1, 2, 3)] {
                let g = DOConvGeometry(inChannels: cin, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
                let (d, w) = (values(g.dCount, &random), values(g.wCount, &random))
                let owned = try DOConvLayer(layout: layout, geometry: g, d: d, w: w)
                let expected = owned.foldedKernel().values
                var out = [Float](repeating: .nan, count: g.kernelCount)
                out.withUnsafeMutableBufferPointer { owned.fold(into: $0) }
                XCTAssertEqual(out, expected)
                // The same layer over unaligned little-endian bytes.
                let dBytes = [UInt8](repeating: 0, count: 3) + d.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
                let wBytes = [UInt8](repeating: 0, count: 1) + w.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
                let owner = TestOwner()
                try dBytes.withUnsafeBytes { dRaw in
                    try wBytes.withUnsafeBytes { wRaw in
                        let borrowed = try DOConvLayer(
                            layout: layout, geometry: g,
                            d: FloatValues(borrowing: UnsafeRawBufferPointer(rebasing: dRaw[3...]), count: d.count, owner: owner),
                            w: FloatValues(borrowing: UnsafeRawBufferPointer(rebasing: wRaw[1...]), count: w.count, owner: owner))
                        XCTAssertEqual(borrowed.foldedKernel().values, expected)
                    }
                }
            }
        }
    }

    /// Quads of rows, tail rows (Cin not a multiple of 4) and the dot-product path, for the
    /// MN values the grouping of m treats differently.
    func testPyTorchPathsMatchScalarFold() throws {
        var random = SeededGenerator(seed: 13)
        let cases: [(Int, Int, Int, Int, Int, Int)] = [
            (4, 4, 1, 1, 1, 1), (6, 8, 1, 2, 2, 4), (7, 9, 1, 1, 5, 5), (9, 16, 1, 3, 3, 9), (13, 5, 1, 3, 3, 12),
            (8, 8, 1, 5, 5, 25), (3, 12, 1, 7, 7, 49), (10, 10, 10, 3, 3, 9), (10, 40, 10, 3, 3, 9), (12, 24, 2, 2, 3, 7),
        ]
        for (cin, cout, groups, m, n, dmul) in cases {
            let g = DOConvGeometry(inChannels: cin, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
            let layer = try DOConvLayer(layout: .pytorch, geometry: g, d: values(g.dCount, &random), w: values(g.wCount, &random))
            let fast = layer.foldedKernel().values
            let slow = ScalarFold.kernel(of: layer).values
            let scale = max(slow.map(abs).max() ?? 0, 1e-30)
            XCTAssertLessThanOrEqual(zip(fast, slow).map { abs($0 - $1) }.max() ?? 0, 1e-5 * scale, "\(g)")
        }
    }

    func testCanonicalProbeRoutesMatchTheGeneralRoutes() throws {
        var random = SeededGenerator(seed: 14)
        for layout in [DOConvLayout.pytorch, .keras] {
            for (cin, cout, groups, m, dmul) in [(6, 10, 1, 3, 9), (8, 8, 8, 3, 11), (5, 7, 1, 1, 1), (16, 16, 16, 5, 25)] {
                let g = DOConvGeometry(inChannels: cin, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: m, depthMultiplier: dmul)
                let d = m == 1 ? nil : values(g.dCount, &random)
                let layer = try DOConvLayer(layout: layout, geometry: g, d: d, w: values(g.wCount, &random))
                XCTAssertTrue(LayerProbe.isCanonical(layer))
                let kernel = layer.foldedKernel().values
                let patches = ProbePatches(geometry: g, count: 3, seed: 5)
                let (fast, slow) = kernel.withUnsafeBufferPointer {
                    (ProbeRoutes.canonical(layer: layer, kernel: $0, patches: patches, maxThreads: 2), ProbeRoutes.general(layer: layer, kernel: $0, patches: patches))
                }
                for (a, b) in zip(fast.viaFeatures + fast.viaKernel, slow.viaFeatures + slow.viaKernel) {
                    XCTAssertEqual(a, b, accuracy: 1e-12 * max(1, abs(b)), "\(layout) \(g)")
                }
            }
        }
    }
}

/// Something to keep borrowed bytes' owner slot filled in tests (the bytes are test arrays).
private final class TestOwner {}
