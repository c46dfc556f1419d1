extension TensorBundle {
    /// Opens the checkpoint `path` names: its prefix or its `.index` (a data shard is
    /// refused with the prefix to pass instead).
    public convenience init(checkpoint path: String) throws(TensorFlowError) {
        try self.init(prefix: try CheckpointPrefix.input(path))
    }
}

/// How a checkpoint is named: TensorFlow names one by the prefix its files share (`ckpt`
/// for `ckpt.index` and `ckpt.data-00000-of-00001`); doconv also takes the `.index`.
enum CheckpointPrefix {
    static let indexSuffix = ".index"

    /// The prefix of the checkpoint `path` names; a data shard is refused with the prefix
    /// to pass instead.
    static func input(_ path: String) throws(TensorFlowError) -> String {
        if let prefix = ofDataShard(path) {
            throw .dataShard(path: path, prefix: prefix)
        }
        return output(path)
    }

    /// The prefix to write at when the user named `path`.
    static func output(_ path: String) -> String {
        path.hasSuffix(indexSuffix) ? String(path.dropLast(indexSuffix.count)) : path
    }

    /// `ckpt` for `ckpt.data-00003-of-00010`, nil for a name that is not a data shard's.
    static func ofDataShard(_ path: String) -> String? {
        // ".data-" + 5 digits + "-of-" + 5 digits
        let tail = ".data-00000-of-00000".count
        guard path.utf8.count > tail else { return nil }
        let suffix = Array(path.utf8.suffix(tail))
        let digits = Set(UInt8(ascii: "0")...UInt8(ascii: "9"))
        let shape = Array(".data-".utf8) + [0, 0, 0, 0, 0] + Array("-of-".utf8) + [0, 0, 0, 0, 0]
        for (byte, expected) in zip(suffix, shape) {
            if expected == 0 ? !digits.contains(byte) : byte != expected { return nil }
        }
        return String(decoding: path.utf8.dropLast(tail), as: UTF8.self)
    }
}
