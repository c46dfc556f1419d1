import Foundation
import XCTest
@testable import DOConvONNX
import DOConvCore
import CONNXProto

/// Issue 17: DO-Conv layers inside calls of ONNX local functions (fixtures/functions.ts.onnx,
/// written by fixtures/make_function_fixtures.py) are inlined per call site and folded.
final class FunctionInliningTests: XCTestCase {
    private let fixture = TestSupport.fixture("functions.ts.onnx")

    /// The model's packed bytes: equal before and after means nothing in the tree changed.
    private func packed(_ model: ONNXModel) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: onnx__model_proto__get_packed_size(model.proto))
        _ = bytes.withUnsafeMutableBufferPointer { onnx__model_proto__pack(model.proto, $0.baseAddress) }
        return bytes
    }

    func testDetectFindsEveryCallAndLeavesTheModelAlone() throws {
        let model = try ONNXModel.load(path: fixture)
        let before = packed(model)
        let detection = try ONNXFolder.detect(model)
        XCTAssertEqual(detection.layers.map(\.layer.geometry.groups), [1, 8, 2])
        XCTAssertEqual(detection.rejected, [])
        XCTAssertEqual(packed(model), before)
        XCTAssertEqual(model.proto.pointee.n_functions, 2)
    }

    func testFoldInlinesEveryCallAndDropsTheFunctions() throws {
        let model = try ONNXModel.load(path: fixture)
        let summary = try ONNXFolder.fold(model)
        XCTAssertEqual(summary.layers.map(\.kind), [.doConv, .doDConv, .doGConv])
        XCTAssertTrue(summary.layers.allSatisfy(\.verified))
        XCTAssertEqual(summary.rejected, [])
        XCTAssertEqual(TestSupport.opTypes(model), ["Conv", "Relu", "Conv", "Relu", "Conv"])
        XCTAssertEqual(model.proto.pointee.n_functions, 0)
        // Attribute references resolved from each call site.
        let convs = GraphIndex(graph: model.graph).nodes.filter { $0.opType == "Conv" }
        XCTAssertEqual(convs.map { $0.intsAttribute("strides") }, [[1, 1], [2, 2], [1, 1]])
        XCTAssertEqual(convs.map { $0.intAttribute("group") }, [1, 8, 2])
        XCTAssertTrue(convs.allSatisfy { NodeView(pointer: $0.pointer).attribute("strides")?.pointee.ref_attr_name == nil })

        // The saved model loads again as a plain model.
        let directory = try TestSupport.temporaryDirectory(self)
        let out = directory.appendingPathComponent("out.onnx").path
        try model.save(to: out)
        let again = try ONNXModel.load(path: out)
        XCTAssertEqual(try ONNXFolder.detect(again).layers.count, 0)
    }

    func testUndoRestoresTheCalls() throws {
        let model = try ONNXModel.load(path: fixture)
        let before = packed(model)
        let inliner = FunctionInliner(model: model)
        let plan = inliner.plan()
        XCTAssertEqual(plan.calls.count, 3)
        XCTAssertEqual(plan.covered.count, 2)
        let inlining = inliner.inline(plan.calls)
        XCTAssertEqual(TestSupport.opTypes(model).filter { $0 == "Einsum" }.count, 3)
        inlining.undo()
        XCTAssertEqual(packed(model), before)
    }
}
