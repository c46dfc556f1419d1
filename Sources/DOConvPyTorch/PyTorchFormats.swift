import DOConvCore
import DOConvSeam

extension FormatOptions {
    /// The PyTorch adapter's view of these options.
    var pytorch: PyTorchFoldOptions {
        var pytorch = PyTorchFoldOptions()
        pytorch.fold = fold
        pytorch.kernelSizes = kernelSizes
        pytorch.keepNames = keepNames
        pytorch.strictPickle = strictPickle
        return pytorch
    }
}

/// The checkpoint formats (torch.save files, safetensors, sharded checkpoints) share one
/// reader, PyTorchFolder, which tells them apart again by content.
public protocol CheckpointModelFormat: ModelFormat {}

extension CheckpointModelFormat {
    public func detect(path: String, options: FormatOptions) throws -> Detection {
        try PyTorchFolder.detect(path: path, options: options.pytorch)
    }

    /// The files written (a sharded checkpoint's shards and index) become summary notes.
    public func fold(path: String, options: FormatOptions) throws -> FoldedModel {
        let result = try PyTorchFolder.fold(path: path, options: options.pytorch)
        return FoldedModel(summary: result.summary, writeWithNotes: { try result.write(to: $0) })
    }
}

/// Every checkpoint format expands the same way, through `PyTorchExpander`.
extension PyTorchFormat: ExpandableFormat {}
extension SafetensorsFormat: ExpandableFormat {}
extension ShardedCheckpointFormat: ExpandableFormat {}

extension CheckpointModelFormat {
    public func expand(path: String, options: ExpandOptions) throws -> FoldedModel {
        let result = try PyTorchExpander.expand(path: path, options: options)
        return FoldedModel(summary: result.summary, writeWithNotes: { try result.write(to: $0) })
    }
}

/// PyTorch checkpoints written by torch.save: the zip format (torch >= 1.6) and the legacy
/// stream, whatever the suffix (.pth, .pt, .pth.tar, .ckpt, .bin).
public struct PyTorchFormat: ZipModelFormat, CheckpointModelFormat {
    public init() {}
    public var name: String { "pytorch" }
    public var displayName: String { "PyTorch checkpoint" }
    public var family: String { "PyTorch" }
    public var summary: String { "PyTorch checkpoints (.pth, .pt, .pth.tar, .ckpt, .bin: torch.save zip and legacy formats; Python objects pickled besides the tensors are carried through unexecuted)" }
    public var options: Set<FormatOption> { [.kernelSize, .keepNames, .strictPickle] }
    public var runsInChildProcess: Bool { false }
    public var zipContents: String { "<root>/data.pkl (PyTorch)" }

    /// A zip holding `<root>/data.pkl`, or the legacy stream's magic number.
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        if let entries = file.zipEntries { return Checkpoint.zipRoot(entries: entries) != nil }
        return !file.isFolder && Checkpoint.looksLikeLegacy(head: file.head)
    }

    public func claimsBySuffix(_ file: ModelFileSignature) -> Bool { file.isPlainFile(endingWith: [".pth", ".pt", ".pth.tar", ".ckpt"]) }
}

/// `.safetensors` files: a JSON header and raw tensors, flat names.
public struct SafetensorsFormat: CheckpointModelFormat {
    public init() {}
    public var name: String { "safetensors" }
    public var displayName: String { "safetensors" }
    public var family: String { "PyTorch" }
    public var summary: String { ".safetensors files" }
    public var options: Set<FormatOption> { [.kernelSize, .keepNames] }
    public var runsInChildProcess: Bool { false }

    /// A header length that fits the file, then `{`.
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        file.zipEntries == nil && !file.isFolder && Checkpoint.looksLikeSafetensors(head: file.head, size: file.size)
    }

    public func claimsBySuffix(_ file: ModelFileSignature) -> Bool { file.isPlainFile(endingWith: [".safetensors"]) }
}

/// Sharded checkpoints (transformers `save_pretrained(max_shard_size=...)`, huggingface_hub,
/// accelerate): an index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`)
/// naming safetensors or torch.save shards beside it, given as the index or its folder.
public struct ShardedCheckpointFormat: CheckpointModelFormat {
    public init() {}
    public var name: String { "sharded" }
    public var displayName: String { "sharded checkpoint" }
    public var family: String { "PyTorch" }
    public var summary: String { "sharded checkpoints (given by their index, model.safetensors.index.json or pytorch_model.bin.index.json, or its folder; OUTPUT names the output index or folder)" }
    public var options: Set<FormatOption> { [.kernelSize, .keepNames, .strictPickle] }
    public var runsInChildProcess: Bool { false }

    /// A JSON object that starts with "metadata" or "weight_map", or a folder holding an
    /// `*.index.json`.
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        if file.isFolder { return !ShardIndex.indexFiles(inFolder: file.path).isEmpty }
        return file.zipEntries == nil && ShardIndex.looksLikeIndex(head: file.head)
    }
}
