import DOConvCore
import DOConvInspect
import Foundation
import XCTest

/// Reports on the real fixtures agree with the geometry their exporter scripts recorded.
final class FixtureReportTests: XCTestCase {
    typealias Support = InspectTestSupport

    /// Totals are the sums of the rows.
    func checkTotals(_ report: InspectReport, _ file: String) {
        let t = report.totals
        XCTAssertEqual(t.layers, report.layers.count, file)
        for kind in DOConvKind.allCases {
            XCTAssertEqual(t.layersByKind[kind.rawValue], report.layers.filter { $0.kind == kind.rawValue }.count, file)
        }
        XCTAssertEqual(t.layersByKind.values.reduce(0, +), t.layers, file)
        XCTAssertEqual(t.paramsTrained, report.layers.map(\.paramsTrained).reduce(0, +), file)
        XCTAssertEqual(t.paramsFolded, report.layers.map(\.paramsFolded).reduce(0, +), file)
        XCTAssertEqual(t.paramsSaved, t.paramsTrained - t.paramsFolded, file)
        XCTAssertEqual(t.bytesSaved, report.layers.map(\.bytesSaved).reduce(0, +), file)
        XCTAssertEqual(t.macsPerOutputPosition, report.layers.map(\.macsPerOutputPosition).reduce(0, +), file)
        XCTAssertEqual(t.macsPerOutputPositionUnfolded, report.layers.map(\.macsPerOutputPositionUnfolded).reduce(0, +), file)
        XCTAssertEqual(t.macsUnchangedByFolding, report.layers.allSatisfy { $0.form == "kernel composition" }, file)
    }

    /// A row's derived numbers: parameters, bytes, MACs, the H map's shape and sign.
    func checkRow(_ layer: InspectReport.Layer, _ context: String) {
        let (m, n) = (layer.kernel[0], layer.kernel[1])
        let perGroup = layer.inChannels / layer.groups
        XCTAssertEqual(layer.paramsFolded, layer.outChannels * perGroup * m * n, context)
        XCTAssertEqual(layer.macsPerOutputPosition, layer.outChannels * perGroup * m * n, context)
        if layer.form == "kernel composition" {
            XCTAssertEqual(layer.macsPerOutputPositionUnfolded, layer.macsPerOutputPosition, context)
        } else {
            // A depthwise conv into Cin * Dmul features, then a 1x1 conv over them.
            XCTAssertEqual(layer.macsPerOutputPositionUnfolded, layer.inChannels * layer.dMul * m * n + layer.outChannels * perGroup * layer.dMul, context)
        }
        let width = ["float32": 4, "float16": 2, "bfloat16": 2, "float64": 8][layer.elementType]
        XCTAssertEqual(layer.bytesSaved, (layer.paramsTrained - layer.paramsFolded) * (width ?? 0), context)
        XCTAssertEqual(layer.hMap.count, m, context)
        XCTAssertTrue(layer.hMap.allSatisfy { $0.count == n }, context)
        XCTAssertTrue(layer.hMap.joined().allSatisfy { $0.isFinite && $0 >= 0 }, context)
        if layer.hasD {
            // The fixtures' D are random: the layer is far from the identity and D moved the kernel.
            XCTAssertGreaterThan(try XCTUnwrap(layer.dDeviation, context), 0, context)
            XCTAssertGreaterThan(layer.hMax, 0, context)
        } else {
            XCTAssertEqual(layer.kernel, [1, 1], context)
            XCTAssertEqual(layer.dDeviation, 0, context)
            XCTAssertEqual(layer.hMap, [[0]], context)
        }
    }

