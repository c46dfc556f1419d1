/// Why a TensorFlow checkpoint could not be read or written: one line naming the file.
public enum TensorFlowError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
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
    /// The bundle has no entry of this key.
    case missingKey(path: String, key: String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "\(path): cannot open: \(reason)"
        case let .corruptIndex(path, reason): return "\(path): corrupt TensorFlow checkpoint index: \(reason)"
        case let .corruptData(path, reason): return "\(path): corrupt TensorFlow checkpoint data: \(reason)"
        case let .corruptObjectGraph(path, reason): return "\(path): corrupt TensorFlow object graph: \(reason)"
        case let .unsupported(path, reason): return "\(path): not supported: \(reason)"
        case let .missingKey(path, key): return "\(path): no tensor named '\(key)' in the checkpoint"
        case let .cannotWrite(path, reason): return "\(path): cannot write: \(reason)"
        }
    }
}
