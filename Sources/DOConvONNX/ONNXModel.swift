import CONNXProto
import CProtobufC
import DOConvCore

/// An ONNX model held as protobuf-c's unpacked message tree, with the external data of the
/// file it came from.
public final class ONNXModel {
    /// The file the model was read from.
    public let path: String
    /// Size of the model file in bytes (external data not included).
    public let fileSize: Int
    let proto: UnsafeMutablePointer<Onnx__ModelProto>
    let graph: UnsafeMutablePointer<Onnx__GraphProto>
    let resolver: ExternalDataResolver
    var codec: TensorCodec { TensorCodec(resolver: resolver) }
    /// Tensors (by address) that saving must put in the external data file.
    var externalizeOnSave: Set<UnsafeMutableRawPointer> = []

    /// Reads and parses the model at `path`. External data is resolved lazily, relative to
    /// the model's folder.
    public static func load(path: String) throws(ONNXError) -> ONNXModel {
        let mapping = try FileMapping(path: path)
        guard let base = mapping.bytes.baseAddress, mapping.bytes.count > 0 else { throw .emptyFile(path: path) }
        guard let proto = onnx__model_proto__unpack(nil, mapping.bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
            throw .notAModel(path: path, reason: "the bytes are not a valid ModelProto message")
        }
        guard let graph = proto.pointee.graph else {
            Proto.free(proto)
            throw .notAModel(path: path, reason: "it has no graph")
        }
        return ONNXModel(path: path, fileSize: mapping.bytes.count, proto: proto, graph: graph)
    }

    private init(path: String, fileSize: Int, proto: UnsafeMutablePointer<Onnx__ModelProto>, graph: UnsafeMutablePointer<Onnx__GraphProto>) {
        self.path = path
        self.fileSize = fileSize
        self.proto = proto
        self.graph = graph
        self.resolver = ExternalDataResolver(modelPath: path)
    }

    deinit { Proto.free(proto) }

    /// True when any tensor of the model keeps its data in an external file.
    public var usesExternalData: Bool {
        var found = false
        try? TensorWalk.forEachTensor(in: proto) { tensor in
            if TensorCodec.isExternal(tensor) { found = true }
        }
        return found
    }

    /// Adds (or replaces) a `metadata_props` entry.
    func setMetadata(key: String, value: String) {
        for entry in Proto.elements(proto.pointee.metadata_props, proto.pointee.n_metadata_props) {
            if let entry, Proto.string(entry.pointee.key) == key {
                Proto.replace(&entry.pointee.value, with: value)
                return
            }
        }
        let entry = Proto.makeEntry(key: key, value: value)
        proto.pointee.metadata_props = Proto.appending(entry, to: proto.pointee.metadata_props, count: proto.pointee.n_metadata_props)
        proto.pointee.n_metadata_props += 1
    }

    /// Element count and stored bytes of every initializer of the main graph.
    public var initializerTotals: (parameters: Int, bytes: Int) {
        var parameters = 0
        var bytes = 0
        for tensor in Proto.elements(graph.pointee.initializer, graph.pointee.n_initializer) {
            guard let tensor, let shape = try? codec.shape(of: tensor), let count = Tensor.elementCount(of: shape) else { continue }
            parameters += count
            bytes += count * (TensorCodec.elementType(ofDataType: tensor.pointee.data_type)?.byteWidth ?? 0)
        }
        return (parameters, bytes)
    }
}