    func testONNXFixtureRowsMatchTheManifest() throws {
        var checked = 0
        for entry in try Support.manifest(Support.fixtures) {
            let file = try XCTUnwrap(entry["file"] as? String)
            var expected = try XCTUnwrap(entry["do_layers"] as? [[String: Any]])
            // With constant folding, TorchScript (which Keras 3's export also uses) already folds
            // 1x1 layers, whose kernel is only a reshape of W: they are plain convs in the file.
            if ["torchscript", "keras3"].contains(entry["exporter"] as? String ?? "") {
                expected.removeAll { ($0["kernel"] as? [Int]) == [1, 1] }
            }
            let report = try Support.onnxReport(file)
            XCTAssertEqual(report.format, "onnx")
            XCTAssertEqual(report.layers.count, expected.count, file)
            XCTAssertEqual(report.rejected.count, entry["refused"] as? Int ?? 0, "\(file): \(report.rejected)")
            XCTAssertTrue(report.rejected.allSatisfy { !$0.reason.isEmpty }, file)
            // Feature-composition fixtures (a depthwise conv then a 1x1 conv) are the pair_* models.
            let form = file.hasPrefix("pair_") ? "feature composition" : "kernel composition"
            for (layer, want) in zip(report.layers, expected) {
                let context = "\(file) \(layer.name)"
                XCTAssertEqual(layer.kind, want["kind"] as? String, context)
                XCTAssertEqual(layer.form, want["form"] as? String ?? form, context)
                XCTAssertEqual(layer.inChannels, want["in_channels"] as? Int, context)
                XCTAssertEqual(layer.outChannels, want["out_channels"] as? Int, context)
                XCTAssertEqual(layer.kernel, want["kernel"] as? [Int], context)
                XCTAssertEqual(layer.groups, want["groups"] as? Int, context)
                XCTAssertEqual(layer.dMul, want["d_mul"] as? Int, context)
                XCTAssertEqual(layer.stride, want["stride"] as? [Int], context)
                XCTAssertEqual(layer.dilation, want["dilation"] as? [Int], context)
                XCTAssertEqual(layer.elementType, entry["dtype"] as? String, context)
                XCTAssertEqual(layer.paramsTrained, Support.expectedTrainedParameters(
                    inChannels: layer.inChannels, outChannels: layer.outChannels, kernel: layer.kernel, groups: layer.groups, dMul: layer.dMul), context)
                checkRow(layer, context)
            }
            checkTotals(report, file)
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 20)
    }

    static func isSeparable(_ entry: [String: Any]) -> Bool {
        (entry["do_layers"] as? [[String: Any]] ?? []).contains { $0["separable"] as? Bool ?? false }
    }

    func testKerasFixtureRowsMatchTheManifest() throws {
        try checkKerasFixtures(separable: false)
    }

    /// SeparableConv2D models (DO-Conv in feature-composition form): `KerasFolder.detect` must
    /// report what `KerasFolder.fold` folds.
    func testKerasSeparableFixtureRowsMatchTheManifest() throws {
        try checkKerasFixtures(separable: true)
    }

    func checkKerasFixtures(separable wanted: Bool) throws {
        var checked = 0
        for entry in try Support.manifest(Support.kerasFixtures) where (entry["format"] as? String) != "keras_zip" && Self.isSeparable(entry) == wanted {
            let file = try XCTUnwrap(entry["file"] as? String)
            let expected = try XCTUnwrap(entry["do_layers"] as? [[String: Any]])
            let report = try Support.kerasReport(file, config: entry["config"] as? String)
            XCTAssertEqual(report.layers.count, expected.count, file)
            XCTAssertEqual(report.rejected.count, entry["refused"] as? Int ?? 0, "\(file): \(report.rejected)")
            for (layer, want) in zip(report.layers, expected) {
                let context = "\(file) \(layer.name)"
                let inChannels = try XCTUnwrap(want["in_channels"] as? Int)
                let groups = try XCTUnwrap(want["groups"] as? Int)
                XCTAssertEqual(layer.name, want["name"] as? String, context)
                XCTAssertEqual(layer.kind, groups == 1 ? "DO-Conv" : groups == inChannels ? "DO-DConv" : "DO-GConv", context)
                // Separable (depthwise then 1x1) layers are DO-Conv in feature-composition form.
                let separable = want["separable"] as? Bool ?? false
                XCTAssertEqual(layer.form, separable ? "feature composition" : "kernel composition", context)
                if !separable { XCTAssertEqual(layer.layout, "keras", context) }
                XCTAssertEqual(layer.inChannels, inChannels, context)
                XCTAssertEqual(layer.outChannels, want["filters"] as? Int, context)
                XCTAssertEqual(layer.kernel, want["kernel"] as? [Int], context)
                XCTAssertEqual(layer.groups, groups, context)
                XCTAssertEqual(layer.dMul, want["d_mul"] as? Int, context)
                XCTAssertEqual(layer.hasD, want["has_d"] as? Bool, context)
                XCTAssertEqual(layer.paramsTrained, Support.expectedTrainedParameters(
                    inChannels: layer.inChannels, outChannels: layer.outChannels, kernel: layer.kernel, groups: layer.groups, dMul: layer.dMul), context)
                checkRow(layer, context)
            }
            checkTotals(report, file)
            checked += 1
        }
        if !wanted { XCTAssertGreaterThanOrEqual(checked, 8) }
    }

