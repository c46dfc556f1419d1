import DOConvCore
import DOConvFileIO
import CONNXProto
import CProtobufC
#if canImport(Glibc)
import Glibc
#endif

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
    ///
    /// A pair must switch at once: renaming a new `.data` over an old one, then the model,
    /// would let a reader (or a crash) pair the old model with the new data. So when
    /// `path + ".data"` exists, the new data goes to a fresh name
    /// (`path + ".<8 hex digits>.data"`) that the old model does not read; the model's rename
    /// is the one step that switches both, and only then are the old model's data files of
    /// either name removed. A failure before that step leaves the old pair as it was.
    ///
    /// Kernels that `pending` computes are waited for where they are written; `accept` is
    /// called once everything is written and before anything is committed: false leaves
    /// every file as it was (and returns false).
    @discardableResult
    static func save(_ model: ONNXModel, to path: String, protobufLimit: Int = ModelWriter.protobufLimit,
                     pending: PendingKernels? = nil, accept: () -> Bool = { true }) throws(ONNXError) -> Bool {
        let directory = FilePath.directory(of: path)
        let base = FilePath.baseName(of: path)
        let canonicalName = base + ".data"
        let dataName = FilePath.exists(FilePath.join(directory, canonicalName)) ? freshDataName(base: base, in: directory) : canonicalName
        let dataPath = FilePath.join(directory, dataName)
        var oversize = onnx__model_proto__get_packed_size(model.proto) > protobufLimit
        let needsData = oversize || model.usesExternalData || !model.externalizeOnSave.isEmpty

        // Bytes that come unchanged from a mapped input file are copied by the kernel.
        let sources = model.sourceFiles
        var dataFile: AtomicFileWriter?
        defer { dataFile?.discard() }
        if needsData {
            let file: AtomicFileWriter
            do { file = try AtomicFileWriter(destination: dataPath, sources: sources) } catch { throw .file(error) }
            dataFile = file
            try TensorWalk.forEachTensor(in: model.proto) { tensor throws(ONNXError) in
                let inline = tensor.pointee.has_raw_data != 0 ? tensor.pointee.raw_data.len : 0
                let moveOut = model.externalizeOnSave.contains(UnsafeMutableRawPointer(tensor)) || (oversize && inline >= externalThreshold)
                guard TensorCodec.isExternal(tensor) || moveOut else { return }
                guard let bytes = try model.codec.storedBytes(of: tensor) else { return } // typed-field data stays inline
                pending?.waitForBytes(at: bytes.baseAddress)
                let offset = file.offset
                file.write(bytes)
                do throws(FileIOError) { try file.check() } catch { throw .file(error) }
                setExternal(tensor, location: dataName, offset: offset, length: bytes.count)
            }
            oversize = onnx__model_proto__get_packed_size(model.proto) > protobufLimit
            guard !oversize else {
                throw .cannotWrite(path: path, reason: "the model is over 2 GiB even with its tensors in external data")
            }
        }

        let modelFile: AtomicFileWriter
        do { modelFile = try AtomicFileWriter(destination: path, sources: sources) } catch { throw .file(error) }
        defer { modelFile.discard() }
        let sink = ProtoFileSink(file: modelFile, pending: pending)
        withExtendedLifetime(sink) { _ = onnx__model_proto__pack_to_buffer(model.proto, sink.buffer) }
        do { try modelFile.check() } catch { throw .file(error) }
        guard accept() else { return false }
        let replacesModel = FilePath.exists(path)
        do { try dataFile?.commit() } catch { throw .file(error) }
        do throws(ONNXError) {
            if ProcessInfoHook.failsBeforeModelCommit { throw ONNXError.cannotWrite(path: path, reason: "stopped before the model's rename (test hook)") }
            do { try modelFile.commit() } catch { throw .file(error) }
        } catch {
            // The old model still reads its own data: the new data file would only be litter.
            if dataFile != nil { unlink(dataPath) }
            throw error
        }
        // The replaced model's data files by our two names, now read by nothing we wrote.
        if replacesModel { removeStaleData(base: base, in: directory, keeping: needsData ? dataName : nil) }
        return true
    }

    /// `base + ".<8 hex digits>.data"`, a name no file in `directory` has.
    static func freshDataName(base: String, in directory: String) -> String {
        while true {
            let name = base + "." + String(UInt32.random(in: 0...UInt32.max), radix: 16).leftPadded(to: 8) + ".data"
            if !FilePath.exists(FilePath.join(directory, name)) { return name }
        }
    }

    /// Removes `base.data` and `base.<8 hex>.data` from `directory`, except `keeping`.
    static func removeStaleData(base: String, in directory: String, keeping: String?) {
        guard let folder = opendir(directory) else { return }
        defer { closedir(folder) }
        var stale: [String] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name != keeping, isDataName(name, base: base) else { continue }
            stale.append(name)
        }
        for name in stale { unlink(FilePath.join(directory, name)) }
    }

    /// True for `base.data` and `base.<8 hex digits>.data`.
    static func isDataName(_ name: String, base: String) -> Bool {
        if name == base + ".data" { return true }
        guard name.hasPrefix(base + "."), name.hasSuffix(".data") else { return false }
        let middle = name.dropFirst(base.count + 1).dropLast(5)
        return middle.count == 8 && middle.allSatisfy(\.isHexDigit)
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

/// A test hook: `DOCONV_TEST_FAIL_BEFORE_MODEL_COMMIT=1` makes a save fail after its data
/// file is in place and before the model's rename, the step a crash could interrupt.
enum ProcessInfoHook {
    static let failsBeforeModelCommit = getenv("DOCONV_TEST_FAIL_BEFORE_MODEL_COMMIT").map { String(cString: $0) == "1" } ?? false
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
