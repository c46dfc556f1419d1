import DOConvFileIO

/// Resolves ONNX external-data references (`location`, `offset`, `length`) against the
/// model's folder, and refuses any reference that would read outside it.
final class ExternalDataResolver {
    let modelPath: String
    private let modelDirectory: String
    private var mappings: [String: MappedFile] = [:]

    init(modelPath: String) {
        self.modelPath = modelPath
        self.modelDirectory = FilePath.directory(of: modelPath)
    }

    /// The data files mapped so far.
    var openMappings: [MappedFile] { Array(mappings.values) }

    /// The bytes of one external tensor. `length` nil means "to the end of the file".
    func bytes(location: String, offset: Int, length: Int?) throws(ONNXError) -> UnsafeRawBufferPointer {
        try region(location: location, offset: offset, length: length).bytes
    }

    /// The bytes of one external tensor and the mapping that holds them.
    func region(location: String, offset: Int, length: Int?) throws(ONNXError) -> (bytes: UnsafeRawBufferPointer, mapping: MappedFile) {
        let mapping = try mapping(for: location)
        let size = mapping.bytes.count
        guard offset >= 0, offset <= size else {
            throw .externalData(path: modelPath, reason: "offset \(offset) is beyond the end of '\(location)' (\(size) bytes)")
        }
        let count = length ?? (size - offset)
        guard count >= 0, count <= size - offset else {
            throw .externalData(path: modelPath, reason: "offset \(offset) + length \(count) is beyond the end of '\(location)' (\(size) bytes)")
        }
        guard count > 0, let base = mapping.bytes.baseAddress else { return (UnsafeRawBufferPointer(start: nil, count: 0), mapping) }
        return (UnsafeRawBufferPointer(start: base + offset, count: count), mapping)
    }

    private func mapping(for location: String) throws(ONNXError) -> MappedFile {
        if let known = mappings[location] { return known }
        let path = try checkedPath(for: location)
        let mapping: MappedFile
        do { mapping = try MappedFile(path: path) } catch { throw .file(error) }
        mappings[location] = mapping
        return mapping
    }

    /// `location` joined to the model's folder, after checking that it stays inside it.
    private func checkedPath(for location: String) throws(ONNXError) -> String {
        guard !location.isEmpty else { throw .externalData(path: modelPath, reason: "empty location") }
        guard !location.hasPrefix("/"), !location.contains("\\"), !location.contains("\0") else {
            throw .externalData(path: modelPath, reason: "location '\(location)' is not a relative path inside the model's folder")
        }
        if location.split(separator: "/").contains("..") {
            throw .externalData(path: modelPath, reason: "location '\(location)' leaves the model's folder")
        }
        let path = FilePath.join(modelDirectory, location)
        guard let resolved = FilePath.canonical(path) else {
            throw .externalData(path: modelPath, reason: "data file '\(location)' does not exist")
        }
        guard let root = FilePath.canonical(modelDirectory), resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw .externalData(path: modelPath, reason: "location '\(location)' resolves outside the model's folder")
        }
        return resolved
    }
}
