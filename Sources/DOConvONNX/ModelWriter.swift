import CONNXProto
import CProtobufC

/// Writes a model atomically: the model (and its external data file, when it has one) go to
/// temporary files in the destination folder and are renamed into place only when complete.
enum ModelWriter {
    /// Protobuf messages cannot exceed 2 GiB; bigger models must move tensors out.
    static let protobufLimit = Int(Int32.max) // 2 GiB - 1
    /// Tensors smaller than this stay inline when a model is moved to external data for size.
    static let externalThreshold = 1024

    /// Saves `model` to `path`. Tensors that were external stay external, in `path + ".data"`;
    /// so do tensors marked in `model.externalizeOnSave`, and all large ones when the model
    /// would exceed protobuf's 2 GiB limit.
    static func save(_ model: ONNXModel, to path: String, protobufLimit: Int = ModelWriter.protobufLimit) throws(ONNXError) {
        let dataName = FilePath.baseName(of: path) + ".data"
        let dataPath = FilePath.join(FilePath.directory(of: path), dataName)
        var oversize = onnx__model_proto__get_packed_size(model.proto) > protobufLimit
        let needsData = oversize || model.usesExternalData || !model.externalizeOnSave.isEmpty

        // Bytes that come unchanged from a mapped input file are copied by the kernel.
        let sources = model.sourceFiles
        var dataFile: TemporaryFile?
        defer { dataFile?.discard() }
        if needsData {
            let file = try TemporaryFile(destination: dataPath, sources: sources)
            dataFile = file
            try TensorWalk.forEachTensor(in: model.proto) { tensor throws(ONNXError) in
                let inline = tensor.pointee.has_raw_data != 0 ? tensor.pointee.raw_data.len : 0
                let moveOut = model.externalizeOnSave.contains(UnsafeMutableRawPointer(tensor)) || (oversize && inline >= externalThreshold)
                guard TensorCodec.isExternal(tensor) || moveOut else { return }
                guard let bytes = try model.codec.storedBytes(of: tensor) else { return } // typed-field data stays inline
                let offset = file.sink.bytesWritten
                file.sink.append(bytes)
                try file.sink.check()
                setExternal(tensor, location: dataName, offset: offset, length: bytes.count)
            }
            oversize = onnx__model_proto__get_packed_size(model.proto) > protobufLimit
            guard !oversize else {
                throw .cannotWrite(path: path, reason: "the model is over 2 GiB even with its tensors in external data")
            }
        }

        let modelFile = try TemporaryFile(destination: path, sources: sources)
        defer { modelFile.discard() }
        _ = onnx__model_proto__pack_to_buffer(model.proto, modelFile.sink.buffer)
        try modelFile.sink.check()
        try dataFile?.commit()
        try modelFile.commit()
    }

    /// Points `tensor` at (location, offset, length), dropping its inline data and any
    /// stale location entries, keeping other external_data keys.
    private static func setExternal(_ tensor: UnsafeMutablePointer<Onnx__TensorProto>, location: String, offset: Int, length: Int) {
        let replaced: Set<String> = ["location", "offset", "length", "checksum"]
        tensor.pointee.n_external_data = Proto.removeMessages(tensor.pointee.external_data, count: tensor.pointee.n_external_data) {
            replaced.contains(Proto.string($0.pointee.key))
        }
        for (key, value) in [("location", location), ("offset", String(offset)), ("length", String(length))] {
            let entry = Proto.makeEntry(key: key, value: value)
            tensor.pointee.external_data = Proto.appending(entry, to: tensor.pointee.external_data, count: tensor.pointee.n_external_data)
            tensor.pointee.n_external_data += 1
        }
        tensor.pointee.has_data_location = 1
        tensor.pointee.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
        if tensor.pointee.has_raw_data != 0 {
            ProtoMemory.free(tensor.pointee.raw_data.data) // not when it lies in the mapped input
            tensor.pointee.raw_data = ProtobufCBinaryData(len: 0, data: nil)
            tensor.pointee.has_raw_data = 0
        }
    }
}
