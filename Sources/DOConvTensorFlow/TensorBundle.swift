import DOConvCore
import DOConvFileIO

/// A TensorFlow tensor bundle (what `save_weights`, `tf.train.Checkpoint` and a
/// SavedModel's `variables/variables` are): `PREFIX.index`, a table of key -> entry, and the
/// data shards `PREFIX.data-00000-of-0000N`, mapped.
///
/// Opening checks everything the index says against the files: the header (num_shards,
/// little-endian, a version this reader may read), every shard present, and every entry's
/// element type, shape, byte size (element width x count, for types stored raw), shard id
/// and byte range. Tensor bytes are checked against their CRC32C when read.
public final class TensorBundle {
    public let prefix: String
    public let header: BundleHeader
    /// Every tensor entry (the header's key "" left out), in key order.
    public let entries: [BundleEntry]
    private let entryIndex: [[UInt8]: Int]
    private let shards: [MappedFile]
    /// A sliced tensor's key -> its slices' entries (positions in `entries`, in key order).
    private let sliceEntries: [String: [Int]]

    /// Key of the serialized TrackableObjectGraph in object-based checkpoints.
    public static let objectGraphKey = "_CHECKPOINTABLE_OBJECT_GRAPH"
    /// A bundle of more shards than this is refused before any file is opened (the data
    /// files' names have five digits).
    public static let maxShards = 99_999

    /// `PREFIX.index`.
    public static func indexPath(prefix: String) -> String { prefix + ".index" }

    /// `PREFIX.data-%05d-of-%05d`.
    public static func dataPath(prefix: String, shard: Int, of count: Int) -> String {
        func padded(_ n: Int) -> String {
            let digits = String(n)
            return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
        }
        return "\(prefix).data-\(padded(shard))-of-\(padded(count))"
    }

    /// Opens the bundle at `prefix` (the path without `.index`).
    public init(prefix: String) throws(TensorFlowError) {
        self.prefix = prefix
        let indexPath = Self.indexPath(prefix: prefix)
        let table = try TensorBundleTable(path: indexPath)
        guard let first = table.entries.first, first.key.isEmpty else {
            throw .corruptIndex(path: indexPath, reason: "no header entry (key \"\")")
        }
        let header = try BundleHeader(serialized: first.value, path: indexPath)
        guard header.endianness == .little else {
            throw .unsupported(path: indexPath, reason: "the tensor bytes are big-endian")
        }
        // TensorFlow's CheckVersions: a reader older than min_consumer, or one the writer
        // named bad, must not read the bundle.
        guard header.minConsumer <= BundleHeader.readerVersion, header.producer >= 0 else {
            throw .unsupported(path: indexPath, reason: "bundle format version \(header.producer) needs a reader of version \(header.minConsumer) or newer (this one is \(BundleHeader.readerVersion))")
        }
        guard !header.badConsumers.contains(BundleHeader.readerVersion) else {
            throw .unsupported(path: indexPath, reason: "bundle format version \(header.producer) names readers of version \(BundleHeader.readerVersion) (this one) as bad")
        }
        guard header.numShards >= 1, header.numShards <= Self.maxShards else {
            throw .corruptIndex(path: indexPath, reason: "the header claims \(header.numShards) data shards")
        }
        self.header = header

        var shards: [MappedFile] = []
        for shard in 0..<header.numShards {
            let path = Self.dataPath(prefix: prefix, shard: shard, of: header.numShards)
            do { shards.append(try MappedFile(path: path)) } catch {
                throw .cannotOpen(path: path, reason: "data shard \(shard) of \(header.numShards): \(error.reason)")
            }
        }
        self.shards = shards

        var entries: [BundleEntry] = []
        var entryIndex: [[UInt8]: Int] = [:]
        // The table's keys increase strictly: no key twice.
        for item in table.entries.dropFirst() {
            let entry = try BundleEntry(key: item.key, serialized: item.value, path: indexPath)
            if !entry.isSliced { try Self.checkLocation(of: entry, shards: shards, indexPath: indexPath) }
            entryIndex[entry.keyBytes] = entries.count
            entries.append(entry)
        }
        self.entries = entries
        self.entryIndex = entryIndex
        var sliceEntries: [String: [Int]] = [:]
        for (k, entry) in entries.enumerated() {
            if let whole = entry.sliceOf { sliceEntries[whole, default: []].append(k) }
        }
        self.sliceEntries = sliceEntries
    }

