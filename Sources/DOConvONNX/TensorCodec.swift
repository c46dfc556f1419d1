#if canImport(Glibc)
import DOConvFileIO
import Glibc
#endif
import CONNXProto
import CProtobufC
import DOConvCore

/// Converts TensorProto messages to the core's types and back, wherever the data lives
/// (raw_data, the typed fields, or an external file).
package struct TensorCodec {
    let resolver: ExternalDataResolver
    /// The model file, when raw_data may point into it.
    var mapping: MappedFile? = nil
    private var path: String { resolver.modelPath }

    /// The element type of an ONNX data type code, for the float types the fold handles.
    static func elementType(ofDataType code: Int32) -> ElementType? { ONNXDataType.elementType(of: code) }

    static func dataType(of type: ElementType) -> Int32 { ONNXDataType.code(of: type) }

    package static func name(_ tensor: UnsafeMutablePointer<Onnx__TensorProto>) -> String { Proto.string(tensor.pointee.name) }

    static func isExternal(_ tensor: UnsafeMutablePointer<Onnx__TensorProto>) -> Bool {
        tensor.pointee.has_data_location != 0 && tensor.pointee.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
    }

    /// The tensor's dims, checked: non-negative, with an element count that does not overflow.
    package func shape(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> [Int] {
        let dims = Proto.elements(tensor.pointee.dims, tensor.pointee.n_dims).map { Int($0) }
        guard Tensor.elementCount(of: dims) != nil else {
            throw .malformed(path: path, reason: "tensor '\(Self.name(tensor))' has invalid dims \(dims)")
        }
        return dims
    }

    /// A float tensor's element type, shape and values (as Float).
    func floats(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> (ElementType, [Int], [Float]) {
        let name = Self.name(tensor)
        guard let type = Self.elementType(ofDataType: tensor.pointee.data_type) else {
            throw .malformed(path: path, reason: "tensor '\(name)' has data type \(tensor.pointee.data_type), not a float type")
        }
        let shape = try shape(of: tensor)
        let stored = try storedBytes(of: tensor)
        do {
            return (type, shape, try Self.decodeFloats(tensor, stored: stored, type: type, shape: shape))
        } catch {
            throw .malformed(path: path, reason: "tensor '\(name)': \(error)")
        }
    }

    /// A float64 tensor's values, exactly (raw, external or double_data).
    func doubles(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> [Double] {
        let name = Self.name(tensor)
        let count = Tensor.elementCount(of: try shape(of: tensor)) ?? 0
        if let bytes = try storedBytes(of: tensor) {
            guard count <= Int.max / 8, bytes.count == count * 8 else {
                throw .malformed(path: path, reason: "tensor '\(name)' has \(bytes.count) data bytes where its shape needs \(count) DOUBLE values")
            }
            return (0..<count).map { Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) }
        }
        guard tensor.pointee.n_double_data == count else {
            throw .malformed(path: path, reason: "tensor '\(name)' holds \(tensor.pointee.n_double_data) values where its shape needs \(count)")
        }
        return Array(Proto.elements(tensor.pointee.double_data, tensor.pointee.n_double_data))
    }

    /// A float tensor's element type, shape and values. float32 bytes in a mapped file
    /// (external data, or raw_data left in the model file) are borrowed where they lie, with
    /// no decoding copy; anything else is decoded.
    func floatValues(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> (ElementType, [Int], FloatValues) {
        if tensor.pointee.data_type == Self.dataType(of: .float32), let (bytes, mapping) = try mappedRegion(of: tensor) {
            let shape = try shape(of: tensor)
            do {
                return (.float32, shape, try FloatValues(borrowing: bytes, count: Tensor.elementCount(of: shape) ?? 0, owner: mapping))
            } catch {
                throw .malformed(path: path, reason: "tensor '\(Self.name(tensor))': \(error)")
            }
        }
        let (type, shape, values) = try floats(of: tensor)
        return (type, shape, FloatValues(values))
    }

    /// Float values from raw or external bytes when there are any, else from the typed field
    /// the data type uses.
    private static func decodeFloats(_ tensor: UnsafeMutablePointer<Onnx__TensorProto>, stored: UnsafeRawBufferPointer?,
                                     type: ElementType, shape: [Int]) throws(TensorError) -> [Float] {
        let count = Tensor.elementCount(of: shape) ?? 0
        if let stored { return try ElementCodec.decode(stored, as: type, count: count) }
        let t = tensor.pointee
        switch type {
        case .float32 where t.n_float_data == count:
            return Array(Proto.elements(t.float_data, t.n_float_data))
        case .float64 where t.n_double_data == count:
            return Proto.elements(t.double_data, t.n_double_data).map { Float($0) }
        case .float16 where t.n_int32_data == count, .bfloat16 where t.n_int32_data == count:
            // Half types keep their bit patterns in the low 16 bits of int32_data.
            return Proto.elements(t.int32_data, t.n_int32_data).map { ElementCodec.float(halfBits: UInt16(truncatingIfNeeded: $0), as: type) }
        default:
            throw .elementCountMismatch(shape: shape, actual: [t.n_float_data, t.n_double_data, t.n_int32_data].max() ?? 0)
        }
    }

    /// An INT64 tensor's values (for shapes and permutations).
    func int64s(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> [Int64] {
        let name = Self.name(tensor)
        guard tensor.pointee.data_type == ONNXDataType.int64 else {
            throw .malformed(path: path, reason: "tensor '\(name)' is not INT64")
        }
        let count = Tensor.elementCount(of: try shape(of: tensor)) ?? 0
        if let bytes = try storedBytes(of: tensor) {
            guard count <= Int.max / 8, bytes.count == count * 8 else {
                throw .malformed(path: path, reason: "tensor '\(name)' has \(bytes.count) data bytes where its shape needs \(count) INT64 values")
            }
            return (0..<count).map { Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
        }
        guard tensor.pointee.n_int64_data == count else {
            throw .malformed(path: path, reason: "tensor '\(name)' holds \(tensor.pointee.n_int64_data) values where its shape needs \(count)")
        }
        return Array(Proto.elements(tensor.pointee.int64_data, tensor.pointee.n_int64_data))
    }

    /// The tensor's bytes when they are in raw_data or an external file; nil when the data
    /// is in a typed field.
    package func storedBytes(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> UnsafeRawBufferPointer? {
        if Self.isExternal(tensor) {
            let reference = try ExternalReference(tensor: tensor, modelPath: path)
            return try resolver.bytes(location: reference.location, offset: reference.offset, length: reference.length)
        }
        let raw = tensor.pointee.raw_data
        guard tensor.pointee.has_raw_data != 0 else { return nil }
        return UnsafeRawBufferPointer(start: raw.data, count: raw.len)
    }

    /// The tensor's bytes and the mapped file holding them, when they are in one (external
    /// data, or raw_data left in the model file); nil otherwise.
    func mappedRegion(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> (bytes: UnsafeRawBufferPointer, mapping: MappedFile)? {
        if Self.isExternal(tensor) {
            let reference = try ExternalReference(tensor: tensor, modelPath: path)
            return try resolver.region(location: reference.location, offset: reference.offset, length: reference.length)
        }
        guard tensor.pointee.has_raw_data != 0, let mapping else { return nil }
        let bytes = UnsafeRawBufferPointer(start: tensor.pointee.raw_data.data, count: tensor.pointee.raw_data.len)
        return mapping.offset(of: bytes) != nil ? (bytes, mapping) : nil
    }

    /// A new float tensor message (malloc'd) holding `values` as `type` in raw_data.
    static func makeTensor(name: String, shape: [Int], type: ElementType, values: [Float]) -> UnsafeMutablePointer<Onnx__TensorProto> {
        let tensor = Proto.make { (tensor: UnsafeMutablePointer<Onnx__TensorProto>) in
            onnx__tensor_proto__init(tensor)
            tensor.pointee.name = Proto.duplicate(name)
        }
        store(values, shape: shape, type: type, in: tensor)
        return tensor
    }

    /// A new initializer holding float64-computed `values` as `type`: exactly for float64,
    /// else rounded once through float32 as the Float version stores them.
    static func makeTensor(name: String, shape: [Int], type: ElementType, doubles values: [Double]) -> UnsafeMutablePointer<Onnx__TensorProto> {
        let tensor = makeTensor(name: name, shape: shape, type: type, values: type == .float64 ? [] : values.map(Float.init))
        if type == .float64 { store(values, shape: shape, in: tensor) }
        return tensor
    }

    /// Replaces a tensor message's type, dims and data with `values` as `type` in raw_data.
    static func store(_ values: [Float], shape: [Int], type: ElementType, in tensor: UnsafeMutablePointer<Onnx__TensorProto>) {
        store(bytes: ElementCodec.encode(values, as: type), shape: shape, type: type, in: tensor)
    }

    /// Replaces a tensor message's type, dims and data with float64 `values` in raw_data.
    static func store(_ values: [Double], shape: [Int], in tensor: UnsafeMutablePointer<Onnx__TensorProto>) {
        store(bytes: values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }, shape: shape, type: .float64, in: tensor)
    }

    private static func store(bytes: [UInt8], shape: [Int], type: ElementType, in tensor: UnsafeMutablePointer<Onnx__TensorProto>) {
        tensor.pointee.has_data_type = 1
        tensor.pointee.data_type = dataType(of: type)
        free(tensor.pointee.dims)
        let dims = malloc(max(1, shape.count) * 8)!.assumingMemoryBound(to: Int64.self)
        for (k, dim) in shape.enumerated() { dims[k] = Int64(dim) }
        tensor.pointee.n_dims = shape.count
        tensor.pointee.dims = dims
        if tensor.pointee.has_raw_data != 0 { ProtoMemory.free(tensor.pointee.raw_data.data) } // may lie in the mapped input
        let data = malloc(max(1, bytes.count))!.assumingMemoryBound(to: UInt8.self)
        bytes.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: bytes.count) }
        tensor.pointee.has_raw_data = 1
        tensor.pointee.raw_data = ProtobufCBinaryData(len: bytes.count, data: data)
    }

    /// Makes `tensor` hold `layer`'s folded kernel (OIHW, as `type`) in raw_data, folding
    /// straight into the tensor's new bytes.
    /// Throws `.outOfMemory` when the kernel's bytes cannot be had (`path` names the model).
    static func storeKernel(of layer: DOConvLayer, type: ElementType, in tensor: UnsafeMutablePointer<Onnx__TensorProto>, path: String) throws(ONNXError) {
        KernelStorage.fold(layer, as: type, into: try placeKernel(of: layer, type: type, in: tensor, path: path))
    }

    /// Makes `tensor` the shape and type of `layer`'s folded kernel, with raw_data bytes for
    /// it that are not filled yet: the caller folds into them.
    /// Throws `.outOfMemory` when the kernel's bytes cannot be had (`path` names the model).
    static func placeKernel(of layer: DOConvLayer, type: ElementType, in tensor: UnsafeMutablePointer<Onnx__TensorProto>,
                            path: String) throws(ONNXError) -> UnsafeMutableRawBufferPointer {
        let g = layer.geometry
        let shape = [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth]
        tensor.pointee.has_data_type = 1
        tensor.pointee.data_type = dataType(of: type)
        free(tensor.pointee.dims)
        let dims = malloc(shape.count * 8)!.assumingMemoryBound(to: Int64.self)
        for (k, dim) in shape.enumerated() { dims[k] = Int64(dim) }
        tensor.pointee.n_dims = shape.count
        tensor.pointee.dims = dims
        if tensor.pointee.has_raw_data != 0 { ProtoMemory.free(tensor.pointee.raw_data.data) }
        let byteCount = g.kernelCount * type.byteWidth
        guard let data = KernelMemory.allocate(byteCount: byteCount) else {
            throw .outOfMemory(path: path, what: "the folded kernel '\(TensorCodec.name(tensor))'", byteCount: byteCount)
        }
        tensor.pointee.has_raw_data = 1
        tensor.pointee.raw_data = ProtobufCBinaryData(len: byteCount, data: data.assumingMemoryBound(to: UInt8.self))
        return UnsafeMutableRawBufferPointer(start: data, count: byteCount)
    }
}

/// A tensor's `external_data` entries, parsed and checked.
struct ExternalReference {
    var location: String
    var offset: Int
    var length: Int?

    init(tensor: UnsafeMutablePointer<Onnx__TensorProto>, modelPath: String) throws(ONNXError) {
        var location: String?
        var offset = 0
        var length: Int?
        let name = TensorCodec.name(tensor)
        for entry in Proto.elements(tensor.pointee.external_data, tensor.pointee.n_external_data) {
            guard let entry else { continue }
            let value = Proto.string(entry.pointee.value)
            switch Proto.string(entry.pointee.key) {
            case "location": location = value
            case "offset":
                guard let v = Int(value), v >= 0 else { throw .externalData(path: modelPath, reason: "tensor '\(name)' has invalid offset '\(value)'") }
                offset = v
            case "length":
                guard let v = Int(value), v >= 0 else { throw .externalData(path: modelPath, reason: "tensor '\(name)' has invalid length '\(value)'") }
                length = v
            default: break
            }
        }
        guard let location else { throw .externalData(path: modelPath, reason: "tensor '\(name)' has no location") }
        self.location = location
        self.offset = offset
        self.length = length
    }
}
