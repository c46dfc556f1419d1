import DOConvCore
@testable import DOConvInspect
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

/// The JSON document, the SVG image and the command line.
final class OutputTests: XCTestCase {
    typealias Support = InspectTestSupport

    func testJSONRoundTripsWithSortedKeysAndTheRequiredFields() throws {
        let report = try Support.onnxReport("wide_dmul.ts_nofold.onnx")
        let json = try JSONReport.render(report)
        XCTAssertEqual(try JSONReport.decode(json), report)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let layers = try XCTUnwrap(object["layers"] as? [[String: Any]])
        XCTAssertEqual(layers.count, 2)
        for key in ["name", "kind", "form", "in_channels", "out_channels", "kernel", "stride", "dilation", "groups", "d_mul",
                    "params_trained", "params_folded", "d_deviation", "h_map", "bytes_saved", "macs_per_output_position"] {
            XCTAssertNotNil(layers[0][key], key)
        }
        // Sorted keys: the top level reads format, format_version, layers, model, rejected, totals.
        let order = ["\"format\"", "\"format_version\"", "\"layers\"", "\"model\"", "\"rejected\"", "\"totals\""].map {
            json.range(of: $0)!.lowerBound
        }
        XCTAssertEqual(order, order.sorted())
    }

    /// The committed schema names every key the encoder writes, and only those.
    func testSchemaListsExactlyTheEncodedKeys() throws {
        let url = Support.packageRoot.appendingPathComponent("schemas/inspect-report.schema.json")
        let schema = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let defs = try XCTUnwrap(schema["$defs"] as? [String: Any])
        let layerSchema = try XCTUnwrap(defs["layer"] as? [String: Any])
        let totalsSchema = try XCTUnwrap(defs["totals"] as? [String: Any])
        let report = try Support.onnxReport("grouped.ts_nofold.onnx")
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try JSONReport.render(report).utf8)) as? [String: Any])
        let layer = try XCTUnwrap((object["layers"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(layer.keys), Set(try XCTUnwrap(layerSchema["required"] as? [String])))
        // `location` is written only for layers outside the main graph (functions, subgraphs).
        XCTAssertEqual(Set(layer.keys).union(["location"]), Set(try XCTUnwrap(layerSchema["properties"] as? [String: Any]).keys))
        let totals = try XCTUnwrap(object["totals"] as? [String: Any])
        XCTAssertEqual(Set(totals.keys), Set(try XCTUnwrap(totalsSchema["required"] as? [String])))
        XCTAssertEqual(Set(object.keys), Set(try XCTUnwrap(schema["required"] as? [String])))
        // `reparam` only with --reparam.
        XCTAssertEqual(Set(object.keys).union(["reparam"]), Set(try XCTUnwrap(schema["properties"] as? [String: Any]).keys))
    }

    /// Counts `<g class="layer-map">` elements and checks the document parses as XML.
    final class SVGCounter: NSObject, XMLParserDelegate {
        var maps: [String] = []
        var sawRoot = false
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            if name == "svg" { sawRoot = true }
            if name == "g", attributes["class"] == "layer-map" { maps.append(attributes["data-layer"] ?? "") }
        }
    }

    func parseSVG(_ text: String) throws -> SVGCounter {
        let parser = XMLParser(data: Data(text.utf8))
        let counter = SVGCounter()
        parser.delegate = counter
        XCTAssertTrue(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "") \(text.prefix(400))")
        XCTAssertTrue(counter.sawRoot)
        return counter
    }

    func testSVGIsWellFormedWithOneMapPerLayer() throws {
        for file in ["odd_kernels.ts_nofold.onnx", "grouped.ts_nofold.onnx", "plain_cnn.onnx"] {
            let report = try Support.onnxReport(file)
            let svg = SVGReport.render(report)
            let counter = try parseSVG(svg)
            XCTAssertEqual(counter.maps, report.layers.map(\.name), file)
            XCTAssertTrue(svg.contains("H = \u{3A3} |W\u{2032} \u{2212} W|"), file)
            if !report.layers.isEmpty { XCTAssertTrue(svg.contains("linearGradient"), "\(file): a color scale") }
        }
    }

    func testSVGEscapesAwkwardLayerNames() throws {
        var report = try Support.onnxReport("g1_basic.ts_nofold.onnx")
        report.layers[0].name = "<conv & \"quote\" 'x'>\u{1}"
        report.layers[1].name = String(repeating: "very_long_layer_name/", count: 6)
        let counter = try parseSVG(SVGReport.render(report))
        XCTAssertEqual(counter.maps.count, 2)
        XCTAssertEqual(counter.maps[0], "<conv & \"quote\" 'x'>\u{FFFD}")
        XCTAssertEqual(counter.maps[1], report.layers[1].name)
    }

    // MARK: the command line

    func testCommandPrintsTheTableAndWritesTheSVG() throws {
        let dir = try Support.temporaryDirectory(self)
        let svg = dir.appendingPathComponent("maps.svg").path
        let run = try Support.inspect([Support.fixture("grouped.ts_nofold.onnx"), "--svg", svg, "--maps"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("totals: 3 layers (2 DO-DConv, 1 DO-GConv)"), run.stdout)
        XCTAssertTrue(run.stdout.contains("H 3x3 = sum over channels"), run.stdout)
        let counter = try parseSVG(try String(contentsOfFile: svg, encoding: .utf8))
        XCTAssertEqual(counter.maps.count, 3)
    }

    func testCommandJSONMatchesTheLibrary() throws {
        let path = Support.kerasFixture("k2_net_a.h5")
        let run = try Support.inspect([path, "--json"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let report = try JSONReport.decode(run.stdout)
        XCTAssertEqual(report, try Support.kerasReport("k2_net_a.h5", config: nil))
        XCTAssertEqual(report.format, "keras-h5")
    }

    func testCommandReadsKerasArchivesAndWeightsFilesWithAConfig() throws {
        for entry in try Support.manifest(Support.kerasFixtures) where (entry["format"] as? String) == "keras_zip" && !FixtureReportTests.isSeparable(entry) {
            let file = try XCTUnwrap(entry["file"] as? String)
            let run = try Support.inspect([Support.kerasFixture(file), "--json"])
            XCTAssertEqual(run.status, 0, "\(file): \(run.stderr)")
            let report = try JSONReport.decode(run.stdout)
            XCTAssertEqual(report.format, "keras-archive")
            let expected = try XCTUnwrap(entry["do_layers"] as? [[String: Any]])
            XCTAssertEqual(report.layers.map(\.name), expected.compactMap { $0["name"] as? String }, file)
            XCTAssertEqual(report.layers.map(\.dMul), expected.compactMap { $0["d_mul"] as? Int }, file)
        }
        let weights = try Support.inspect([Support.kerasFixture("k3_net_a.weights.h5"), "--config", Support.kerasFixture("k3_net_a.json")])
        XCTAssertEqual(weights.status, 0, weights.stderr)
        XCTAssertTrue(weights.stdout.contains("do_group"), weights.stdout)
    }

    func testCommandReadsSeparableKerasArchives() throws {
        for entry in try Support.manifest(Support.kerasFixtures) where (entry["format"] as? String) == "keras_zip" && FixtureReportTests.isSeparable(entry) {
            let file = try XCTUnwrap(entry["file"] as? String)
            let run = try Support.inspect([Support.kerasFixture(file), "--json"])
            XCTAssertEqual(run.status, 0, "\(file): \(run.stderr)")
            let report = try JSONReport.decode(run.stdout)
            let expected = try XCTUnwrap(entry["do_layers"] as? [[String: Any]])
            XCTAssertEqual(report.layers.map(\.name), expected.compactMap { $0["name"] as? String }, file)
            XCTAssertTrue(report.layers.allSatisfy { $0.form == "feature composition" }, file)
        }
    }

    func testPlainModelIsOneLineAndExitZero() throws {
        let run = try Support.inspect([Support.fixture("plain_cnn.onnx")])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout.split(separator: "\n").count, 1, run.stdout)
        XCTAssertTrue(run.stdout.contains("no DO-Conv layer found"), run.stdout)
    }

    func testBadInputAndUsageExitTwoWithOneLine() throws {
        let dir = try Support.temporaryDirectory(self)
        let junk = dir.appendingPathComponent("junk.onnx")
        try Data("not a model".utf8).write(to: junk)
        let junkH5 = dir.appendingPathComponent("junk.h5")
        try Data("not hdf5".utf8).write(to: junkH5)
        let junkKeras = dir.appendingPathComponent("junk.keras")
        try Data("not a zip".utf8).write(to: junkKeras)
        let cases: [([String], String)] = [
            ([junk.path], junk.path),
            ([junkH5.path], junkH5.path),
            ([junkKeras.path], junkKeras.path),
            ([dir.appendingPathComponent("missing.onnx").path], "missing.onnx"),
            ([dir.appendingPathComponent("missing.keras").path], "missing.keras"),
            ([Support.fixture("grouped.ts_nofold.onnx"), "--svg", dir.appendingPathComponent("no/such/dir.svg").path], "dir.svg"),
            ([Support.kerasFixture("k3_net_a.weights.h5")], "k3_net_a.weights.h5"),
            ([Support.kerasFixture("k2_net_a.h5"), "--config", dir.appendingPathComponent("none.json").path], "none.json"),
        ]
        for (arguments, named) in cases {
            let run = try Support.inspect(arguments)
            XCTAssertEqual(run.status, 2, "\(arguments): \(run.stdout) \(run.stderr)")
            let lines = run.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(arguments): \(run.stderr)")
            XCTAssertTrue(run.stderr.hasPrefix("doconv-inspect: error: "), run.stderr)
            XCTAssertTrue(run.stderr.contains(named), "\(arguments): \(run.stderr)")
        }
        for arguments in [[], ["a.onnx", "b.onnx"], ["--bogus", "a.onnx"], [Support.fixture("grouped.ts_nofold.onnx"), "--kernel-size", "x"]] {
            let run = try Support.inspect(arguments)
            XCTAssertEqual(run.status, 2, "\(arguments): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("doconv-inspect: error:"), run.stderr)
        }
    }
}
