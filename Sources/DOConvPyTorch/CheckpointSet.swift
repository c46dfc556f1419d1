import DOConvFileIO
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// The checkpoint files one fold reads as one object tree: a single file, or the shards of a
/// sharded checkpoint, whose flat dicts are seen as one dict so that a layer whose W and D
/// sit in different shards is found and folded like any other.
public final class CheckpointSet {
    /// What the user named (the file, or the shards' index).
    public let path: String
    public let files: [Checkpoint]
    /// The tree detection walks: the file's own root, or one dict holding every shard's
    /// entries, shard by shard.
    public let root: PickleObject
    /// Sharded: the index the shards were read through.
    public let index: ShardIndex?
    /// Sharded: which file holds each value of `root`'s entries.
    private var owners: [ObjectIdentifier: Int] = [:]

    /// One checkpoint file.
    public init(_ checkpoint: Checkpoint) {
        path = checkpoint.path
        files = [checkpoint]
        root = checkpoint.root
        index = nil
    }

    /// Reads what `path` names: a sharded checkpoint's index (or a folder holding one), else
    /// one checkpoint file.
    public static func read(path: String, strictPickle: Bool = false) throws(PyTorchError) -> CheckpointSet {
        guard isShardedCheckpoint(path) else { return CheckpointSet(try Checkpoint(path: path, strictPickle: strictPickle)) }
        let index = try ShardIndex(path: path)
        return CheckpointSet(shards: try index.readShards(strictPickle: strictPickle), index: index, path: path)
    }

    /// A folder, or a file that starts as an index does.
    public static func isShardedCheckpoint(_ path: String) -> Bool {
        guard FilePath.exists(path) else { return false }
        if FilePath.isFolder(path) { return true }
        guard let head = FilePath.bytes(of: path, at: 0, count: 64) else { return false }
        return ShardIndex.looksLikeIndex(head: head)
    }

    /// Shards, each a flat dict of tensors, named as one checkpoint by `path`.
    init(shards: [Checkpoint], index: ShardIndex, path: String) {
        self.path = path
        self.index = index
        files = shards
        var entries: [(key: PickleObject, value: PickleObject)] = []
        for (k, shard) in shards.enumerated() {
            for entry in shard.root.dictEntries ?? [] {
                entries.append(entry)
                owners[ObjectIdentifier(entry.value)] = k
            }
        }
        root = PickleObject(.dict(entries: entries, ordered: true))
    }

    public var isSharded: Bool { index != nil }

    /// The file that holds the value `node`.
    func file(holding node: PickleObject) -> Checkpoint {
        files[owners[ObjectIdentifier(node)] ?? 0]
    }

    /// The tensor a pickled value rebuilds, read from the file that holds it.
    public func tensor(_ node: PickleObject, key: String) throws(PyTorchError) -> TorchTensor? {
        try file(holding: node).tensor(node, key: key)
    }

    /// Places a new value in the file that holds `sibling` (a folded kernel beside its W).
    func adopt(_ node: PickleObject, besides sibling: PickleObject) {
        if let owner = owners[ObjectIdentifier(sibling)] { owners[ObjectIdentifier(node)] = owner }
    }

    /// Sharded: hands each file back its part of the edited merged dict, in order.
    func redistribute() {
        guard isSharded, let entries = root.dictEntries else { return }
        for (k, shard) in files.enumerated() {
            guard case let .dict(_, ordered) = shard.root.kind else { continue }
            shard.root.kind = .dict(entries: entries.filter { owners[ObjectIdentifier($0.value)] == k }, ordered: ordered)
        }
    }

    /// Every global outside torch's weights-only allowlist that any file's pickle names.
    public var carriedGlobals: [String] { Array(Set(files.flatMap(\.carriedGlobals))).sorted() }
}

extension CheckpointSet {
    /// Writes the (folded) files. One file goes to `output`. Shards go beside the index
    /// `output` names (a `.json` path), or into the folder `output` (made if missing) under
    /// the input index's name; the other small files of the input's folder (config.json ...)
    /// are copied beside them. All files are committed together, the index last. Returns
    /// notes for the summary.
    func write(to output: String, parameterDelta: Int, byteDelta: Int) throws(PyTorchError) -> [String] {
        guard let index else {
            try CheckpointWriter.write(files[0], to: output)
            return []
        }
        let exists = FilePath.exists(output)
        let isFolder = FilePath.isFolder(output)
        let folder: String
        let indexPath: String
        var madeFolder = false
        if output.hasSuffix(".json") && !(exists && isFolder) {
            folder = FilePath.directory(of: output)
            indexPath = output
        } else {
            if exists && !isFolder {
                throw .cannotWrite(path: output, reason: "a sharded checkpoint is written into a folder or beside an index (.json), and this is a file")
            }
            if !exists {
                guard mkdir(output, 0o777) == 0 else { throw .cannotWrite(path: output, reason: String(cString: strerror(errno))) }
                madeFolder = true
            }
            folder = output
            indexPath = FilePath.join(output, index.fileName)
        }
        var writers: [AtomicFileWriter] = []
        var notes: [String] = []
        do throws(PyTorchError) {
            for (name, shard) in zip(index.shardNames, files) {
                writers.append(try CheckpointWriter.prepare(shard, to: FilePath.join(folder, name)))
            }
            let copies = Self.companionFiles(of: index, excluding: Set(index.shardNames), into: folder)
            for name in copies {
                writers.append(try Self.copy(FilePath.join(index.folder, name), to: FilePath.join(folder, name)))
            }
            if !copies.isEmpty { notes.append("copied beside the shards: \(copies.joined(separator: ", "))") }
            let indexFile: AtomicFileWriter
            do { indexFile = try AtomicFileWriter(destination: indexPath) } catch { throw .file(error) }
            indexFile.write(try index.rewritten(for: Array(zip(index.shardNames, files)), parameterDelta: parameterDelta, byteDelta: byteDelta))
            writers.append(indexFile)
            do { try AtomicFileWriter.commit(writers) } catch { throw .file(error) }
        } catch {
            for writer in writers { writer.discard() }
            if madeFolder { rmdir(output) }
            throw error
        }
        notes.append("\(files.count) shards and their index written as \(indexPath)")
        return notes
    }

    /// The input folder's other small files a loader reads beside the weights (config.json,
    /// generation_config.json, tokenizer files), when the output goes to another folder.
    /// Other weight files are left out: they would hold the unfolded layers.
    static func companionFiles(of index: ShardIndex, excluding shards: Set<String>, into folder: String) -> [String] {
        let canonical = (FilePath.canonical(index.folder), FilePath.canonical(folder))
        let same = canonical.0 != nil && canonical.0 == canonical.1
        guard !same, let names = try? FileManager.default.contentsOfDirectory(atPath: index.folder) else { return [] }
        let weightSuffixes = [".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".index.json", ".onnx", ".gguf"]
        return names.sorted().filter { name in
            guard !name.hasPrefix("."), !shards.contains(name), name != index.fileName, !weightSuffixes.contains(where: name.hasSuffix) else { return false }
            let path = FilePath.join(index.folder, name)
            guard FilePath.exists(path), !FilePath.isFolder(path),
                  let size = FilePath.size(of: path) else { return false }
            return size <= 64 << 20
        }
    }

    private static func copy(_ source: String, to destination: String) throws(PyTorchError) -> AtomicFileWriter {
        let input: MappedFile
        do { input = try MappedFile(path: source) } catch { throw .file(error) }
        let file: AtomicFileWriter
        do { file = try AtomicFileWriter(destination: destination) } catch { throw .file(error) }
        file.write(input.bytes)
        return file
    }
}
