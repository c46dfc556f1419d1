@_exported import DOConvSeam
import DOConvKeras
import DOConvMXNet
import DOConvONNX
import DOConvPyTorch
import DOConvTensorFlow
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// The model formats all three tools know, and how a file's format is found.
public enum FormatRegistry {
    /// Every format, in the order they are asked. Content decides: a suffix only picks the
    /// reader of a file no format recognizes by content, and ONNX, whose files have no magic
    /// number, reads what is left, so that its reader says what is wrong with it.
    public static let formats: [any ModelFormat] = [
        KerasHDF5Format(),
        KerasArchiveFormat(),
        PyTorchFormat(),
        SafetensorsFormat(),
        ShardedCheckpointFormat(),
        MXNetFormat(),
        TensorFlowCheckpointFormat(),
        TensorFlowSavedModelFormat(),
        TFLiteFormat(),
        ONNXFormat(),
    ]

    /// The format of the file at `path`, by its content, among `formats` (the registry's).
    public static func format(of path: String, among formats: [any ModelFormat] = formats) throws(FormatError) -> any ModelFormat {
        if !FileManager.default.fileExists(atPath: path), let format = formats.first(where: { $0.recognizesPrefix(path) }) { return format }
        let signature = try ModelFileSignature(path: path)
        if let format = formats.first(where: { $0.recognizes(signature) }) { return format }
        if let format = formats.first(where: { $0.claimsBySuffix(signature) }) { return format }
        if !signature.isFolder, signature.zipEntries == nil { return ONNXFormat() }
        if signature.isFolder { throw FormatError("\(path): is a folder without a sharded checkpoint's index (*.index.json)") }
        if signature.zipEntries != nil {
            let names = formats.compactMap { $0 as? any ZipModelFormat }.map(\.zipContents).joined(separator: ", or ")
            throw FormatError("\(path): not a model archive: the zip holds neither \(names)")
        }
        throw FormatError("\(path): not a model file doconv knows")
    }
}

extension FormatOption {
    /// The help line for `tool`: the families of the formats that read the option (from the
    /// registry), then what it does. "Keras, PyTorch: a layer's kernel size ...".
    public func help(for tool: Tool) -> String {
        var families: [String] = []
        for format in FormatRegistry.formats where format.options.contains(self) && !families.contains(format.family) {
            families.append(format.family)
        }
        return families.joined(separator: ", ") + ": " + purpose(for: tool)
    }
}
