import CONNXProto
import DOConvCore

/// Checks that a TensorProto's data fits its dims and data type, without decoding it: the
/// dims give a sane element count, the data sits in exactly one place (raw_data, the typed
/// field its data type uses, or an external file inside the model's folder), and that place
/// holds exactly what the dims need. Runs on every tensor of a model at load, so a tensor
/// that lies is refused before anything sizes an allocation by its dims, whether or not the
/// fold reads it.
struct TensorDataCheck {
    let codec: TensorCodec
    private var path: String { codec.resolver.modelPath }

    /// The repeated fields that can hold a tensor's values, as the ONNX schema names them.
    enum TypedField: String, CaseIterable {
        case float_data, int32_data, string_data, int64_data, double_data, uint64_data
    }

    /// How a data type stores its elements: bytes per element in raw_data (nil for strings;
    /// 4-bit types pack two per byte) and the typed field it uses otherwise.
    struct Storage {
        var name: String
        /// Bytes per element; nil for STRING, which has no raw form.
        var byteWidth: Int?
        var field: TypedField
        /// Typed-field values per element (complex types store two).
        var valuesPerElement = 1
        /// Elements per byte in raw_data and per value in int32_data (4-bit types pack two).
        var packing = 1
    }

    /// The storage of ONNX data type `code` (TensorProto.DataType); nil for UNDEFINED and
    /// codes newer than this table, which are then only checked for their dims.
    static func storage(ofDataType code: Int32) -> Storage? {
        switch code {
        case 1: return Storage(name: "FLOAT", byteWidth: 4, field: .float_data)
        case 2: return Storage(name: "UINT8", byteWidth: 1, field: .int32_data)
        case 3: return Storage(name: "INT8", byteWidth: 1, field: .int32_data)
        case 4: return Storage(name: "UINT16", byteWidth: 2, field: .int32_data)
        case 5: return Storage(name: "INT16", byteWidth: 2, field: .int32_data)
        case 6: return Storage(name: "INT32", byteWidth: 4, field: .int32_data)
        case 7: return Storage(name: "INT64", byteWidth: 8, field: .int64_data)
        case 8: return Storage(name: "STRING", byteWidth: nil, field: .string_data)
        case 9: return Storage(name: "BOOL", byteWidth: 1, field: .int32_data)
        case 10: return Storage(name: "FLOAT16", byteWidth: 2, field: .int32_data)
        case 11: return Storage(name: "DOUBLE", byteWidth: 8, field: .double_data)
        case 12: return Storage(name: "UINT32", byteWidth: 4, field: .uint64_data)
        case 13: return Storage(name: "UINT64", byteWidth: 8, field: .uint64_data)
        case 14: return Storage(name: "COMPLEX64", byteWidth: 8, field: .float_data, valuesPerElement: 2)
        case 15: return Storage(name: "COMPLEX128", byteWidth: 16, field: .double_data, valuesPerElement: 2)
        case 16: return Storage(name: "BFLOAT16", byteWidth: 2, field: .int32_data)
        case 17, 18, 19, 20: return Storage(name: "FLOAT8", byteWidth: 1, field: .int32_data)
        case 21: return Storage(name: "UINT4", byteWidth: 1, field: .int32_data, packing: 2)
        case 22: return Storage(name: "INT4", byteWidth: 1, field: .int32_data, packing: 2)
        case 23: return Storage(name: "FLOAT4E2M1", byteWidth: 1, field: .int32_data, packing: 2)
        case 24: return Storage(name: "FLOAT8E8M0", byteWidth: 1, field: .int32_data)
        default: return nil
        }
    }

    /// The name of data type `code`, for messages.
    static func typeName(_ code: Int32) -> String { storage(ofDataType: code)?.name ?? "data type \(code)" }

    /// How many values each typed field of `tensor` holds.
    static func typedCounts(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) -> [(TypedField, Int)] {
        let t = tensor.pointee
        return [(.float_data, t.n_float_data), (.int32_data, t.n_int32_data), (.string_data, t.n_string_data),
                (.int64_data, t.n_int64_data), (.double_data, t.n_double_data), (.uint64_data, t.n_uint64_data)]
    }

    func check(_ tensor: UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) {
        let name = TensorCodec.name(tensor)
        func malformed(_ reason: String) -> ONNXError { .malformed(path: path, reason: "tensor '\(name)' \(reason)") }
        let dims = Proto.elements(tensor.pointee.dims, tensor.pointee.n_dims).map { Int($0) }
        guard let count = Tensor.elementCount(of: dims) else { throw malformed("has invalid dims \(dims)") }

        let typed = Self.typedCounts(of: tensor).filter { $0.1 > 0 }
        if typed.count > 1 {
            throw malformed("has values in both \(typed[0].0.rawValue) and \(typed[1].0.rawValue)")
        }
        let hasRaw = tensor.pointee.has_raw_data != 0 && (tensor.pointee.raw_data.len > 0 || typed.isEmpty)
        if hasRaw, let (field, _) = typed.first { throw malformed("has both raw_data and \(field.rawValue)") }
        let external = TensorCodec.isExternal(tensor)
        if external, hasRaw || !typed.isEmpty {
            throw malformed("keeps its data in an external file and also in \(hasRaw ? "raw_data" : typed[0].0.rawValue)")
        }
        guard let storage = Self.storage(ofDataType: tensor.pointee.data_type) else { return }

        if let (field, values) = typed.first {
            guard field == storage.field else {
                throw malformed("(\(storage.name)) keeps its values in \(field.rawValue), which \(storage.name) does not use (it uses \(storage.field.rawValue) or raw_data)")
            }
            // The field's count is what the file holds: never trust the dims over it.
            let needed = storage.packing > 1 ? (count + storage.packing - 1) / storage.packing : count
            let (wanted, overflow) = needed.multipliedReportingOverflow(by: storage.valuesPerElement)
            guard !overflow, values == wanted || (storage.packing > 1 && values == count) else {
                throw malformed("holds \(values) values in \(field.rawValue) where its dims \(dims) need \(overflow ? "more" : String(wanted))")
            }
            return
        }
        let stored: Int
        if external {
            let reference = try ExternalReference(tensor: tensor, modelPath: path)
            stored = try codec.resolver.region(location: reference.location, offset: reference.offset, length: reference.length).bytes.count
        } else if hasRaw {
            stored = tensor.pointee.raw_data.len
        } else {
            guard count == 0 else { throw malformed("(\(storage.name), dims \(dims)) holds no data") }
            return
        }
        guard let width = storage.byteWidth else { throw malformed("(STRING) has raw or external bytes, which strings cannot use") }
        let elements = storage.packing > 1 ? (count + storage.packing - 1) / storage.packing : count
        let (needed, overflow) = elements.multipliedReportingOverflow(by: width)
        guard !overflow, stored == needed else {
            throw malformed("(\(storage.name)) has \(stored) data bytes where its dims \(dims) need \(overflow ? "more" : String(needed))")
        }
    }
}
