import DOConvCore
import DOConvSeam
import Foundation

extension FormatOptions {
    /// The TensorFlow adapter's view of these options.
    var tensorflow: TensorFlowFoldOptions {
        var tensorflow = TensorFlowFoldOptions()
        tensorflow.fold = fold
        tensorflow.configJSON = configJSON
        tensorflow.configSource = configSource
        tensorflow.kernelSizes = kernelSizes
        tensorflow.allowPartial = allowPartial
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
    public var options: Set<FormatOption> { [.config, .kernelSize, .allowPartial] }
    public var runsInChildProcess: Bool { false }

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
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd(), size >= UInt64(TableFormat.footerLength),
              (try? handle.seek(toOffset: size - 8)) != nil, let tail = try? handle.read(upToCount: 8), tail.count == 8 else { return false }
        return UInt64(littleEndian: tail.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) == TableFormat.magic
    }
}
