#if canImport(Glibc)
import Glibc
#endif
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

        var dataFile: TemporaryFile?
        defer { dataFile?.discard() }
        if needsData {
            let file = try TemporaryFile(destination: dataPath)
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

        let modelFile = try TemporaryFile(destination: path)
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
            free(tensor.pointee.raw_data.data)
            tensor.pointee.raw_data = ProtobufCBinaryData(len: 0, data: nil)
            tensor.pointee.has_raw_data = 0
        }
    }
}

/// A file written next to its destination and renamed over it only on `commit()`.
final class TemporaryFile {
    let destination: String
    let temporaryPath: String
    let sink: FileSink
    private var done = false

    init(destination: String) throws(ONNXError) {
        self.destination = destination
        let directory = FilePath.directory(of: destination)
        var template = Array(FilePath.join(directory, "." + FilePath.baseName(of: destination) + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw .cannotWrite(path: destination, reason: String(cString: strerror(errno))) }
        fchmod(fd, 0o644 & ~TemporaryFile.umaskValue)
        temporaryPath = String(cString: template)
        sink = FileSink(fd: fd, path: destination)
    }

    private static let umaskValue: mode_t = {
        let current = umask(0o022)
        umask(current)
        return current
    }()

    /// Flushes, closes and renames the file into place.
    func commit() throws(ONNXError) {
        try sink.finish()
        guard rename(temporaryPath, destination) == 0 else {
            throw .cannotWrite(path: destination, reason: String(cString: strerror(errno)))
        }
        done = true
    }

    /// Removes the temporary file unless it was committed.
    func discard() {
        guard !done else { return }
        done = true
        sink.close()
        unlink(temporaryPath)
    }
}

/// A buffered file writer that protobuf-c packs into directly (as a `ProtobufCBuffer`),
/// so a model is never assembled in memory before it is written.
final class FileSink {
    /// The `ProtobufCBuffer` protobuf-c appends to, followed in the same allocation by a
    /// pointer back to this sink (C layout, so the callback can find its owner).
    let buffer: UnsafeMutablePointer<ProtobufCBuffer>
    private static let ownerOffset = MemoryLayout<ProtobufCBuffer>.stride
    private let fd: Int32
    private let path: String
    private var staging: UnsafeMutableRawBufferPointer
    private var staged = 0
    private(set) var bytesWritten = 0
    private var failure: Int32 = 0
    private var closed = false
    private static let stagingSize = 1 << 20

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        staging = UnsafeMutableRawBufferPointer.allocate(byteCount: FileSink.stagingSize, alignment: 64)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: FileSink.ownerOffset + MemoryLayout<UnsafeRawPointer>.stride, alignment: 16)
        buffer = raw.bindMemory(to: ProtobufCBuffer.self, capacity: 1)
        buffer.initialize(to: ProtobufCBuffer(append: { base, count, data in
            guard let base, let data else { return }
            let owner = UnsafeRawPointer(base).load(fromByteOffset: FileSink.ownerOffset, as: UnsafeRawPointer.self)
            Unmanaged<FileSink>.fromOpaque(owner).takeUnretainedValue().append(UnsafeRawBufferPointer(start: data, count: count))
        }))
        raw.storeBytes(of: UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()), toByteOffset: FileSink.ownerOffset, as: UnsafeRawPointer.self)
    }

    deinit {
        close()
        staging.deallocate()
        UnsafeMutableRawPointer(buffer).deallocate()
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard failure == 0, bytes.count > 0, let source = bytes.baseAddress else { return }
        bytesWritten += bytes.count
        if staged + bytes.count <= staging.count {
            (staging.baseAddress! + staged).copyMemory(from: source, byteCount: bytes.count)
            staged += bytes.count
            return
        }
        flush()
        if bytes.count >= staging.count / 2 {
            writeAll(bytes)
        } else {
            staging.baseAddress!.copyMemory(from: source, byteCount: bytes.count)
            staged = bytes.count
        }
    }

    /// Throws if any write so far failed.
    func check() throws(ONNXError) {
        if failure != 0 { throw .cannotWrite(path: path, reason: String(cString: strerror(failure))) }
    }

    func finish() throws(ONNXError) {
        flush()
        try check()
        guard !closed else { return }
        closed = true
        if Glibc.close(fd) != 0 { throw .cannotWrite(path: path, reason: String(cString: strerror(errno))) }
    }

    func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(fd)
    }

    private func flush() {
        guard staged > 0 else { return }
        writeAll(UnsafeRawBufferPointer(start: staging.baseAddress, count: staged))
        staged = 0
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count && failure == 0 {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
            } else {
                offset += n
            }
        }
    }
}
