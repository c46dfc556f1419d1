import DOConvFileIO
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
    package let proto: UnsafeMutablePointer<Onnx__ModelProto>
    package let graph: UnsafeMutablePointer<Onnx__GraphProto>
    let resolver: ExternalDataResolver
    /// The model file, while tensors' raw_data points into it (see `ModelUnpacker`).
    let mapping: MappedFile?
    package var codec: TensorCodec { TensorCodec(resolver: resolver, mapping: mapping) }
    /// Tensors (by address) that saving must put in the external data file.
    var externalizeOnSave: Set<UnsafeMutableRawPointer> = []

    /// Reads and parses the model at `path`. Tensor data is not copied: large raw_data stays
    /// in the mapped file, and external data is mapped lazily, relative to the model's folder.
    public static func load(path: String) throws(ONNXError) -> ONNXModel {
        let mapping: MappedFile
        do { mapping = try MappedFile(path: path) } catch { throw .file(error) }
        guard mapping.bytes.count > 0 else { throw .emptyFile(path: path) }
        guard let (proto, borrows) = ModelUnpacker.unpack(mapping) else {
            throw .notAModel(path: path, reason: "the bytes are not a valid ModelProto message")
        }
        guard let graph = proto.pointee.graph else {
            Proto.free(proto)
            if borrows { BorrowedFiles.shared.remove(mapping.bytes) }
            throw .notAModel(path: path, reason: "it has no graph")
        }
        let model = ONNXModel(path: path, fileSize: mapping.bytes.count, proto: proto, graph: graph, mapping: borrows ? mapping : nil)
        try model.validate()
        return model
    }

    /// Refuses a model that is malformed beyond what parsing catches, before anything reads
    /// tensor values or walks the graph: every tensor's data must fit its dims and type (in
    /// raw_data, its typed field, or external data inside the model's folder), and the main
    /// graph must be well-formed (no dangling inputs, no cycles). Checks sizes only: nothing
    /// is decoded, so the cost is independent of the weights' size.
    func validate() throws(ONNXError) {
        let tensors = TensorDataCheck(codec: codec)
        try TensorWalk.forEachTensor(in: proto) { tensor throws(ONNXError) in try tensors.check(tensor) }
        try GraphStructureCheck(path: path).check(graph)
    }

    private init(path: String, fileSize: Int, proto: UnsafeMutablePointer<Onnx__ModelProto>, graph: UnsafeMutablePointer<Onnx__GraphProto>,
                 mapping: MappedFile?) {
        self.path = path
        self.fileSize = fileSize
        self.proto = proto
        self.graph = graph
        self.mapping = mapping
        self.resolver = ExternalDataResolver(modelPath: path)
    }

    // The tree goes first: the mapping its raw_data may point into is given back after.
    deinit {
        Proto.free(proto)
        if let mapping { BorrowedFiles.shared.remove(mapping.bytes) }
    }

    /// Files whose mapped bytes the tree may point into: what a save can copy in the kernel.
    var sourceFiles: [MappedFile] {
        (mapping.map { [$0] } ?? []) + resolver.openMappings
    }

    /// Lets the mapped pages of `tensor` go from this process once its data has been copied
    /// out (a reader that converts a whole model need not hold two copies of it).
    package func releaseMappedPages(of tensor: UnsafeMutablePointer<Onnx__TensorProto>) {
        guard let (bytes, mapping) = try? codec.mappedRegion(of: tensor) else { return }
        mapping.release(bytes)
    }

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