    /// The entry's bytes must be what its type and shape take, in a shard that has them.
    private static func checkLocation(of entry: BundleEntry, shards: [MappedFile], indexPath: String) throws(TensorFlowError) {
        func corrupt(_ reason: String) -> TensorFlowError { .corruptIndex(path: indexPath, reason: "entry '\(printable(entry.keyBytes))': \(reason)") }
        guard entry.shardID < shards.count else {
            throw corrupt("shard \(entry.shardID), but the bundle has \(shards.count)")
        }
        if entry.dtype.byteWidth != nil {
            guard let expected = entry.rawByteCount else { throw corrupt("\(entry.dtype.name) \(entry.shape) takes more bytes than an Int counts") }
            guard entry.size == expected else {
                throw corrupt("\(entry.size) bytes, but \(entry.dtype.name) \(entry.shape) takes \(expected)")
            }
        } else if entry.dtype == .string {
            // A length varint per element and the 4-byte checksum at least (TensorFlow writes
            // the checksum even for no strings), which also bounds the element count.
            guard entry.elementCount <= entry.size, entry.size - entry.elementCount >= 4 else {
                throw corrupt("\(entry.size) bytes cannot hold \(entry.elementCount) strings")
            }
        }
        let shard = shards[entry.shardID]
        guard entry.offset <= shard.bytes.count, entry.size <= shard.bytes.count - entry.offset else {
            throw .corruptData(path: shard.path, reason: "entry '\(printable(entry.keyBytes))' (\(entry.size) bytes at byte \(entry.offset)) runs past the end of the shard (\(shard.bytes.count) bytes)")
        }
    }

    /// The entry of `key`.
    public func entry(_ key: String) throws(TensorFlowError) -> BundleEntry {
        try entry(keyBytes: Array(key.utf8))
    }

    /// The entry of a key given as its bytes (the binary keys of slices).
    public func entry(keyBytes key: [UInt8]) throws(TensorFlowError) -> BundleEntry {
        guard let k = entryIndex[key] else { throw .missingKey(path: Self.indexPath(prefix: prefix), key: printable(key)) }
        return entries[k]
    }

    /// Whether the bundle has an entry of `key`.
    public func contains(_ key: String) -> Bool { entryIndex[Array(key.utf8)] != nil }

    /// The stored bytes of `key`'s tensor, in place in its mapped shard, after checking their
    /// CRC32C. Refused for sliced tensors and for types not stored raw (strings have
    /// `strings(_:)`).
    public func tensorBytes(_ key: String) throws(TensorFlowError) -> TensorBytes {
        try tensorBytes(of: try entry(key))
    }

    /// The stored bytes of an entry of this bundle (found again by its key, so an entry of
    /// another bundle cannot point past these shards), checked as `tensorBytes(_:)` does.
    public func tensorBytes(of given: BundleEntry) throws(TensorFlowError) -> TensorBytes {
        let entry = try entry(keyBytes: given.keyBytes)
        let key = printable(entry.keyBytes)
        let indexPath = Self.indexPath(prefix: prefix)
        guard entry.dtype.byteWidth != nil else {
            throw .unsupported(path: indexPath, reason: "tensor '\(key)' is a \(entry.dtype.name) tensor, not stored as raw elements")
        }
        if entry.isSliced { return try assembled(entry, slices: slices(of: entry)) }
        let stored = try storedBytes(entry)
        let actual = CRC32C.checksum(stored.bytes)
        guard CRC32C.mask(actual) == entry.maskedCRC32C else {
            throw .corruptData(path: stored.path, reason: "tensor '\(key)' (\(entry.size) bytes at byte \(entry.offset)) fails its checksum (index \(hex(CRC32C.unmask(entry.maskedCRC32C))), data \(hex(actual)))")
        }
        return stored
    }

