import CONNXProto
import CProtobufC
import DOConvGraph
import Dispatch
import DOConvONNX
import DOConvVerify

/// Converts a loaded ONNX model into DOConvGraph's IR: nodes with typed attributes,
/// initializers decoded (every element type; raw, typed-field or external data), graph
/// inputs and outputs with their declared shapes, opsets and metadata.
public enum ONNXGraphImport {
    /// Subgraphs nested deeper than this are refused (a hostile file could recurse forever).
    static let maxDepth = 16

    /// The model's main graph as IR.
    ///
    /// `sharing`: initializers of another graph (ORIGINAL, when this is FOLDED); one with the
    /// same name and equal contents is taken from there, so the two graphs hold one float64
    /// copy of every weight the fold left alone.
    public static func graph(of model: ONNXModel, sharing: [String: TensorValue] = [:]) throws(ONNXError) -> Graph {
        var importer = Importer(codec: model.codec, path: model.path)
        importer.shared = sharing
        importer.decoded = { model.releaseMappedPages(of: $0) }
        var graph = try importer.graph(model.graph, depth: 0)
        var opsets: [String: Int64] = [:]
        for entry in Proto.elements(model.proto.pointee.opset_import, model.proto.pointee.n_opset_import) {
            guard let entry else { continue }
            let domain = Proto.string(entry.pointee.domain)
            opsets[domain == "ai.onnx" ? "" : domain] = entry.pointee.version
        }
        graph.opsets = opsets
        graph.metadata = Proto.elements(model.proto.pointee.metadata_props, model.proto.pointee.n_metadata_props).compactMap { entry in
            entry.map { (key: Proto.string($0.pointee.key), value: Proto.string($0.pointee.value)) }
        }
        for function in Proto.elements(model.proto.pointee.functions, model.proto.pointee.n_functions) {
            if let function { graph.functions.append(try importer.function(function)) }
        }
        return graph
    }

    /// Loads the model at `path` and converts it.
    public static func load(path: String, sharing: [String: TensorValue] = [:]) throws(ONNXError) -> Graph {
        try graph(of: try ONNXModel.load(path: path), sharing: sharing)
    }

    /// The main graph's IR version and producer, for reports.
    public static func modelInfo(of model: ONNXModel) -> (irVersion: Int64, producer: String) {
        (model.proto.pointee.ir_version, Proto.string(model.proto.pointee.producer_name))
    }
}

private struct Importer {
    let codec: TensorCodec
    let path: String
    var shared: [String: TensorValue] = [:]
    /// Called with each initializer once its values are decoded (the model's mapped pages of
    /// it can go).
    var decoded: (UnsafeMutablePointer<Onnx__TensorProto>) -> Void = { _ in }

    func malformed(_ reason: String) -> ONNXError { .malformed(path: path, reason: reason) }

    func graph(_ g: UnsafeMutablePointer<Onnx__GraphProto>, depth: Int) throws(ONNXError) -> Graph {
        guard depth <= ONNXGraphImport.maxDepth else { throw malformed("subgraphs nest deeper than \(ONNXGraphImport.maxDepth) levels") }
        var nodes: [Node] = []
        for pointer in Proto.elements(g.pointee.node, g.pointee.n_node) {
            guard let pointer else { continue }
            nodes.append(try node(pointer, depth: depth).node)
        }
        var initializers: [(String, TensorValue)] = []
        for tensor in Proto.elements(g.pointee.initializer, g.pointee.n_initializer) {
            guard let tensor else { continue }
            let name = TensorCodec.name(tensor)
            let value = try self.tensor(tensor)
            decoded(tensor)
            initializers.append((name, shared[name].flatMap { $0 == value ? $0 : nil } ?? value))
        }
        if g.pointee.n_sparse_initializer > 0 {
            throw ONNXError.malformed(path: path, reason: "sparse initializers are not supported")
        }
        let inputs = Proto.elements(g.pointee.input, g.pointee.n_input).compactMap { $0.map(valueInfo) }
        let outputs = Proto.elements(g.pointee.output, g.pointee.n_output).compactMap { $0.map(valueInfo) }
        return Graph(name: Proto.string(g.pointee.name), nodes: nodes, initializers: initializers, inputs: inputs, outputs: outputs)
    }

