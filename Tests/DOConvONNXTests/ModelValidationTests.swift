#if canImport(Glibc)
import Glibc
#endif
import CONNXProto
import XCTest
@testable import DOConvONNX

/// The load-time checks of tensor data (sizes against dims, one data field, the field the
/// data type uses). The command-line contract for every kind of bad input is in
/// Tests/oracle/test_hostile_inputs.py.
final class ModelValidationTests: XCTestCase {
    let check = TensorDataCheck(codec: TensorCodec(resolver: ExternalDataResolver(modelPath: "/nowhere/model.onnx")))

    /// A float32 tensor [2, 3] in raw_data, changed by `edit`.
    func withTensor(_ edit: (UnsafeMutablePointer<Onnx__TensorProto>) -> Void, _ body: (UnsafeMutablePointer<Onnx__TensorProto>) -> Void) {
        let tensor = TensorCodec.makeTensor(name: "t", shape: [2, 3], type: .float32, values: [Float]([1, 2, 3, 4, 5, 6]))
        defer { Proto.free(tensor) }
        edit(tensor)
        body(tensor)
    }

    func assertMalformed(_ fragment: String, file: StaticString = #filePath, line: UInt = #line,
                         _ edit: (UnsafeMutablePointer<Onnx__TensorProto>) -> Void) {
        withTensor(edit) { tensor in
            guard case .malformed(let path, let reason)? = failure(of: tensor) else {
                return XCTFail("not refused as malformed: \(String(describing: failure(of: tensor)))", file: file, line: line)
            }
            XCTAssertEqual(path, "/nowhere/model.onnx", file: file, line: line)
            XCTAssertTrue(reason.contains(fragment), reason, file: file, line: line)
        }
    }

    /// What the check throws for `tensor`, nil when it passes.
    func failure(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) -> ONNXError? {
        do {
            try check.check(tensor)
            return nil
        } catch {
            return error
        }
    }

    func testAWellFormedTensorPasses() {
        withTensor({ _ in }) { XCTAssertNil(failure(of: $0)) }
    }

    func testDimsThatLieAboutTheDataAreRefused() {
        assertMalformed("has 24 data bytes where its dims [2, 4] need 32") { $0.pointee.dims[1] = 4 }
        assertMalformed("invalid dims [2, -3]") { $0.pointee.dims[1] = -3 }
        assertMalformed("invalid dims") { $0.pointee.dims[0] = 1 << 40; $0.pointee.dims[1] = 1 << 40 }
    }

    func testDataInTheWrongOrInTwoFieldsIsRefused() {
        assertMalformed("both raw_data and float_data") { tensor in
            tensor.pointee.float_data = malloc(6 * 4)!.assumingMemoryBound(to: Float.self)
            tensor.pointee.n_float_data = 6
        }
        assertMalformed("keeps its values in int64_data, which FLOAT does not use") { tensor in
            ProtoMemory.free(tensor.pointee.raw_data.data)
            tensor.pointee.raw_data = .init(len: 0, data: nil)
            tensor.pointee.has_raw_data = 0
            tensor.pointee.int64_data = malloc(6 * 8)!.assumingMemoryBound(to: Int64.self)
            tensor.pointee.n_int64_data = 6
        }
    }

    func testTheStorageTableCoversTheFixedWidthTypes() {
        XCTAssertEqual(TensorDataCheck.storage(ofDataType: 1)?.byteWidth, 4)
        XCTAssertEqual(TensorDataCheck.storage(ofDataType: 7)?.field, .int64_data)
        XCTAssertEqual(TensorDataCheck.storage(ofDataType: 16)?.field, .int32_data)
        XCTAssertNil(TensorDataCheck.storage(ofDataType: 8)?.byteWidth)
        XCTAssertNil(TensorDataCheck.storage(ofDataType: 0))
    }
}
