import DOConvZip
import DOConvCore
import DOConvFileIO
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Writes a (folded) checkpoint in the container it was read from: the edited object tree,
/// the storages it still refers to (copied from the mapped input, or new), and every other
/// record of the input as it was.
enum CheckpointWriter {
    static func write(_ checkpoint: Checkpoint, to path: String) throws(PyTorchError) {
        let file = try prepare(checkpoint, to: path)
        do { try file.commit() } catch { throw .file(error) }
    }

    /// Writes the checkpoint into a temporary file beside `path`, which `commit()` renames
    /// into place (with the other files of a multi-file result).
    static func prepare(_ checkpoint: Checkpoint, to path: String) throws(PyTorchError) -> AtomicFileWriter {
        let file: AtomicFileWriter
        do { file = try AtomicFileWriter(destination: path) } catch { throw .file(error) }
        do throws(PyTorchError) {
            switch checkpoint.container {
            case let .zip(root): try writeZip(checkpoint, root: root, to: file)
            case .legacy: try writeLegacy(checkpoint, to: file)
            case .safetensors: try writeSafetensors(checkpoint, to: file)
            }
            return file
        } catch {
            file.discard()
            throw error
        }
    }

    /// The storages the tree refers to, in the order it first refers to them.
    private static func referencedStorages(_ checkpoint: Checkpoint) throws(PyTorchError) -> [TorchStorage] {
        var seen = Set<String>()
        var result: [TorchStorage] = []
        for id in Checkpoint.persistentIDs(in: checkpoint.root) {
            let (key, _, _) = try checkpoint.storageReference(id)
            guard seen.insert(key).inserted else { continue }
            guard let storage = checkpoint.storages[key] else { throw .corrupt(path: checkpoint.path, reason: "storage '\(key)' is missing") }
            result.append(storage)
        }
        return result
    }

    /// Input records in their order, data.pkl replaced, and in the place of the input's
    /// storage records every storage the tree refers to, renamed `0`, `1`, ... in the order
    /// the pickle first names them and written one after another, as torch.save does:
    /// torch.load(mmap=True) and loading to the meta device rely on both.
    private static func writeZip(_ checkpoint: Checkpoint, root: String, to file: AtomicFileWriter) throws(PyTorchError) {
        let storages = try renumberStorages(checkpoint)
        let pickle = Pickler.pickle(checkpoint.root, protocol: checkpoint.pickleProtocol)
        let dataPrefix = root + "/data/"
        // A storage that is a whole input record keeps that record's CRC.
        var inputRecords: [UnsafeRawPointer: (count: Int, crc32: UInt32)] = [:]
        for entry in checkpoint.zipEntries where entry.name.hasPrefix(dataPrefix) {
            if let start = entry.data.baseAddress { inputRecords[start] = (entry.data.count, entry.crc32) }
        }
        var zip = ZipWriter(file: file)
        var storagesWritten = false
        func writeStorages(_ zip: inout ZipWriter) {
            guard !storagesWritten else { return }
            storagesWritten = true
            for (key, storage) in storages {
                let record = storage.bytes.baseAddress.flatMap { inputRecords[$0] }
                let known = record?.count == storage.bytes.count ? record?.crc32 : nil
                storage.withExtendedLifetime { zip.add(name: dataPrefix + key, data: storage.bytes, crc32: known) }
                storage.releaseMappedPages()
            }
        }
        let hasDataRecords = checkpoint.zipEntries.contains { $0.name.hasPrefix(dataPrefix) }
        for entry in checkpoint.zipEntries {
            if entry.name == root + "/data.pkl" {
                pickle.withUnsafeBytes { zip.add(name: entry.name, data: $0) }
                if !hasDataRecords { writeStorages(&zip) }
            } else if entry.name.hasPrefix(dataPrefix) {
                writeStorages(&zip)
            } else {
                guard entry.method == 0 else { throw .corrupt(path: checkpoint.path, reason: "record '\(entry.name)' is compressed (torch writes records stored)") }
                zip.add(name: entry.name, data: entry.data, crc32: entry.crc32)
            }
        }
        writeStorages(&zip)
        zip.finish()
    }

