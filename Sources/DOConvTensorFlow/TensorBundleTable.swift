import DOConvFileIO

/// A TensorFlow `.index` file read whole: the LevelDB-format table of a tensor bundle, its
/// key/value entries in key order. Every block is bounds-checked against the file, its
/// checksum verified, its entries parsed strictly (`TableBlock`); the values are copied out,
/// so the table holds no mapping.
public struct TensorBundleTable: Sendable {
    /// One key and its value (a serialized BundleHeaderProto for key "", a
    /// BundleEntryProto otherwise).
    public struct Entry: Sendable, Equatable {
        public var key: [UInt8]
        public var value: [UInt8]

        public init(key: [UInt8], value: [UInt8]) {
            self.key = key
            self.value = value
        }

        /// The key as text (TensorFlow's keys are UTF-8 object paths).
        public var keyString: String { String(decoding: key, as: UTF8.self) }
    }

    public let path: String
    /// Sorted by key, bytewise, no key twice.
    public let entries: [Entry]

    /// Reads the table at `path`.
    public init(path: String) throws(TensorFlowError) {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .file(error) }
        try self.init(bytes: file.bytes, path: path)
    }

    /// Reads a table from `bytes`; `path` names it in errors.
    public init(bytes: UnsafeRawBufferPointer, path: String) throws(TensorFlowError) {
        self.path = path
        let footer = try TableFooter(file: bytes, path: path)
        let limit = bytes.count - TableFormat.footerLength
        // The metaindex is empty in TensorFlow's tables and holds nothing this reader needs;
        // only its handle is checked, as TensorFlow does not read it either.
        guard footer.metaindex.offset <= UInt64(limit), footer.metaindex.size <= UInt64(limit) - footer.metaindex.offset else {
            throw .corruptIndex(path: path, reason: "the metaindex handle (\(footer.metaindex.size) bytes at byte \(footer.metaindex.offset)) points past the footer")
        }
        let indexBytes = try footer.index.contents(in: bytes, limit: limit, what: "the index block", path: path)
        // Shared prefixes are copied per entry; a hostile file could make a few bytes
        // claim gigabytes of keys without this budget (real keys stay far below it).
        var keyBudget = bytes.count.multipliedReportingOverflow(by: 16).overflow ? Int.max : 16 * bytes.count + (1 << 20)
        let index = try TableBlock(indexBytes, what: "the index block", path: path, keyBudget: &keyBudget)

        var entries: [Entry] = []
        // Data blocks follow each other in the file, as written: so each byte is checked
        // and parsed once, however many index entries a hostile file has.
        var nextBlock: UInt64 = 0
        for (k, separator) in index.entries.enumerated() {
            let what = "data block \(k)"
            var cursor = ByteCursor(separator.value, context: "the index block's entry \(k): ") { .corruptIndex(path: path, reason: $0) }
            let handle = try BlockHandle.decode(&cursor, "the block handle")
            guard cursor.atEnd else { throw .corruptIndex(path: path, reason: "the index block's entry \(k) holds \(cursor.remaining) bytes after its block handle") }
            guard handle.offset >= nextBlock else {
                throw .corruptIndex(path: path, reason: "\(what) at byte \(handle.offset) overlaps the block before it (which ends at byte \(nextBlock))")
            }
            let contents = try handle.contents(in: bytes, limit: limit, what: what, path: path)
            nextBlock = handle.offset + handle.size + UInt64(TableFormat.trailerLength)
            let block = try TableBlock(contents, what: "\(what) (at byte \(handle.offset))", path: path, keyBudget: &keyBudget)
            for entry in block.entries {
                if let last = entries.last, !last.key.lexicographicallyPrecedes(entry.key) {
                    throw .corruptIndex(path: path, reason: "\(what): key '\(printable(entry.key))' does not follow the previous block's '\(printable(last.key))'")
                }
                // The index key is at least every key of its block (LevelDB's separator).
                guard !separator.key.lexicographicallyPrecedes(entry.key) else {
                    throw .corruptIndex(path: path, reason: "\(what): key '\(printable(entry.key))' lies past its index key '\(printable(separator.key))'")
                }
                entries.append(Entry(key: entry.key, value: Array(entry.value)))
            }
        }
        self.entries = entries
    }

    /// The value of `key`, nil when the table has none (binary search).
    public func value(forKey key: [UInt8]) -> [UInt8]? {
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].key.lexicographicallyPrecedes(key) { low = middle + 1 } else { high = middle }
        }
        return low < entries.count && entries[low].key == key ? entries[low].value : nil
    }

    public func value(forKey key: String) -> [UInt8]? { value(forKey: Array(key.utf8)) }
}
