import CONNXProto
import DOConvCore

/// ONNX's TensorProto.DataType codes: the one table of what each code means to doconv, built
/// on the enum constants protoc-c generates from schemas/onnx.proto, so no code is written
/// as a number anywhere else.
package enum ONNXDataType {
    /// The repeated fields that can hold a tensor's values, as the ONNX schema names them.
    package enum TypedField: String, CaseIterable, Sendable {
        case float_data, int32_data, string_data, int64_data, double_data, uint64_data
    }

    /// How a data type stores its elements.
    package struct Info: Sendable {
        /// The schema's name ("FLOAT", "INT64", ...).
        package var name: String
        /// Bytes per element in raw_data; nil for STRING, which has no raw form.
        package var byteWidth: Int?
        /// The typed field it uses when not in raw_data.
        package var field: TypedField
        /// Typed-field values per element (complex types store two).
        package var valuesPerElement = 1
        /// Elements per byte in raw_data and per value in int32_data (4-bit types pack two).
        package var packing = 1
        /// The core's element type, for the float types the fold handles.
        package var element: ElementType?
    }

    private static func code(_ value: Onnx__TensorProto__DataType) -> Int32 { Int32(value.rawValue) }

    package static let float = code(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
    package static let int64 = code(ONNX__TENSOR_PROTO__DATA_TYPE__INT64)

    /// Every code doconv knows; codes newer than this table are only checked for their dims.
    package static let table: [Int32: Info] = {
        var table: [Int32: Info] = [:]
        func add(_ value: Onnx__TensorProto__DataType, _ info: Info) { table[code(value)] = info }
        add(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, Info(name: "FLOAT", byteWidth: 4, field: .float_data, element: .float32))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, Info(name: "UINT8", byteWidth: 1, field: .int32_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__INT8, Info(name: "INT8", byteWidth: 1, field: .int32_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__UINT16, Info(name: "UINT16", byteWidth: 2, field: .int32_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__INT16, Info(name: "INT16", byteWidth: 2, field: .int32_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__INT32, Info(name: "INT32", byteWidth: 4, field: .int32_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__INT64, Info(name: "INT64", byteWidth: 8, field: .int64_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__STRING, Info(name: "STRING", byteWidth: nil, field: .string_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__BOOL, Info(name: "BOOL", byteWidth: 1, field: .int32_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16, Info(name: "FLOAT16", byteWidth: 2, field: .int32_data, element: .float16))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE, Info(name: "DOUBLE", byteWidth: 8, field: .double_data, element: .float64))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__UINT32, Info(name: "UINT32", byteWidth: 4, field: .uint64_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__UINT64, Info(name: "UINT64", byteWidth: 8, field: .uint64_data))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__COMPLEX64, Info(name: "COMPLEX64", byteWidth: 8, field: .float_data, valuesPerElement: 2))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__COMPLEX128, Info(name: "COMPLEX128", byteWidth: 16, field: .double_data, valuesPerElement: 2))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16, Info(name: "BFLOAT16", byteWidth: 2, field: .int32_data, element: .bfloat16))
        for float8 in [ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E4M3FN, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E4M3FNUZ,
                       ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E5M2, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E5M2FNUZ] {
            add(float8, Info(name: "FLOAT8", byteWidth: 1, field: .int32_data))
        }
        add(ONNX__TENSOR_PROTO__DATA_TYPE__UINT4, Info(name: "UINT4", byteWidth: 1, field: .int32_data, packing: 2))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__INT4, Info(name: "INT4", byteWidth: 1, field: .int32_data, packing: 2))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT4E2M1, Info(name: "FLOAT4E2M1", byteWidth: 1, field: .int32_data, packing: 2))
        add(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E8M0, Info(name: "FLOAT8E8M0", byteWidth: 1, field: .int32_data))
        return table
    }()

    /// The core's element type of a code, for the float types the fold handles.
    package static func elementType(of code: Int32) -> ElementType? { table[code]?.element }

    /// The code of a core element type.
    package static func code(of type: ElementType) -> Int32 {
        // Every ElementType has an entry; FLOAT is only the unreachable fallback.
        table.first { $0.value.element == type }?.key ?? float
    }

    /// The name of a code, for messages.
    package static func name(of code: Int32) -> String { table[code]?.name ?? "data type \(code)" }
}
