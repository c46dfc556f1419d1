import DOConvKeras
import DOConvFileIO
import DOConvTensorFlow
import DOConvVerify
import DOConvVerifyKeras
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A tf.keras SavedModel against the Keras file its fold wrote (`doconv-fold DIR plain.h5`):
/// ORIGINAL's `variables/` checkpoint is laid out as a legacy full model's datasets would be
/// (`/model_weights/LAYER/LAYER/WEIGHT:0`, each layer's weights in the order it made them),
/// with the model config from `keras_metadata.pb` (or --config); then the Keras pair check
/// reads FOLDED itself and runs both models end to end.
enum SavedModelKerasEquivalence {
    static func verify(savedModel: String, folded: String, options: VerifyOptions, format: String) throws(VerifyError) -> VerificationReport {
        let weights: KerasEquivalence.OriginalWeights
        do { weights = try originalWeights(savedModel, options: options) } catch let error as VerifyError { throw error } catch { throw VerifyError("\(error)") }
        var report = try KerasEquivalence.verify(original: weights, folded: folded, options: options)
        report.format = "\(format) -> Keras HDF5"
        report.notes.append("ORIGINAL's weights are its variables/ checkpoint, read as a Keras full model's datasets")
        return report
    }

    /// Whether `path` is an HDF5 file (its signature at offset 0, as Keras writes them).
    static func isHDF5(_ path: String) -> Bool {
        FilePath.bytes(of: path, at: 0, count: 8) == [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
    }

    static func originalWeights(_ savedModel: String, options: VerifyOptions) throws -> KerasEquivalence.OriginalWeights {
        let prefix = try TensorFlowSavedModelFormat.variables(of: savedModel)
        let folder = FilePath.isFolder(savedModel) ? savedModel : FilePath.directory(of: savedModel)
        let metadata = FilePath.join(folder, "keras_metadata.pb")
        let storedConfig = FilePath.exists(metadata) ? try KerasMetadata(path: metadata).modelJSON : nil
        guard storedConfig != nil || options.kerasConfigJSON != nil else {
            throw VerifyError("\(savedModel): the SavedModel has no keras_metadata.pb (tf.saved_model.save): pass the model's JSON with --config")
        }
        let tensors = try CheckpointTensors(path: prefix)
        // A layer's weights in the order it made them: their places among its children.
        let graph = try tensors.bundle.objectGraph()
        var place: [Int: Int] = [:]
        for node in graph.nodes {
            for (k, child) in node.children.enumerated() where place[child.nodeID] == nil { place[child.nodeID] = k }
        }
        var entries: [KerasEquivalence.Entry] = []
        for variable in tensors.model.sorted(by: { (layer(of: $0), place[$0.nodeID] ?? 0) < (layer(of: $1), place[$1.nodeID] ?? 0) }) {
            var entry = try tensors.entry(variable)
            entry.path = "/model_weights/\(layer(of: variable))/\(variable.fullName):0"
            entry.key = entry.path
            entries.append(entry)
        }
        return KerasEquivalence.OriginalWeights(path: savedModel, format: .legacyFullModel, storedConfig: storedConfig, entries: entries)
    }

    /// The Keras layer a variable belongs to: its full name without the weight's own name.
    static func layer(of variable: CheckpointVariable) -> String {
        variable.fullName.split(separator: "/").dropLast().joined(separator: "/")
    }
}
