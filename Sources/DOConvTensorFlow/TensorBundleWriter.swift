import DOConvCore
import DOConvFileIO

/// Writes a tensor bundle as TensorFlow's BundleWriter does: each tensor's bytes appended to
/// its data shard in the order added (no padding), an entry with the masked CRC32C of what
/// was written, and on `commit()` the index, keys sorted bytewise, header under "".
///
/// Files are written beside their destinations and renamed into place together, shards
/// first and the index (which names them) last, so a failure leaves no partial bundle.
/// Adding a bundle's tensors in the order they sit in its shards (`TensorBundle.entries`
/// sorted by shard and offset) gives back TensorFlow's own files byte for byte.
public final class TensorBundleWriter {
    public let prefix: String
    public let numShards: Int
    private var shards: [AtomicFileWriter] = []
    private var entries: [[UInt8]: BundleEntry] = [:]

    /// Starts a bundle of `numShards` data files at `prefix`. Tensors added from the mapped
    /// `sources` (another bundle's shards) are copied file to file by the kernel.
    public init(prefix: String, numShards: Int = 1, sources: [MappedFile] = []) throws(TensorFlowError) {
        guard numShards >= 1, numShards <= TensorBundle.maxShards else {
            throw .cannotWrite(path: TensorBundle.indexPath(prefix: prefix), reason: "\(numShards) shards (1 to \(TensorBundle.maxShards))")
        }
        self.prefix = prefix
        self.numShards = numShards
        for shard in 0..<numShards {
            let path = TensorBundle.dataPath(prefix: prefix, shard: shard, of: numShards)
            do { shards.append(try AtomicFileWriter(destination: path, sources: sources)) } catch {
                for writer in shards { writer.discard() }
                throw .cannotWrite(path: path, reason: error.reason)
            }
        }
    }

    /// Adds a tensor of a type stored as raw little-endian elements; `bytes` must be exactly
    /// what `dtype` and `shape` take.
    public func add(_ key: String, dtype: TensorFlowDataType, shape: [Int], bytes: UnsafeRawBufferPointer, shard: Int = 0) throws(TensorFlowError) {
        let entry = try newEntry(key, dtype: dtype, shape: shape, shard: shard)
        guard let expected = entry.rawByteCount else {
            throw .cannotWrite(path: indexPath, reason: "tensor '\(key)': \(dtype.name) is not stored as raw elements")
        }
        guard bytes.count == expected else {
            throw .cannotWrite(path: indexPath, reason: "tensor '\(key)': \(bytes.count) bytes for \(dtype.name) \(shape), which takes \(expected)")
        }
        append(entry, [bytes], crc: CRC32C.checksum(bytes))
    }