    /// The elements of a floating-point tensor as a doconv `Tensor`.
    public func tensor(_ key: String) throws(TensorFlowError) -> Tensor {
        let bytes = try tensorBytes(key)
        guard let type = bytes.entry.dtype.elementType else {
            throw .unsupported(path: Self.indexPath(prefix: prefix), reason: "tensor '\(key)' is \(bytes.entry.dtype.name), not a floating-point type")
        }
        defer { withExtendedLifetime(bytes.owner) {} }
        // Sizes were checked against the shape when the bundle was opened.
        do throws(TensorError) {
            let values = try ElementCodec.decode(bytes.bytes, as: type, count: bytes.entry.elementCount)
            return try Tensor(shape: bytes.entry.shape, values: values)
        } catch {
            throw .corruptData(path: bytes.path, reason: "tensor '\(key)': \(error)")
        }
    }

    /// The elements of a string tensor.
    ///
    /// TensorFlow stores N strings as N varint64 lengths, a 4-byte masked CRC32C of the
    /// lengths, then the string bytes. The entry's CRC32C is not over those bytes but over
    /// each length as a little-endian uint32 (uint64 above 4 GiB), then the 4 stored
    /// checksum bytes, then the string bytes; both are checked.
    public func strings(_ key: String) throws(TensorFlowError) -> [[UInt8]] {
        let entry = try entry(key)
        guard entry.dtype == .string, !entry.isSliced else {
            throw .unsupported(path: Self.indexPath(prefix: prefix), reason: "tensor '\(key)' is \(entry.isSliced ? "sliced" : entry.dtype.name), not a string tensor in one piece")
        }
        let stored = try storedBytes(entry)
        let path = stored.path
        var cursor = ByteCursor(stored.bytes, context: "string tensor '\(key)': ") { .corruptData(path: path, reason: $0) }
        var lengths: [Int] = []
        var crc: UInt32 = 0
        for k in 0..<entry.elementCount {
            let length = try cursor.length("the length of string \(k)")
            if let narrow = UInt32(exactly: length) {
                crc = withUnsafeBytes(of: narrow.littleEndian) { CRC32C.extend(crc, $0) }
            } else {
                crc = withUnsafeBytes(of: UInt64(length).littleEndian) { CRC32C.extend(crc, $0) }
            }
            lengths.append(length)
        }
        let lengthChecksum = try cursor.take(4, "the lengths' checksum")
        let storedLengthChecksum = UInt32(littleEndian: lengthChecksum.loadUnaligned(as: UInt32.self))
        guard CRC32C.unmask(storedLengthChecksum) == crc else {
            throw .corruptData(path: path, reason: "string tensor '\(key)': the lengths fail their checksum")
        }
        crc = CRC32C.extend(crc, lengthChecksum)
        var strings: [[UInt8]] = []
        for (k, length) in lengths.enumerated() {
            let bytes = try cursor.take(length, "string \(k)")
            crc = CRC32C.extend(crc, bytes)
            strings.append(Array(bytes))
        }
        guard cursor.atEnd else { throw .corruptData(path: path, reason: "string tensor '\(key)': \(cursor.remaining) bytes after its last string") }
        guard CRC32C.mask(crc) == entry.maskedCRC32C else {
            throw .corruptData(path: path, reason: "string tensor '\(key)' fails its checksum")
        }
        return strings
    }

    /// The mapped data shards (what a writer may copy from in the kernel).
    public var mappedShards: [MappedFile] { shards }

    /// The entries holding a sliced tensor's slices, in key order.
    func slices(of entry: BundleEntry) -> [BundleEntry] {
        (sliceEntries[printable(entry.keyBytes)] ?? []).map { entries[$0] }
    }

    /// The entry's byte range in its shard (checked at open).
    func storedBytes(_ entry: BundleEntry) throws(TensorFlowError) -> TensorBytes {
        let file = shards[entry.shardID]
        return TensorBytes(entry: entry, owner: file, path: file.path, bytes: UnsafeRawBufferPointer(rebasing: file.bytes[entry.offset..<(entry.offset + entry.size)]))
    }
}

/// A tensor's bytes: in place in the mapped shard, or put together from a sliced tensor's
/// slices; `owner` keeps them alive.
public struct TensorBytes {
    public let entry: BundleEntry
    /// What holds `bytes` (the mapped shard, or the assembled copy): they are valid while it lives.
    public let owner: AnyObject
    /// The file they come from, for messages.
    public let path: String
    public let bytes: UnsafeRawBufferPointer

    /// The bytes copied out.
    public var array: [UInt8] { withExtendedLifetime(owner) { Array(bytes) } }
}
