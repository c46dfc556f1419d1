import DOConvCore
import DOConvFileIO
import DOConvSeam
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

extension FormatOptions {
    /// The TensorFlow adapter's view of these options.
    var tensorflow: TensorFlowFoldOptions {
        var tensorflow = TensorFlowFoldOptions()
        tensorflow.fold = fold
        tensorflow.configJSON = configJSON
        tensorflow.configSource = configSource
        tensorflow.kernelSizes = kernelSizes
        tensorflow.allowPartial = allowPartial
        tensorflow.keepGrouped = keepGrouped
        return tensorflow
    }
}

/// TensorFlow object-based checkpoints (tensor bundles) of tf.keras models: named by their
/// prefix (`ckpt`) or their `.index`, what `save_weights` without `.h5`,
/// `ModelCheckpoint(save_weights_only=True)` and `tf.train.Checkpoint.save` write.
public struct TensorFlowCheckpointFormat: ModelFormat {
    public init() {}
    public var name: String { "tf-checkpoint" }
    public var displayName: String { "TensorFlow checkpoint" }
    public var family: String { "TensorFlow" }
    public var summary: String { "TensorFlow checkpoints of tf.keras models (PREFIX or PREFIX.index with PREFIX.data-*: save_weights in the TF format, ModelCheckpoint, tf.train.Checkpoint)" }
    public var options: Set<FormatOption> { [.config, .kernelSize, .allowPartial, .keepGrouped] }
    /// libhdf5 writes its `.h5` and, in verify-equivalence, reads the one given as FOLDED.
    public var runsInChildProcess: Bool { true }

    /// A table ending in the LevelDB magic (an `.index`), or a data shard whose `.index`
    /// is one (refused later with the prefix to pass).
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        guard file.zipEntries == nil, !file.isFolder else { return false }
        if let prefix = CheckpointPrefix.ofDataShard(file.path) { return Self.isTable(TensorBundle.indexPath(prefix: prefix)) }
        return Self.isTable(file.path)
    }

    /// `ckpt` when `ckpt.index` is a table.
    public func recognizesPrefix(_ path: String) -> Bool {
        Self.isTable(TensorBundle.indexPath(prefix: path))
    }

    public func detect(path: String, options: FormatOptions) throws -> Detection {
        try TensorFlowCheckpointFolder.detect(path: path, options: options.tensorflow)
    }

    public func fold(path: String, options: FormatOptions) throws -> FoldedModel {
        let result = try TensorFlowCheckpointFolder.fold(path: path, options: options.tensorflow)
        return FoldedModel(summary: result.summary) { try result.write(to: $0) }
    }

    /// Whether the file ends in the table footer's magic number.
    static func isTable(_ path: String) -> Bool {
        guard let size = FilePath.size(of: path), size >= TableFormat.footerLength,
              let tail = FilePath.bytes(of: path, at: size - 8, count: 8), tail.count == 8 else { return false }
        return UInt64(littleEndian: tail.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) == TableFormat.magic
    }
}

/// TensorFlow SavedModel folders (`model.save('dir')` in tf_keras, `tf.saved_model.save`),
/// given as the folder or its `saved_model.pb`: the weights in `variables/variables` are a
/// TensorFlow checkpoint, folded as one and written as a checkpoint the plain model loads.
public struct TensorFlowSavedModelFormat: ModelFormat {
    public init() {}
    public var name: String { "tf-savedmodel" }
    public var displayName: String { "TensorFlow SavedModel" }
    public var family: String { "TensorFlow" }
    public var summary: String { "TensorFlow SavedModel folders (their variables/ checkpoint, folded into a TensorFlow checkpoint)" }
    public var options: Set<FormatOption> { [.config, .kernelSize, .allowPartial, .keepGrouped] }
    /// libhdf5 writes its `.h5` and, in verify-equivalence, reads the one given as FOLDED.
    public var runsInChildProcess: Bool { true }