    public func add(_ key: String, dtype: TensorFlowDataType, shape: [Int], bytes: [UInt8], shard: Int = 0) throws(TensorFlowError) {
        // withUnsafeBytes rethrows untyped errors: carry the typed one out in a Result.
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(TensorFlowError) in try add(key, dtype: dtype, shape: shape, bytes: buffer, shard: shard) }
        }
        try result.get()
    }

    /// Adds a string tensor in TensorFlow's encoding: the lengths as varints, their masked
    /// checksum, the bytes (see `TensorBundle.strings(_:)`).
    public func addStrings(_ key: String, shape: [Int], strings: [[UInt8]], shard: Int = 0) throws(TensorFlowError) {
        let entry = try newEntry(key, dtype: .string, shape: shape, shard: shard)
        guard strings.count == entry.elementCount else {
            throw .cannotWrite(path: indexPath, reason: "tensor '\(key)': \(strings.count) strings for shape \(shape)")
        }
        var lengths: [UInt8] = []
        var crc: UInt32 = 0
        for string in strings {
            WireEncoding.appendVarint(UInt64(string.count), to: &lengths)
            if let narrow = UInt32(exactly: string.count) {
                crc = withUnsafeBytes(of: narrow.littleEndian) { CRC32C.extend(crc, $0) }
            } else {
                crc = withUnsafeBytes(of: UInt64(string.count).littleEndian) { CRC32C.extend(crc, $0) }
            }
        }
        var checksum: [UInt8] = []
        WireEncoding.appendFixed32(CRC32C.mask(crc), to: &checksum)
        crc = checksum.withUnsafeBytes { CRC32C.extend(crc, $0) }
        for string in strings { crc = string.withUnsafeBytes { CRC32C.extend(crc, $0) } }
        var encoded = lengths + checksum
        for string in strings { encoded += string }
        encoded.withUnsafeBytes { append(entry, [$0], crc: crc) }
    }

    /// Adds a sliced tensor's own entry as the input held it: its type, shape and slice
    /// extents, no bytes (each slice is added with `addSlice`).
    public func addSlicedTensor(_ whole: BundleEntry) throws(TensorFlowError) {
        guard whole.isSliced else { throw .cannotWrite(path: indexPath, reason: "tensor '\(whole.key)' lists no slices") }
        // TensorFlow records a shard here too, though nothing is read from it.
        var entry = try newEntry(whole.keyBytes, printable: whole.key, dtype: whole.dtype, shape: whole.shape, shard: whole.shardID)
        (entry.offset, entry.slices) = (0, whole.slices)
        entries[entry.keyBytes] = entry
    }

    /// Adds one slice of a sliced tensor under its binary key, its bytes appended to its
    /// shard: the input's slicing kept, so each shard stays the size the saver chose.
    public func addSlice(_ slice: BundleEntry, bytes: UnsafeRawBufferPointer) throws(TensorFlowError) {
        guard let whole = slice.sliceOf else { throw .cannotWrite(path: indexPath, reason: "'\(slice.key)' is not a slice's key") }
        let entry = try newEntry(slice.keyBytes, printable: "slice of \(whole)", dtype: slice.dtype, shape: slice.shape, shard: slice.shardID)
        guard bytes.count == entry.rawByteCount else {
            throw .cannotWrite(path: indexPath, reason: "a slice of '\(whole)': \(bytes.count) bytes for \(slice.dtype.name) \(slice.shape)")
        }
        append(entry, [bytes], crc: CRC32C.checksum(bytes))
    }

    /// Writes the index and renames every file into place.
    public func commit() throws(TensorFlowError) {
        // A sliced tensor with slices missing would load as garbage: refuse it.
        var written: [String: Int] = [:]
        for entry in entries.values { if let whole = entry.sliceOf { written[whole, default: 0] += 1 } }
        for entry in entries.values where entry.isSliced && written[entry.key] != entry.slices.count {
            throw .cannotWrite(path: indexPath, reason: "tensor '\(entry.key)' lists \(entry.slices.count) slices but \(written[entry.key] ?? 0) were added")
        }
        var table = [TensorBundleTable.Entry(key: [], value: BundleHeader(numShards: numShards).encode())]
        for (key, entry) in entries.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            table.append(TensorBundleTable.Entry(key: key, value: entry.encode()))
        }
        let index: AtomicFileWriter
        do { index = try AtomicFileWriter(destination: indexPath) } catch { throw .file(error) }
        index.write(TableWriter.encode(table))
        do { try AtomicFileWriter.commit(shards + [index]) } catch { throw .file(error) }
    }

    /// Drops everything written so far (also what happens when the writer is released
    /// without `commit()`).
    public func discard() {
        for shard in shards { shard.discard() }
    }

    private var indexPath: String { TensorBundle.indexPath(prefix: prefix) }

    private func newEntry(_ key: String, dtype: TensorFlowDataType, shape: [Int], shard: Int) throws(TensorFlowError) -> BundleEntry {
        try newEntry(Array(key.utf8), printable: key, dtype: dtype, shape: shape, shard: shard)
    }

    private func newEntry(_ bytes: [UInt8], printable key: String, dtype: TensorFlowDataType, shape: [Int], shard: Int) throws(TensorFlowError) -> BundleEntry {
        guard !bytes.isEmpty else { throw .cannotWrite(path: indexPath, reason: "the empty key is the header's") }
        guard entries[bytes] == nil else { throw .cannotWrite(path: indexPath, reason: "tensor '\(key)' added twice") }
        guard shard >= 0, shard < numShards else { throw .cannotWrite(path: indexPath, reason: "tensor '\(key)': shard \(shard) of \(numShards)") }
        guard shape.allSatisfy({ $0 >= 0 }), Tensor.elementCount(of: shape) != nil else {
            throw .cannotWrite(path: indexPath, reason: "tensor '\(key)': shape \(shape)")
        }
        return BundleEntry(key: bytes, dtype: dtype, shape: shape, shardID: shard, offset: shards[shard].offset, size: 0, maskedCRC32C: 0)
    }

    private func append(_ entry: BundleEntry, _ pieces: [UnsafeRawBufferPointer], crc: UInt32) {
        var entry = entry
        for piece in pieces { shards[entry.shardID].write(piece) }
        entry.size = shards[entry.shardID].offset - entry.offset
        entry.maskedCRC32C = CRC32C.mask(crc)
        entries[entry.keyBytes] = entry
    }
}