    func testGroupedTotals() throws {
        let report = try Support.onnxReport("grouped.ts_nofold.onnx")
        // D: 8*9*9 + 8*9*9 + 16*9*9; W: 8*1*9 + 16*2*9 + 32*1*9; kernels: 8*1*9 + 16*2*9 + 32*1*9.
        XCTAssertEqual(report.totals.paramsTrained, 648 + 648 + 1296 + 72 + 288 + 288)
        XCTAssertEqual(report.totals.paramsFolded, 72 + 288 + 288)
        XCTAssertEqual(report.totals.bytesSaved, (3240 - 648) * 4)
        XCTAssertEqual(report.totals.layersByKind, ["DO-Conv": 0, "DO-DConv": 2, "DO-GConv": 1])
        XCTAssertEqual(report.totals.macsPerOutputPosition, 648)
        XCTAssertTrue(report.totals.macsUnchangedByFolding)
        XCTAssertTrue(TextReport.render(report).contains("MACs per output position: 648 (sum of Cout x Cin/g x M x N), unchanged by folding"))
    }

    func testFeatureCompositionPairsChangeTheMACs() throws {
        let report = try Support.onnxReport("pair_dodconv.ts_nofold.onnx")
        XCTAssertTrue(report.layers.allSatisfy { $0.form == "feature composition" })
        XCTAssertFalse(report.totals.macsUnchangedByFolding)
        XCTAssertGreaterThan(report.totals.macsPerOutputPositionUnfolded, report.totals.macsPerOutputPosition)
        XCTAssertTrue(TextReport.render(report).contains("as the model runs them ->"), TextReport.render(report))
    }

    func testHalfPrecisionBytesUseTheElementSize() throws {
        let report = try Support.onnxReport("g1_basic_fp16.ts.onnx")
        XCTAssertTrue(report.layers.allSatisfy { $0.elementType == "float16" })
        XCTAssertEqual(report.totals.bytesSaved, report.totals.paramsSaved * 2)
    }

    func testPlainModelGetsOneLine() throws {
        let report = try Support.onnxReport("plain_cnn.onnx")
        XCTAssertTrue(report.layers.isEmpty)
        let text = TextReport.render(report)
        XCTAssertEqual(text.split(separator: "\n").count, 1, text)
        XCTAssertTrue(text.contains("no DO-Conv layer"), text)
        XCTAssertEqual(report.totals.layers, 0)
        XCTAssertEqual(report.totals.paramsSaved, 0)
    }

    func testTableHasOneRowPerLayerInGraphOrder() throws {
        let report = try Support.onnxReport("odd_kernels.ts_nofold.onnx")
        let text = TextReport.render(report)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let header = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("#  layer") }, text)
        for (k, layer) in report.layers.enumerated() {
            let row = lines[header + 1 + k]
            XCTAssertTrue(row.hasPrefix("\(k + 1)  "), row)
            XCTAssertTrue(row.contains(layer.kind) && row.contains("\(layer.kernel[0])x\(layer.kernel[1])"), row)
            XCTAssertTrue(row.contains("\(layer.inChannels)->\(layer.outChannels)"), row)
        }
        XCTAssertTrue(text.contains("MACs per output position"), text)
        XCTAssertTrue(text.contains("unchanged by folding"), text)
        // --maps puts each layer's map under its row; the 1x1 layer's is all zero.
        let withMaps = TextReport.render(report, maps: true)
        XCTAssertTrue(withMaps.contains("H 5x5 = sum over channels of |W' - W|"), withMaps)
        XCTAssertTrue(withMaps.contains("H 1x1: all zero (no D"), withMaps)
    }
}
