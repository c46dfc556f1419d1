import Foundation
import XCTest
@testable import DOConvKeras
import DOConvCore

/// Keras HDF5 files made by Keras 2 (tf_keras) and Keras 3 (fixtures/make_keras_h5_fixtures.py).
final class KerasFoldTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/keras_h5")

    func manifest() throws -> [[String: Any]] {
        let data = try Data(contentsOf: Self.folder.appendingPathComponent("MANIFEST.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[String: Any]])
    }

    func path(_ name: String) -> String { Self.folder.appendingPathComponent(name).path }

    func options(config: String?) throws -> KerasFoldOptions {
        var options = KerasFoldOptions()
        if let config { options.configJSON = try String(contentsOfFile: path(config), encoding: .utf8) }
        return options
    }

    func temporaryFile(_ name: String) -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("doconv-keras-\(UUID().uuidString)-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    func testEveryFileFoldsWithTheRecordedGeometry() throws {
        var checked = 0
        for entry in try manifest() where (entry["format"] as? String) != "keras_zip" {
            let file = try XCTUnwrap(entry["file"] as? String)
            let expected = try XCTUnwrap(entry["do_layers"] as? [[String: Any]])
            let result = try KerasFolder.fold(path: path(file), options: try options(config: entry["config"] as? String))
            XCTAssertEqual(result.summary.layers.count, expected.count, file)
            XCTAssertEqual(result.summary.rejected.count, entry["refused"] as? Int ?? 0, "\(file): \(result.summary.rejected)")
            for (layer, want) in zip(result.summary.layers, expected) {
                let g = layer.geometry
                XCTAssertEqual(layer.name, want["name"] as? String, file)
                XCTAssertEqual([g.kernelHeight, g.kernelWidth], want["kernel"] as? [Int], file)
                XCTAssertEqual(g.groups, want["groups"] as? Int, file)
                XCTAssertEqual(g.depthMultiplier, want["d_mul"] as? Int, file)
                XCTAssertEqual(g.inChannels, want["in_channels"] as? Int, file)
                XCTAssertEqual(g.outChannels, want["filters"] as? Int, file)
                XCTAssertTrue(layer.verified, "\(file) \(layer.name)")
            }
            checked += 1
        }
        XCTAssertEqual(checked, 12)
    }

    func testFoldedFullModelHasNoDAndAPlainConfig() throws {
        for name in ["k2_net_a.h5", "k3_net_a.h5"] {
            let output = temporaryFile(name)
            let result = try KerasFolder.fold(path: path(name))
            XCTAssertEqual(result.summary.notes.count, 1, "optimizer state is dropped and said so")
            try result.write(to: output)
            let folded = try HDF5File.openReadOnly(path: output)
            let root = try folded.root()
            XCTAssertFalse(root.hasChild("optimizer_weights"))
            let config = try root.string("model_config")
            XCTAssertFalse(config.contains("DOConv2D"), name)
            XCTAssertFalse(config.contains("D_mul"), name)
            let layout = try KerasWeightsLayout(file: folded)
            for layer in layout.layers {
                XCTAssertFalse(layer.weights.contains { $0.role == .d }, "\(name) \(layer.name)")
                if let kernel = layer.weights.first(where: { $0.role == .kernel }), layer.name.hasPrefix("do_") {
                    XCTAssertEqual(kernel.shape.count, 4, "\(name) \(layer.name)")
                }
            }
            // Nothing else changed: the other layers' datasets hold the same values.
            let original = try KerasWeightsLayout(file: try HDF5File.openReadOnly(path: path(name)))
            for layer in original.layers where !layer.name.hasPrefix("do_") {
                for weight in layer.weights {
                    let a = try HDF5File.openReadOnly(path: path(name)).dataset(at: weight.path).floats()
                    let b = try folded.dataset(at: weight.path).floats()
                    XCTAssertEqual(a, b, weight.path)
                }
            }
        }
    }

    func testWeightsH5GroupsAreRenamedForThePlainModel() throws {
        let output = temporaryFile("k3_net_a.weights.h5")
        try KerasFolder.fold(path: path("k3_net_a.weights.h5"), options: try options(config: "k3_net_a.json")).write(to: output)
        let names = try HDF5File.openReadOnly(path: output).root().group("layers").childNames()
        XCTAssertEqual(Set(names), ["batch_normalization", "conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "dense",
                                    "global_average_pooling2d", "input_layer"])
        // The plain conv keeps its weights under its new name (it comes fourth in model order).
        let plain = try HDF5File.openReadOnly(path: output).dataset(at: "/layers/conv2d_3/vars/0")
        XCTAssertEqual(try plain.shape(), [3, 3, 16, 8])
    }

    func testKernelSizeResolution() throws {
        // Weights only, no config: 3x3 follows from MN = 9, but MN = 3 could be 1x3 or 3x1.
        XCTAssertThrowsError(try KerasFolder.fold(path: path("k2_net_a_weights.h5"))) { error in
            XCTAssertEqual(error as? KerasError, .undecidableLayer(path: path("k2_net_a_weights.h5"), layer: "do_wide", reason: "kernel size unknown (M x N = 3); pass --config MODEL.json or --kernel-size do_wide=MxN"))
            XCTAssertTrue("\(error)".contains("--kernel-size do_wide=MxN"))
        }
        var options = KerasFoldOptions()
        options.kernelSizes = ["do_wide": [1, 3]]
        // A 1x1 layer without config is not guessed: refused, or left and reported on request.
        XCTAssertThrowsError(try KerasFolder.fold(path: path("k2_net_a_weights.h5"), options: options)) { error in
            guard case .undecidableLayer(_, "do_point", _) = error as? KerasError else { return XCTFail("\(error)") }
        }
        options.allowPartial = true
        let result = try KerasFolder.fold(path: path("k2_net_a_weights.h5"), options: options)
        XCTAssertEqual(result.summary.layers.map(\.name), ["do_stem", "do_wide", "do_group"])
        XCTAssertEqual(result.summary.rejected.map(\.name), ["do_point"])
        options.kernelSizes = ["do_wide": [3, 3]]
        XCTAssertThrowsError(try KerasFolder.fold(path: path("k2_net_a_weights.h5"), options: options))
    }

    func testWeightsH5NeedsTheConfig() {
        XCTAssertThrowsError(try KerasFolder.fold(path: path("k3_net_a.weights.h5"))) { error in
            guard case .config = error as? KerasError else { return XCTFail("\(error)") }
        }
    }

    func testBadFilesAreRefused() throws {
        let text = temporaryFile("text.h5")
        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: text))
        XCTAssertThrowsError(try KerasFolder.fold(path: text))
        let truncated = temporaryFile("truncated.h5")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path("k2_net_dw.h5")))
        try bytes.prefix(bytes.count / 3).write(to: URL(fileURLWithPath: truncated))
        XCTAssertThrowsError(try KerasFolder.fold(path: truncated))
        XCTAssertThrowsError(try KerasFolder.fold(path: temporaryFile("missing.h5")))
    }

    func testSnakeCaseMatchesKeras() {
        XCTAssertEqual(KerasNaming.snakeCase("DOConv2D"), "do_conv2d")
        XCTAssertEqual(KerasNaming.snakeCase("Conv2D"), "conv2d")
        XCTAssertEqual(KerasNaming.snakeCase("BatchNormalization"), "batch_normalization")
        XCTAssertEqual(KerasNaming.snakeCase("GlobalAveragePooling2D"), "global_average_pooling2d")
        XCTAssertEqual(KerasNaming.weightPaths(classNames: ["Conv2D", "Dense", "Conv2D", "Conv2D"]), ["conv2d", "dense", "conv2d_1", "conv2d_2"])
    }
}