    /// One node, and its attributes that refer to an attribute of the calling function
    /// (`ref_attr_name`, only meaningful in a function body): those hold a placeholder.
    func node(_ pointer: UnsafeMutablePointer<Onnx__NodeProto>, depth: Int) throws(ONNXError) -> (node: Node, references: [(name: String, reference: String)]) {
        let view = NodeView(pointer: pointer)
        var attributes: [(name: String, value: Attribute)] = []
        var references: [(name: String, reference: String)] = []
        for attribute in Proto.elements(pointer.pointee.attribute, pointer.pointee.n_attribute) {
            guard let attribute else { continue }
            let name = Proto.string(attribute.pointee.name)
            let reference = Proto.string(attribute.pointee.ref_attr_name)
            if reference.isEmpty {
                attributes.append((name, try self.attribute(attribute, depth: depth)))
            } else {
                attributes.append((name, .other(summary: "reference to the calling function's attribute '\(reference)'", bytes: Array(reference.utf8))))
                references.append((name, reference))
            }
        }
        var node = Node(opType: view.opType, domain: Proto.string(pointer.pointee.domain), name: view.name,
                        inputs: view.inputs, outputs: view.outputs, attributes: attributes)
        node.overload = Proto.string(pointer.pointee.overload)
        return (node, references)
    }

    /// A local function: its interface, attribute defaults, body and opsets.
    func function(_ f: UnsafeMutablePointer<Onnx__FunctionProto>) throws(ONNXError) -> LocalFunction {
        var nodes: [Node] = []
        var references: [[(name: String, reference: String)]] = []
        for pointer in Proto.elements(f.pointee.node, f.pointee.n_node) {
            guard let pointer else { continue }
            let (node, refs) = try node(pointer, depth: 1)
            nodes.append(node)
            references.append(refs)
        }
        var defaults: [(name: String, value: Attribute)] = []
        for attribute in Proto.elements(f.pointee.attribute_proto, f.pointee.n_attribute_proto) {
            guard let attribute else { continue }
            defaults.append((Proto.string(attribute.pointee.name), try self.attribute(attribute, depth: 1)))
        }
        var opsets: [String: Int64] = [:]
        for entry in Proto.elements(f.pointee.opset_import, f.pointee.n_opset_import) {
            guard let entry else { continue }
            let domain = Proto.string(entry.pointee.domain)
            opsets[domain == "ai.onnx" ? "" : domain] = entry.pointee.version
        }
        return LocalFunction(domain: Proto.string(f.pointee.domain), name: Proto.string(f.pointee.name), overload: Proto.string(f.pointee.overload),
                             inputs: Proto.elements(f.pointee.input, f.pointee.n_input).map { Proto.string($0) },
                             outputs: Proto.elements(f.pointee.output, f.pointee.n_output).map { Proto.string($0) },
                             attributeDefaults: defaults, nodes: nodes, attributeReferences: references, opsets: opsets)
    }

    func valueInfo(_ info: UnsafeMutablePointer<Onnx__ValueInfoProto>) -> ValueInfo {
        let name = Proto.string(info.pointee.name)
        guard let type = info.pointee.type, type.pointee.value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE,
              let tensorType = type.pointee.tensor_type else {
            return ValueInfo(name: name, type: nil, shape: nil)
        }
        let element = tensorType.pointee.has_elem_type != 0 ? DataType(rawValue: tensorType.pointee.elem_type) : nil
        guard let shape = tensorType.pointee.shape else { return ValueInfo(name: name, type: element, shape: nil) }
        let dims: [Dimension] = Proto.elements(shape.pointee.dim, shape.pointee.n_dim).map { dim in
            guard let dim else { return .unknown }
            switch dim.pointee.value_case {
            case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE: return .fixed(Int(clamping: dim.pointee.dim_value))
            case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM:
                let param = Proto.string(dim.pointee.dim_param)
                return param.isEmpty ? .unknown : .symbolic(param)
            default: return .unknown
            }
        }
        return ValueInfo(name: name, type: element, shape: dims)
    }

