import DOConvCore
@testable import DOConvInspect
import Foundation
import XCTest

/// d_deviation and the H map on layers built in the test, against independent computations.
final class LayerAnalysisTests: XCTestCase {
    typealias Support = InspectTestSupport

    static let geometries: [DOConvGeometry] = [
        DOConvGeometry(inChannels: 3, outChannels: 8, groups: 1, kernelHeight: 3, kernelWidth: 3, depthMultiplier: 9),
        DOConvGeometry(inChannels: 8, outChannels: 16, groups: 4, kernelHeight: 3, kernelWidth: 3, depthMultiplier: 12),
        DOConvGeometry(inChannels: 8, outChannels: 8, groups: 8, kernelHeight: 3, kernelWidth: 2, depthMultiplier: 13),
        DOConvGeometry(inChannels: 4, outChannels: 6, groups: 2, kernelHeight: 1, kernelWidth: 3, depthMultiplier: 7),
    ]

    func identity(_ layout: DOConvLayout, _ g: DOConvGeometry) -> [Float] {
        var d = [Float](repeating: 0, count: g.dCount)
        IdentityOffset.add(to: &d, layout: layout, geometry: g)
        return d
    }

    func testIdentityDHasZeroDeviationAndAZeroMap() throws {
        for layout in [DOConvLayout.pytorch, .keras] {
            for (k, g) in Self.geometries.enumerated() {
                let w = Support.randomValues(g.wCount, seed: UInt64(k + 1))
                let layer = try DOConvLayer(layout: layout, geometry: g, d: identity(layout, g), w: w)
                XCTAssertEqual(LayerAnalysis.dDeviation(layer), 0, "\(layout) \(g)")
                let map = LayerAnalysis.heatMap(layer)
                XCTAssertEqual(map.count, g.kernelHeight)
                XCTAssertTrue(map.allSatisfy { $0.count == g.kernelWidth })
                XCTAssertTrue(map.joined().allSatisfy { $0 == 0 }, "\(layout) \(g): \(map)")
                // With D = I the kernel is the identity fold itself.
                XCTAssertEqual(LayerAnalysis.identityKernel(layer), layer.foldedKernel())
                let detected = DetectedLayer(name: "eye", form: .kernelComposition, layer: layer, elementType: .float32, stride: [1, 1], dilation: [1, 1])
                let row = InspectReport.layer(detected)
                XCTAssertEqual(row.dDeviation, 0)
                XCTAssertEqual(row.hMax, 0)
                XCTAssertTrue(TextReport.mapLines(row)[0].contains("all zero (D = I"), "\(TextReport.mapLines(row))")
            }
        }
    }

    func testDeviationIsTheRelativeFrobeniusNormOfTheTrainedD() throws {
        for layout in [DOConvLayout.pytorch, .keras] {
            for (k, g) in Self.geometries.enumerated() {
                let trained = Support.randomValues(g.dCount, seed: UInt64(100 + k)).map { $0 * 0.25 }
                let eye = identity(layout, g)
                let d = zip(trained, eye).map { $0 + $1 }
                let layer = try DOConvLayer(layout: layout, geometry: g, d: d, w: Support.randomValues(g.wCount, seed: 7))
                // ||I|| is sqrt of its ones: Cin * MN * floor(Dmul / MN).
                let ones = Double(g.inChannels * g.kernelArea * (g.depthMultiplier / g.kernelArea))
                let norm = trained.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
                let got = try XCTUnwrap(LayerAnalysis.dDeviation(layer))
                XCTAssertEqual(got, norm / ones.squareRoot(), accuracy: 1e-6 * max(1, got), "\(layout) \(g)")
            }
        }
    }

