import Foundation
import XCTest
@testable import DOConvONNX
import DOConvCore

/// Every exporter shape in fixtures/ is detected with the geometry the fixture script recorded.
final class DetectionTests: XCTestCase {
    func testEveryFixtureLayerIsFoundWithItsGeometry() throws {
        for entry in try TestSupport.manifest() {
            let file = try XCTUnwrap(entry["file"] as? String)
            let exporter = entry["exporter"] as? String ?? ""
            var expected = try XCTUnwrap(entry["do_layers"] as? [[String: Any]])
            // With constant folding, TorchScript (which Keras 3's export also uses) already
            // folds 1x1 layers, whose kernel is only a reshape of W.
            if exporter == "torchscript" || exporter == "keras3" { expected.removeAll { ($0["kernel"] as? [Int]) == [1, 1] } }
            let model = try ONNXModel.load(path: TestSupport.fixture(file))
            let summary = try ONNXFolder.fold(model)
            XCTAssertEqual(summary.layers.count, expected.count, file)
            XCTAssertEqual(summary.rejected.count, entry["refused"] as? Int ?? 0, "\(file): \(summary.rejected)")
            for (layer, want) in zip(summary.layers, expected) {
                let g = layer.geometry
                XCTAssertEqual(layer.kind.rawValue, want["kind"] as? String, file)
                XCTAssertEqual(g.inChannels, want["in_channels"] as? Int, file)
                XCTAssertEqual(g.outChannels, want["out_channels"] as? Int, file)
                XCTAssertEqual([g.kernelHeight, g.kernelWidth], want["kernel"] as? [Int], file)
                XCTAssertEqual(g.groups, want["groups"] as? Int, file)
                XCTAssertEqual(g.depthMultiplier, want["d_mul"] as? Int, file)
                XCTAssertEqual(layer.stride, want["stride"] as? [Int], file)
                XCTAssertEqual(layer.dilation, want["dilation"] as? [Int], file)
                XCTAssertTrue(layer.verified, "\(file) \(layer.name): \(String(describing: layer.relativeError))")
            }
        }
    }

    func testEquationsAreRecognizedUpToLetterNames() {
        XCTAssertEqual(KernelCompositionDetector.layout(ofEquation: "ims,ois->oim"), .pytorch)
        XCTAssertEqual(KernelCompositionDetector.layout(ofEquation: "abc, dac -> dab"), .pytorch)
        XCTAssertEqual(KernelCompositionDetector.layout(ofEquation: "msi,sio->mio"), .keras)
        XCTAssertNil(KernelCompositionDetector.layout(ofEquation: "ims,ois->omi"))
        XCTAssertNil(KernelCompositionDetector.layout(ofEquation: "ij,jk->ik"))
    }
}

/// What the rewrite leaves behind.
final class RewriteTests: XCTestCase {
    func testFoldedModelsKeepNoCompositionAndRecordTheFold() throws {
        let out = try TestSupport.temporaryDirectory(self)
        for entry in try TestSupport.manifest() where !((entry["do_layers"] as? [Any])?.isEmpty ?? true) {
            let file = try XCTUnwrap(entry["file"] as? String)
            let input = try TestSupport.copyFixture(file, to: out)
            let model = try ONNXModel.load(path: input)
            let summary = try ONNXFolder.fold(model)
            let target = out.appendingPathComponent("folded-" + file).path
            try model.save(to: target)
            let folded = try ONNXModel.load(path: target)
            let ops = TestSupport.opTypes(folded)
            XCTAssertFalse(ops.contains("Einsum"), file)
            let initializers = TestSupport.initializerNames(folded)
            XCTAssertFalse(initializers.contains { $0.hasSuffix(".D") || $0.hasSuffix(".W") || $0.hasSuffix("d_diag") }, "\(file): \(initializers)")
            // Graph inputs that were only initializers (keep_initializers_as_inputs) are gone too.
            let inputs = TestSupport.graphInputNames(folded)
            XCTAssertFalse(inputs.contains { $0.hasSuffix(".D") || $0.hasSuffix(".W") || $0.hasSuffix("d_diag") }, file)
            // Every Conv reads its weight from an initializer.
            let index = GraphIndex(graph: folded.graph)
            for node in index.nodes where node.opType == "Conv" {
                XCTAssertNotNil(index.initializers[node.inputs[1]], "\(file): \(node.name)")
            }
            // value_info only names values that still exist.
            let known = index.allNames
            for info in Proto.elements(folded.graph.pointee.value_info, folded.graph.pointee.n_value_info) {
                XCTAssertTrue(known.contains(Proto.string(info!.pointee.name)), file)
            }
            XCTAssertNotNil(TestSupport.metadata(folded)[ONNXFolder.metadataKey], file)
            XCTAssertEqual(summary.layers.count, (TestSupport.metadata(folded)[ONNXFolder.metadataKey] ?? "").components(separatedBy: "\"layer\"").count - 1)
            if entry["external_data"] as? Bool ?? false {
                XCTAssertTrue(folded.usesExternalData, file)
                XCTAssertTrue(FileManager.default.fileExists(atPath: target + ".data"), file)
            }
        }
    }

    func testSharedInitializersSurviveWhileStillUsed() throws {
        // grouped.ts_nofold reads d_diag of layer 0 again (through an Identity) in layer 1.
        let model = try ONNXModel.load(path: TestSupport.fixture("grouped.ts_nofold.onnx"))
        let before = Set(TestSupport.initializerNames(model))
        _ = try ONNXFolder.fold(model)
        let after = Set(TestSupport.initializerNames(model))
        XCTAssertTrue(after.isSuperset(of: before.filter { $0.hasSuffix(".bias") }))
        XCTAssertTrue(after.isDisjoint(with: before.filter { $0.hasSuffix(".d_diag") || $0.hasSuffix(".D") }))
    }
}
