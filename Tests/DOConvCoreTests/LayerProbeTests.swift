import XCTest
@testable import DOConvCore

/// The probe must accept a true fold and reject a wrong one.
final class LayerProbeTests: XCTestCase {
    func layer(layout: DOConvLayout, groups: Int, cin: Int, cout: Int) throws -> DOConvLayer {
        var random = SeededGenerator(seed: 3)
        let g = DOConvGeometry(inChannels: cin, outChannels: cout, groups: groups, kernelHeight: 3, kernelWidth: 3, depthMultiplier: 11)
        return try DOConvLayer(layout: layout, geometry: g,
                               d: (0..<g.dCount).map { _ in Float.random(in: -1...1, using: &random) },
                               w: (0..<g.wCount).map { _ in Float.random(in: -1...1, using: &random) })
    }

    func testTrueFoldPassesAndTamperedFoldFails() throws {
        for layout in [DOConvLayout.pytorch, .keras] {
            for (groups, cin, cout) in [(1, 6, 10), (6, 6, 6), (3, 6, 9), (4, 4, 12)] {
                let l = try layer(layout: layout, groups: groups, cin: cin, cout: cout)
                var kernel = l.foldedKernel().values
                XCTAssertLessThan(LayerProbe.compare(layer: l, kernel: kernel).relativeError, 1e-6)
                kernel[kernel.count / 2] += 0.05
                XCTAssertGreaterThan(LayerProbe.compare(layer: l, kernel: kernel).relativeError, 1e-4, "\(layout) g=\(groups)")
            }
        }
    }

    func testKernelOfTheWrongLayoutFails() throws {
        let torch = try layer(layout: .pytorch, groups: 3, cin: 6, cout: 9)
        let keras = try DOConvLayer(layout: .keras, geometry: torch.geometry, d: torch.d, w: torch.w)
        XCTAssertGreaterThan(LayerProbe.compare(layer: torch, kernel: keras.foldedKernel().values).relativeError, 1e-2)
    }

    func testNaNIsAFailure() throws {
        let l = try layer(layout: .pytorch, groups: 1, cin: 2, cout: 2)
        var kernel = l.foldedKernel().values
        kernel[0] = .nan
        XCTAssertFalse(LayerProbe.compare(layer: l, kernel: kernel).relativeError <= 1)
    }
}