    /// A folder holding `saved_model.pb` and a `variables/variables.index` table, or that
    /// `saved_model.pb` itself.
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        Self.variablesPrefix(of: file.path, isFolder: file.isFolder) != nil
    }

    public func detect(path: String, options: FormatOptions) throws -> Detection {
        try TensorFlowCheckpointFolder.detect(path: try Self.variables(of: path), options: try Self.options(options, savedModel: path))
    }

    public func fold(path: String, options given: FormatOptions) throws -> FoldedModel {
        let options = try Self.options(given, savedModel: path)
        let result = try TensorFlowCheckpointFolder.fold(path: try Self.variables(of: path), options: options)
        var summary = result.summary
        summary.notes.append("a SavedModel: OUTPUT.h5 is the plain model (tf_keras.models.load_model, no custom class); any other OUTPUT is a TensorFlow checkpoint (OUTPUT.index, OUTPUT.data-*) for load_weights")
        return FoldedModel(summary: summary, write: { (output: String) throws -> Void in
            if output.hasSuffix(".keras") {
                throw TensorFlowError.unsupported(path: output, reason: "a SavedModel's folded model is written as a legacy .h5 (tf_keras's format), not .keras")
            }
            guard Self.kerasSuffixes.contains(where: { output.hasSuffix($0) }) else { return try result.write(to: output) }
            guard let json = options.configJSON else {
                throw TensorFlowError.unsupported(path: output, reason: "the SavedModel has no keras_metadata.pb (tf.saved_model.save): pass the model's JSON with --config to write a Keras file")
            }
            try result.kerasModelFile(configJSON: json, configSource: options.configSource).write(to: output)
        })
    }

    static let kerasSuffixes = [".h5", ".hdf5"]

    /// The options, with the model config from `keras_metadata.pb` (tf_keras `model.save`)
    /// when `--config` gives none.
    static func options(_ given: FormatOptions, savedModel path: String) throws(TensorFlowError) -> TensorFlowFoldOptions {
        var options = given.tensorflow
        let folder = FilePath.isFolder(path) ? path : FilePath.directory(of: path)
        let metadata = FilePath.join(folder, "keras_metadata.pb")
        if options.configJSON == nil, FilePath.exists(metadata) {
            options.configJSON = try KerasMetadata(path: metadata).modelJSON
            options.configSource = metadata
        }
        return options
    }

    /// The prefix of the SavedModel's weights, or a one-line error.
    public static func variables(of path: String) throws(TensorFlowError) -> String {
        guard let prefix = variablesPrefix(of: path, isFolder: FilePath.isFolder(path)) else {
            throw .unsupported(path: path, reason: "not a SavedModel with a variables/variables checkpoint")
        }
        return prefix
    }

    /// `DIR/variables/variables` when `path` is a SavedModel folder or its `saved_model.pb`
    /// and that checkpoint's `.index` is a table.
    static func variablesPrefix(of path: String, isFolder: Bool) -> String? {
        let folder: String
        if isFolder {
            guard FileManager.default.fileExists(atPath: FilePath.join(path, "saved_model.pb")) else { return nil }
            folder = path
        } else {
            guard FilePath.baseName(of: path) == "saved_model.pb" else { return nil }
            folder = FilePath.directory(of: path)
        }
        let prefix = FilePath.join(FilePath.join(folder, "variables"), "variables")
        return TensorFlowCheckpointFormat.isTable(TensorBundle.indexPath(prefix: prefix)) ? prefix : nil
    }
}

/// TensorFlow Lite flatbuffers (`.tflite`): the converter has already folded each DOConv2D's
/// D and W into one constant kernel, so there is nothing to fold.
public struct TFLiteFormat: ModelFormat {
    public init() {}
    public var name: String { "tflite" }
    public var displayName: String { "TensorFlow Lite" }
    public var family: String { "TensorFlow" }
    public var summary: String { "TensorFlow Lite files (already folded by the converter: copied as they are)" }
    public var options: Set<FormatOption> { [] }
    public var runsInChildProcess: Bool { false }

    /// The flatbuffer file identifier "TFL3" at bytes 4 to 8.
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        file.zipEntries == nil && !file.isFolder && file.head.count >= 8 && Array(file.head[4..<8]) == Array("TFL3".utf8)
    }

    public func detect(path: String, options: FormatOptions) throws -> Detection { Detection() }

    public func fold(path: String, options: FormatOptions) throws -> FoldedModel {
        let input: MappedFile
        do { input = try MappedFile(path: path) } catch { throw TensorFlowError.file(error) }
        var summary = FoldSummary()
        summary.notes.append("TensorFlow Lite: the converter has already folded each DOConv2D's D and W into one kernel; nothing to fold, OUTPUT is a copy")
        return FoldedModel(summary: summary, write: { (output: String) throws -> Void in
            guard output != path else { return }
            let copy: AtomicFileWriter
            do throws(FileIOError) { copy = try AtomicFileWriter(destination: output, sources: [input]) } catch { throw TensorFlowError.file(error) }
            copy.write(input.bytes)
            do throws(FileIOError) { try copy.commit() } catch { throw TensorFlowError.file(error) }
        })
    }
}