    /// Renames the storages `0`, `1`, ... in the order the pickle first names them (editing
    /// the persistent ids in the tree) and returns them in that order.
    private static func renumberStorages(_ checkpoint: Checkpoint) throws(PyTorchError) -> [(String, TorchStorage)] {
        var newKeys: [String: String] = [:]
        var ordered: [(String, TorchStorage)] = []
        for id in Pickler.persistentIDsInWriteOrder(checkpoint.root) {
            let (key, _, _) = try checkpoint.storageReference(id)
            guard case var .tuple(items) = id.kind else { continue }
            let newKey: String
            if let known = newKeys[key] {
                newKey = known
            } else {
                guard let storage = checkpoint.storages[key] else { throw .corrupt(path: checkpoint.path, reason: "storage '\(key)' is missing") }
                newKey = String(newKeys.count)
                newKeys[key] = newKey
                ordered.append((newKey, storage))
            }
            items[2] = PickleObject(.string(newKey))
            id.kind = .tuple(items)
        }
        checkpoint.storages = Dictionary(ordered, uniquingKeysWith: { a, _ in a })
        return ordered
    }

    /// The input's magic number, protocol and system-info pickles, the object pickle, the
    /// sorted storage keys, then each storage as an int64 element count and its bytes.
    private static func writeLegacy(_ checkpoint: Checkpoint, to file: AtomicFileWriter) throws(PyTorchError) {
        let storages = try referencedStorages(checkpoint).sorted { $0.key < $1.key }
        file.write(checkpoint.legacyHeader)
        file.write(Pickler.pickle(checkpoint.root, protocol: checkpoint.pickleProtocol))
        let keys = PickleObject(.list(storages.map { PickleObject(.string($0.key)) }))
        file.write(Pickler.pickle(keys, protocol: checkpoint.pickleProtocol))
        for storage in storages {
            var count = LittleEndianBytes()
            count.u64(UInt64(storage.count))
            file.write(count.bytes)
            storage.withExtendedLifetime { file.write(storage.bytes) }
            storage.releaseMappedPages()
        }
    }

    /// The header in the input's tensor order (keys renamed, folded shapes), its metadata,
    /// padded with spaces to 8 bytes as safetensors does, then each tensor's bytes.
    private static func writeSafetensors(_ checkpoint: Checkpoint, to file: AtomicFileWriter) throws(PyTorchError) {
        var tensors: [(String, TorchTensor)] = []
        for entry in checkpoint.root.dictEntries ?? [] {
            guard let key = entry.key.string, let tensor = try checkpoint.tensor(entry.value, key: key) else {
                throw .corrupt(path: checkpoint.path, reason: "a safetensors entry that is not a tensor")
            }
            tensors.append((key, tensor))
        }
        var header: [String] = []
        if let metadata = checkpoint.safetensorsMetadata {
            let items = metadata.sorted { $0.key < $1.key }.map { "\(ReportFormat.jsonString($0.key)):\(ReportFormat.jsonString($0.value))" }
            header.append("\"__metadata__\":{" + items.joined(separator: ",") + "}")
        }
        var offset = 0
        for (key, tensor) in tensors {
            let size = tensor.count * tensor.dtype.byteWidth
            header.append("\(ReportFormat.jsonString(key)):{\"dtype\":\"\(tensor.dtype.safetensorsCode)\",\"shape\":[\(tensor.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        var json = Array(("{" + header.joined(separator: ",") + "}").utf8)
        json += [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8)
        var length = LittleEndianBytes()
        length.u64(UInt64(json.count))
        file.write(length.bytes + json)
        for (_, tensor) in tensors {
            tensor.withLogicalBytes { file.write($0) }
            tensor.storage.releaseMappedPages()
        }
    }
}
