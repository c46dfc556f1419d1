/// Writes a table in the layout `TensorBundleTable` reads and TensorFlow's table builder
/// writes: uncompressed data blocks of about `blockSize` bytes (restart points every 16
/// entries), an empty metaindex block, an index block with a restart point per entry whose
/// keys are LevelDB's shortened separators, and the footer.
struct TableWriter {
    /// TensorFlow's table option default.
    static let defaultBlockSize = 262_144

    /// The table file of `entries`, which must be sorted by key with no key twice.
    static func encode(_ entries: [TensorBundleTable.Entry], blockSize: Int = defaultBlockSize) -> [UInt8] {
        var file: [UInt8] = []
        var index = TableBlockBuilder(restartInterval: 1)
        var block = TableBlockBuilder()
        var pending: (lastKey: [UInt8], handle: BlockHandle)?

        func flush() {
            guard !block.isEmpty else { return }
            pending = (block.lastKey, appendBlock(block.finish(), to: &file))
            block = TableBlockBuilder()
        }
        for entry in entries {
            // The index entry of a finished block waits for the next key, so that its
            // separator can be short.
            if let (lastKey, handle) = pending {
                index.add(key: shortestSeparator(lastKey, entry.key), value: handle.encoded)
                pending = nil
            }
            block.add(key: entry.key, value: entry.value)
            if block.estimatedSize >= blockSize { flush() }
        }
        flush()
        if let (lastKey, handle) = pending { index.add(key: shortSuccessor(lastKey), value: handle.encoded) }
        let metaindex = appendBlock(TableBlockBuilder().finish(), to: &file)
        let indexHandle = appendBlock(index.finish(), to: &file)
        file += TableFooter(metaindex: metaindex, index: indexHandle).encode()
        return file
    }

    /// Appends a block and its trailer (no compression, masked CRC32C of block + type).
    static func appendBlock(_ contents: [UInt8], to file: inout [UInt8]) -> BlockHandle {
        let handle = BlockHandle(offset: UInt64(file.count), size: UInt64(contents.count))
        var trailed = contents
        trailed.append(TableFormat.noCompression)
        let crc = CRC32C.checksum(trailed)
        file += trailed
        WireEncoding.appendFixed32(CRC32C.mask(crc), to: &file)
        return handle
    }

    /// A short key k with `start` <= k < `limit` (LevelDB's bytewise comparator): the
    /// common prefix and one byte past `start`'s where that stays below `limit`, else `start`.
    static func shortestSeparator(_ start: [UInt8], _ limit: [UInt8]) -> [UInt8] {
        var shared = 0
        while shared < min(start.count, limit.count), start[shared] == limit[shared] { shared += 1 }
        guard shared < min(start.count, limit.count) else { return start }
        let byte = start[shared]
        guard byte < 0xFF, byte + 1 < limit[shared] else { return start }
        return Array(start[..<shared]) + [byte + 1]
    }

    /// A short key at least `key`: its first byte that is not 0xFF incremented, the rest cut.
    static func shortSuccessor(_ key: [UInt8]) -> [UInt8] {
        guard let k = key.firstIndex(where: { $0 != 0xFF }) else { return key }
        return Array(key[..<k]) + [key[k] + 1]
    }
}

extension BlockHandle {
    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        encode(into: &bytes)
        return bytes
    }
}
