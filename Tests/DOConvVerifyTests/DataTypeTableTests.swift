import CONNXProto
import DOConvCore
import DOConvGraph
import DOConvONNX
import XCTest

/// Issue 14, item 5: ONNX data type codes come from one table built on protoc-c's enum
/// constants; the graph IR's own numbering (it follows ONNX semantics, without protobuf)
/// must agree with it code for code.
final class DataTypeTableTests: XCTestCase {
    func testGraphDataTypesAgreeWithTheGeneratedEnum() {
        let expected: [DataType: Onnx__TensorProto__DataType] = [
            .float: ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, .uint8: ONNX__TENSOR_PROTO__DATA_TYPE__UINT8,
            .int8: ONNX__TENSOR_PROTO__DATA_TYPE__INT8, .uint16: ONNX__TENSOR_PROTO__DATA_TYPE__UINT16,
            .int16: ONNX__TENSOR_PROTO__DATA_TYPE__INT16, .int32: ONNX__TENSOR_PROTO__DATA_TYPE__INT32,
            .int64: ONNX__TENSOR_PROTO__DATA_TYPE__INT64, .string: ONNX__TENSOR_PROTO__DATA_TYPE__STRING,
            .bool: ONNX__TENSOR_PROTO__DATA_TYPE__BOOL, .float16: ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16,
            .double: ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE, .uint32: ONNX__TENSOR_PROTO__DATA_TYPE__UINT32,
            .uint64: ONNX__TENSOR_PROTO__DATA_TYPE__UINT64, .complex64: ONNX__TENSOR_PROTO__DATA_TYPE__COMPLEX64,
            .complex128: ONNX__TENSOR_PROTO__DATA_TYPE__COMPLEX128, .bfloat16: ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16,
        ]
        XCTAssertEqual(Set(expected.keys), Set(DataType.allCases))
        for (type, code) in expected {
            XCTAssertEqual(type.rawValue, Int32(code.rawValue), "\(type)")
            XCTAssertNotNil(ONNXDataType.table[type.rawValue], "\(type) has no entry in the ONNX table")
        }
    }

    func testTheTableMapsTheFoldsElementTypesBothWays() {
        for type in ElementType.allCases {
            XCTAssertEqual(ONNXDataType.elementType(of: ONNXDataType.code(of: type)), type)
            XCTAssertEqual(ONNXDataType.table[ONNXDataType.code(of: type)]?.byteWidth, type.byteWidth)
        }
        XCTAssertEqual(ONNXDataType.code(of: .float32), Int32(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT.rawValue))
        XCTAssertEqual(ONNXDataType.code(of: .bfloat16), Int32(ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16.rawValue))
    }
}