    func attribute(_ a: UnsafeMutablePointer<Onnx__AttributeProto>, depth: Int) throws(ONNXError) -> Attribute {
        let p = a.pointee
        var type = p.has_type != 0 ? p.type : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED
        if type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED {
            // Old files leave the type unset: infer it from the field that is set.
            if p.has_f != 0 { type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT } else if p.has_i != 0 { type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT } else if p.has_s != 0 { type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING } else if p.t != nil { type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR } else if p.g != nil { type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH } else if p.n_floats > 0 { type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS } else if p.n_ints > 0 { type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS } else if p.n_strings > 0 { type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS }
        }
        switch type {
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: return .float(Double(p.f))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: return .int(p.i)
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: return .string(Self.string(p.s))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR:
            guard let t = p.t else { throw malformed("attribute '\(Proto.string(p.name))' has no tensor") }
            return .tensor(try tensor(t))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH:
            guard let g = p.g else { throw malformed("attribute '\(Proto.string(p.name))' has no graph") }
            return .graph(try graph(g, depth: depth + 1))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS: return .floats(Proto.elements(p.floats, p.n_floats).map { Double($0) })
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS: return .ints(Array(Proto.elements(p.ints, p.n_ints)))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS: return .strings(Proto.elements(p.strings, p.n_strings).map(Self.string))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS:
            var tensors: [TensorValue] = []
            for t in Proto.elements(p.tensors, p.n_tensors) { if let t { tensors.append(try tensor(t)) } }
            return .tensors(tensors)
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS:
            var graphs: [Graph] = []
            for g in Proto.elements(p.graphs, p.n_graphs) { if let g { graphs.append(try graph(g, depth: depth + 1)) } }
            return .graphs(graphs)
        default:
            // Sparse tensors and type protos: kept as the attribute's own serialized bytes.
            let message = UnsafeMutableRawPointer(a).assumingMemoryBound(to: ProtobufCMessage.self)
            let size = protobuf_c_message_get_packed_size(message)
            var bytes = [UInt8](repeating: 0, count: size)
            _ = bytes.withUnsafeMutableBufferPointer { protobuf_c_message_pack(message, $0.baseAddress) }
            return .other(summary: "attribute of type \(type.rawValue)", bytes: bytes)
        }
    }

