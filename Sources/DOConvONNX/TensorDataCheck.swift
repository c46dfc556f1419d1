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

    typealias TypedField = ONNXDataType.TypedField
    typealias Storage = ONNXDataType.Info

    /// The storage of ONNX data type `code` (TensorProto.DataType); nil for UNDEFINED and
    /// codes newer than the table, which are then only checked for their dims.
    static func storage(ofDataType code: Int32) -> Storage? { ONNXDataType.table[code] }

    /// The name of data type `code`, for messages.
    static func typeName(_ code: Int32) -> String { ONNXDataType.name(of: code) }

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
