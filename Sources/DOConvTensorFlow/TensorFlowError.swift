import DOConvCore
import DOConvFileIO

/// Why a TensorFlow checkpoint could not be read, folded or written: one line naming the file.
public enum TensorFlowError: CarriesFileErrors, CarriesLayerErrors, Equatable, Sendable, CustomStringConvertible {
    case file(FileIOError)
    /// A DO-Conv layer's variables disagree with each other or with the config.
    case layer(InconsistentLayer)
    /// The `.index` file is damaged or not a TensorFlow table: its footer, blocks, block
    /// checksums, entries or the protos they hold.
    case corruptIndex(path: String, reason: String)
    /// A data shard disagrees with the index: bytes missing, a checksum that does not match,
    /// a string tensor whose encoding is broken.
    case corruptData(path: String, reason: String)
    /// The `_CHECKPOINTABLE_OBJECT_GRAPH` tensor does not decode or does not fit the bundle.
    case corruptObjectGraph(path: String, reason: String)
    /// Valid TensorFlow, but not something this reader handles (compressed blocks,
    /// big-endian tensor bytes, sliced tensors, resource and variant tensors).
    case unsupported(path: String, reason: String)
    /// A layer that may be a DO-Conv layer and cannot be folded or left as it is without
    /// what only the user knows (a kernel size, the model config).
    case undecidableLayer(path: String, layer: String, reason: String)
    /// The model config given (`--config`) cannot be read.
    case config(path: String, reason: String)
    /// A data shard was named instead of its checkpoint.
    case dataShard(path: String, prefix: String)
    /// The bundle has no entry of this key.
    case missingKey(path: String, key: String)

    public var description: String {
        switch self {
        case let .file(error): return error.description
        case let .layer(error): return error.description
        case let .corruptIndex(path, reason): return "\(path): corrupt TensorFlow checkpoint index: \(reason)"
        case let .corruptData(path, reason): return "\(path): corrupt TensorFlow checkpoint data: \(reason)"
        case let .corruptObjectGraph(path, reason): return "\(path): corrupt TensorFlow object graph: \(reason)"
        case let .unsupported(path, reason): return "\(path): not supported: \(reason)"
        case let .undecidableLayer(path, layer, reason): return "\(path): layer '\(layer)': \(reason)"
        case let .config(_, reason): return reason
        case let .dataShard(path, prefix): return "\(path): a data shard of the TensorFlow checkpoint '\(prefix)': pass the checkpoint's prefix '\(prefix)' (or '\(prefix).index')"
        case let .missingKey(path, key): return "\(path): no tensor named '\(key)' in the checkpoint"
        }
    }
}