    /// The fold is linear in D, so W' - W is the fold of the trained part of D alone; the
    /// scalar reference fold gives it independently of the vectorized one.
    func testHMapMatchesTheScalarFoldOfTheTrainedD() throws {
        for layout in [DOConvLayout.pytorch, .keras] {
            for (k, g) in Self.geometries.enumerated() {
                let trained = Support.randomValues(g.dCount, seed: UInt64(200 + k))
                let eye = identity(layout, g)
                let w = Support.randomValues(g.wCount, seed: UInt64(300 + k))
                let layer = try DOConvLayer(layout: layout, geometry: g, d: zip(trained, eye).map { $0 + $1 }, w: w)
                let delta = ScalarFold.kernel(of: try DOConvLayer(layout: layout, geometry: g, d: trained, w: w))
                var expected = [[Double]](repeating: [Double](repeating: 0, count: g.kernelWidth), count: g.kernelHeight)
                let area = g.kernelArea
                for (index, value) in delta.values.enumerated() {
                    let mn = index % area
                    expected[mn / g.kernelWidth][mn % g.kernelWidth] += abs(Double(value))
                }
                let map = LayerAnalysis.heatMap(layer)
                for m in 0..<g.kernelHeight {
                    for n in 0..<g.kernelWidth {
                        XCTAssertEqual(map[m][n], expected[m][n], accuracy: 1e-4 * max(1, expected[m][n]), "\(layout) \(g) [\(m)][\(n)]")
                    }
                }
            }
        }
    }

    func testOneByOneWithoutDHasNoDeviation() throws {
        let g = DOConvGeometry(inChannels: 4, outChannels: 6, groups: 1, kernelHeight: 1, kernelWidth: 1, depthMultiplier: 1)
        let layer = try DOConvLayer(layout: .pytorch, geometry: g, d: nil, w: Support.randomValues(g.wCount, seed: 3))
        XCTAssertEqual(LayerAnalysis.dDeviation(layer), 0)
        XCTAssertEqual(LayerAnalysis.heatMap(layer), [[0]])
        XCTAssertEqual(LayerAnalysis.trainedParameters(layer), 24)
    }

    func testDeviationIsUndefinedWithoutAnIdentityOffset() throws {
        // Dmul < M*N: the identity offset is all zeros, so there is nothing to be relative to.
        let g = DOConvGeometry(inChannels: 1, outChannels: 16, groups: 1, kernelHeight: 3, kernelWidth: 3, depthMultiplier: 2)
        let layer = try DOConvLayer(layout: .pytorch, geometry: g, d: Support.randomValues(g.dCount, seed: 4), w: Support.randomValues(g.wCount, seed: 5))
        XCTAssertNil(LayerAnalysis.dDeviation(layer))
        let row = InspectReport.layer(DetectedLayer(name: "thin", form: .kernelComposition, layer: layer, elementType: .float32, stride: [1, 1], dilation: [1, 1]))
        XCTAssertNil(row.dDeviation)
        // Folding makes this layer larger; the report says so with a negative saving.
        XCTAssertLessThan(row.bytesSaved, 0)
        XCTAssertTrue(TextReport.render(InspectReport(model: "m", format: "onnx", layers: [row], rejected: [])).contains("n/a"))
    }

    func testNonFiniteValuesBecomeNullInJSON() throws {
        let g = DOConvGeometry(inChannels: 1, outChannels: 1, groups: 1, kernelHeight: 1, kernelWidth: 2, depthMultiplier: 2)
        var d = identity(.pytorch, g)
        d[0] = .nan
        let layer = try DOConvLayer(layout: .pytorch, geometry: g, d: d, w: [1, 1])
        let row = InspectReport.layer(DetectedLayer(name: "broken", form: .kernelComposition, layer: layer, elementType: .float32, stride: [1, 1], dilation: [1, 1]))
        XCTAssertNil(row.dDeviation)
        let json = try JSONReport.render(InspectReport(model: "m", format: "onnx", layers: [row], rejected: []))
        XCTAssertTrue(json.contains("null"), json)
        XCTAssertFalse(json.lowercased().contains("nan"), json)
        _ = SVGReport.render(InspectReport(model: "m", format: "onnx", layers: [row], rejected: []))
    }
}