    static func string(_ data: ProtobufCBinaryData) -> String {
        guard data.len > 0, let bytes = data.data else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: data.len), as: UTF8.self)
    }

    /// Decodes any TensorProto.
    func tensor(_ t: UnsafeMutablePointer<Onnx__TensorProto>) throws(ONNXError) -> TensorValue {
        let name = TensorCodec.name(t)
        let shape = try codec.shape(of: t)
        let count = shape.reduce(1, *)
        let code = t.pointee.data_type
        guard let type = DataType(rawValue: code) else { throw malformed("tensor '\(name)' has unknown data type \(code)") }
        let p = t.pointee
        func mismatch(_ actual: Int) -> ONNXError { malformed("tensor '\(name)' holds \(actual) values where its shape \(shape) needs \(count)") }
        if let stored = try codec.storedBytes(of: t) {
            // Widths come from the format's one table of codes.
            guard let width = ONNXDataType.table[code]?.byteWidth else { throw malformed("tensor '\(name)' is a string tensor with raw data") }
            guard stored.count == count * width else { throw mismatch(stored.count / max(width, 1)) }
            func load<T: FixedWidthInteger>(_: T.Type, _ k: Int) -> T { T(littleEndian: stored.loadUnaligned(fromByteOffset: k * width, as: T.self)) }
            switch type {
            case .float:
                // The bulk of a model: one pass over the bytes into the new array, large
                // tensors in slices on all cores (the pass is mostly page faults and stores).
                let values = [Double](unsafeUninitializedCapacity: count) { buffer, initialized in
                    guard let target = buffer.baseAddress else { initialized = 0; return }
                    // Each slice writes its own range of `target`.
                    nonisolated(unsafe) let (destination, source) = (target, UnsafeRawBufferPointer(stored))
                    let slices = count >= 1 << 19 ? ReferenceExecutor.defaultThreads : 1
                    let slice = (count + slices - 1) / slices
                    DispatchQueue.concurrentPerform(iterations: slices) { s in
                        for k in (s * slice)..<min(count, (s + 1) * slice) {
                            destination[k] = Double(Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))))
                        }
                    }
                    initialized = count
                }
                return TensorValue(type, shape: shape, floats: values)
            case .double: return TensorValue(type, shape: shape, floats: (0..<count).map { Double(bitPattern: load(UInt64.self, $0)) })
            case .float16: return TensorValue(type, shape: shape, floats: (0..<count).map { Double(Float16(bitPattern: load(UInt16.self, $0))) })
            case .bfloat16: return TensorValue(type, shape: shape, floats: (0..<count).map { Double(Float(bitPattern: UInt32(load(UInt16.self, $0)) << 16)) })
            case .bool: return TensorValue(type, shape: shape, ints: (0..<count).map { load(UInt8.self, $0) != 0 ? 1 : 0 })
            case .int8: return TensorValue(type, shape: shape, ints: (0..<count).map { Int64(load(Int8.self, $0)) })
            case .uint8: return TensorValue(type, shape: shape, ints: (0..<count).map { Int64(load(UInt8.self, $0)) })
            case .int16: return TensorValue(type, shape: shape, ints: (0..<count).map { Int64(load(Int16.self, $0)) })
            case .uint16: return TensorValue(type, shape: shape, ints: (0..<count).map { Int64(load(UInt16.self, $0)) })
            case .int32: return TensorValue(type, shape: shape, ints: (0..<count).map { Int64(load(Int32.self, $0)) })
            case .uint32: return TensorValue(type, shape: shape, ints: (0..<count).map { Int64(load(UInt32.self, $0)) })
            case .int64: return TensorValue(type, shape: shape, ints: (0..<count).map { load(Int64.self, $0) })
            case .uint64: return TensorValue(type, shape: shape, ints: (0..<count).map { Int64(bitPattern: load(UInt64.self, $0)) })
            default: return TensorValue(type: type, shape: shape, storage: .opaque(Array(stored)))
            }
        }
        switch type {
        case .float:
            guard p.n_float_data == count else { throw mismatch(p.n_float_data) }
            return TensorValue(type, shape: shape, floats: Proto.elements(p.float_data, p.n_float_data).map { Double($0) })
        case .double:
            guard p.n_double_data == count else { throw mismatch(p.n_double_data) }
            return TensorValue(type, shape: shape, floats: Array(Proto.elements(p.double_data, p.n_double_data)))
        case .float16, .bfloat16:
            guard p.n_int32_data == count else { throw mismatch(p.n_int32_data) }
            let bits = Proto.elements(p.int32_data, p.n_int32_data).map { UInt16(truncatingIfNeeded: $0) }
            return TensorValue(type, shape: shape, floats: bits.map { type == .float16 ? Double(Float16(bitPattern: $0)) : Double(Float(bitPattern: UInt32($0) << 16)) })
        case .bool, .int8, .uint8, .int16, .uint16, .int32:
            guard p.n_int32_data == count else { throw mismatch(p.n_int32_data) }
            return TensorValue(type, shape: shape, ints: Proto.elements(p.int32_data, p.n_int32_data).map { type.wrapped(Int64($0)) })
        case .int64:
            guard p.n_int64_data == count else { throw mismatch(p.n_int64_data) }
            return TensorValue(type, shape: shape, ints: Array(Proto.elements(p.int64_data, p.n_int64_data)))
        case .uint32, .uint64:
            guard p.n_uint64_data == count else { throw mismatch(p.n_uint64_data) }
            return TensorValue(type, shape: shape, ints: Proto.elements(p.uint64_data, p.n_uint64_data).map { Int64(bitPattern: $0) })
        case .string:
            var bytes: [UInt8] = []
            for s in Proto.elements(p.string_data, p.n_string_data) {
                bytes += withUnsafeBytes(of: UInt64(s.len).littleEndian) { Array($0) }
                if s.len > 0, let data = s.data { bytes += UnsafeBufferPointer(start: data, count: s.len) }
            }
            return TensorValue(type: type, shape: shape, storage: .opaque(bytes))
        case .complex64:
            return TensorValue(type: type, shape: shape, storage: .opaque(Proto.elements(p.float_data, p.n_float_data).flatMap { withUnsafeBytes(of: $0.bitPattern) { Array($0) } }))
        case .complex128:
            return TensorValue(type: type, shape: shape, storage: .opaque(Proto.elements(p.double_data, p.n_double_data).flatMap { withUnsafeBytes(of: $0.bitPattern) { Array($0) } }))
        }
    }
}

