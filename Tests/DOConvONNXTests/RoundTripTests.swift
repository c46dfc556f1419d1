import Foundation
import XCTest
@testable import DOConvONNX

/// Loading and saving without changes must give back the exporter's own bytes.
final class RoundTripTests: XCTestCase {
    func testUnchangedModelsReserializeToIdenticalBytes() throws {
        let out = try TestSupport.temporaryDirectory(self)
        var checked = 0
        for entry in try TestSupport.manifest() where !(entry["external_data"] as? Bool ?? false) {
            let name = try XCTUnwrap(entry["file"] as? String)
            let model = try ONNXModel.load(path: TestSupport.fixture(name))
            let target = out.appendingPathComponent(name).path
            try model.save(to: target)
            let original = try Data(contentsOf: URL(fileURLWithPath: TestSupport.fixture(name)))
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)), original, name)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 10)
    }

    func testFoldingAModelWithoutDOConvChangesNothing() throws {
        let out = try TestSupport.temporaryDirectory(self)
        let model = try ONNXModel.load(path: TestSupport.fixture("plain_cnn.onnx"))
        let summary = try ONNXFolder.fold(model)
        XCTAssertTrue(summary.layers.isEmpty)
        XCTAssertTrue(summary.rejected.isEmpty)
        let target = out.appendingPathComponent("plain.onnx").path
        try model.save(to: target)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)), try Data(contentsOf: URL(fileURLWithPath: TestSupport.fixture("plain_cnn.onnx"))))
    }

    func testExternalDataStaysExternalAndIsReadBack() throws {
        let out = try TestSupport.temporaryDirectory(self)
        let model = try ONNXModel.load(path: TestSupport.fixture("grouped.dynamo.onnx"))
        let target = out.appendingPathComponent("copy.onnx").path
        try model.save(to: target)
        XCTAssertTrue(FileManager.default.fileExists(atPath: target + ".data"))
        let again = try ONNXModel.load(path: target)
        XCTAssertTrue(again.usesExternalData)
        let original = try ONNXModel.load(path: TestSupport.fixture("grouped.dynamo.onnx"))
        for name in TestSupport.initializerNames(original) {
            let a = try XCTUnwrap(GraphIndex(graph: original.graph).initializers[name])
            let b = try XCTUnwrap(GraphIndex(graph: again.graph).initializers[name])
            if TensorCodec.elementType(ofDataType: a.pointee.data_type) != nil {
                XCTAssertEqual(try original.codec.floats(of: a).2, try again.codec.floats(of: b).2, name)
            }
        }
    }
}

/// A model over protobuf's 2 GiB limit must be written with external data. The limit is
/// lowered here so the test needs no 2 GiB file.
final class OversizeModelTests: XCTestCase {
    func testModelsOverTheLimitMoveLargeTensorsOut() throws {
        let out = try TestSupport.temporaryDirectory(self)
        let source = TestSupport.fixture("wide_dmul.ts_nofold.onnx")
        let model = try ONNXModel.load(path: source)
        let target = out.appendingPathComponent("big.onnx").path
        try ModelWriter.save(model, to: target, protobufLimit: 8_000)
        XCTAssertTrue(FileManager.default.fileExists(atPath: target + ".data"))
        let reloaded = try ONNXModel.load(path: target)
        XCTAssertLessThan(reloaded.fileSize, 8_000)
        let original = try ONNXModel.load(path: source)
        let before = GraphIndex(graph: original.graph).initializers
        var moved = 0
        for (name, tensor) in GraphIndex(graph: reloaded.graph).initializers {
            let old = try XCTUnwrap(before[name])
            let large = old.pointee.raw_data.len >= ModelWriter.externalThreshold
            XCTAssertEqual(TensorCodec.isExternal(tensor), large, name)
            if large { moved += 1 }
            if TensorCodec.elementType(ofDataType: tensor.pointee.data_type) != nil {
                XCTAssertEqual(try reloaded.codec.floats(of: tensor).2, try original.codec.floats(of: old).2, name)
            }
        }
        XCTAssertGreaterThan(moved, 0)
    }
}
