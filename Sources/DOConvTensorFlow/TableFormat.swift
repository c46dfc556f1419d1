/// The pieces of the LevelDB table format that TensorFlow writes its `.index` files in
/// (tsl/lib/io: format, block, table): block handles, the footer, block trailers.
///
/// A table is data blocks, a metaindex block (empty in TensorFlow's files), an index block
/// whose entries map a separator key to the handle of the data block holding the keys up to
/// it, and the 48-byte footer: the metaindex and index handles as varints, zero padding to 40
/// bytes, then the magic number as two little-endian uint32 (low half first). Every block is
/// followed by a 5-byte trailer: its compression type and the masked CRC32C of the block and
/// that type byte.
enum TableFormat {
    static let magic: UInt64 = 0xDB47_7524_8B80_FB57
    static let footerLength = 48
    /// Two block handles at most (two varint64 each): the footer's handle area.
    static let handleArea = 40
    static let trailerLength = 5
    static let noCompression: UInt8 = 0
    static let snappyCompression: UInt8 = 1
    /// Entries between restart points: what LevelDB and TensorFlow write.
    static let restartInterval = 16
}

/// Where a block sits in the table file (its trailer follows it).
struct BlockHandle: Equatable {
    var offset: UInt64
    var size: UInt64

    static func decode(_ cursor: inout ByteCursor, _ what: String) throws(TensorFlowError) -> BlockHandle {
        BlockHandle(offset: try cursor.varint64("\(what)'s offset"), size: try cursor.varint64("\(what)'s size"))
    }

    func encode(into bytes: inout [UInt8]) {
        WireEncoding.appendVarint(offset, to: &bytes)
        WireEncoding.appendVarint(size, to: &bytes)
    }

    /// The block's bytes, after checking that it and its trailer lie in `file[0..<limit]`,
    /// that it is not compressed, and that its checksum holds.
    func contents(in file: UnsafeRawBufferPointer, limit: Int, what: String, path: String) throws(TensorFlowError) -> UnsafeRawBufferPointer {
        // In UInt64 and without a sum: a handle may claim anything.
        let room = UInt64(max(0, limit - TableFormat.trailerLength))
        guard limit >= TableFormat.trailerLength, offset <= room, size <= room - offset else {
            throw .corruptIndex(path: path, reason: "\(what) (\(size) bytes at byte \(offset), with its 5-byte trailer) runs past the \(limit) bytes before the footer")
        }
        let start = Int(offset)
        let end = start + Int(size)
        let type = file[end]
        let stored = UInt32(littleEndian: file.loadUnaligned(fromByteOffset: end + 1, as: UInt32.self))
        let actual = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: file[start..<(end + 1)]))
        guard CRC32C.unmask(stored) == actual else {
            throw .corruptIndex(path: path, reason: "\(what) at byte \(offset) fails its checksum (stored \(hex(CRC32C.unmask(stored))), computed \(hex(actual)))")
        }
        switch type {
        case TableFormat.noCompression: break
        case TableFormat.snappyCompression:
            throw .unsupported(path: path, reason: "\(what) at byte \(offset) is snappy-compressed (TensorFlow writes uncompressed index blocks; this reader has no snappy)")
        default:
            throw .corruptIndex(path: path, reason: "\(what) at byte \(offset) has an unknown compression type \(type)")
        }
        return UnsafeRawBufferPointer(rebasing: file[start..<end])
    }
}

/// The last 48 bytes of a table.
struct TableFooter: Equatable {
    var metaindex: BlockHandle
    var index: BlockHandle

    init(metaindex: BlockHandle, index: BlockHandle) {
        self.metaindex = metaindex
        self.index = index
    }

    init(file: UnsafeRawBufferPointer, path: String) throws(TensorFlowError) {
        guard file.count >= TableFormat.footerLength else {
            throw .corruptIndex(path: path, reason: "\(file.count) bytes, shorter than a table's \(TableFormat.footerLength)-byte footer")
        }
        let start = file.count - TableFormat.footerLength
        let lo = UInt64(UInt32(littleEndian: file.loadUnaligned(fromByteOffset: start + 40, as: UInt32.self)))
        let hi = UInt64(UInt32(littleEndian: file.loadUnaligned(fromByteOffset: start + 44, as: UInt32.self)))
        let magic = hi << 32 | lo
        guard magic == TableFormat.magic else {
            throw .corruptIndex(path: path, reason: "not a TensorFlow table (footer magic \(String(magic, radix: 16)), expected \(String(TableFormat.magic, radix: 16)))")
        }
        var cursor = ByteCursor(UnsafeRawBufferPointer(rebasing: file[start..<(start + TableFormat.handleArea)]), context: "footer: ") {
            .corruptIndex(path: path, reason: $0)
        }
        metaindex = try BlockHandle.decode(&cursor, "the metaindex handle")
        index = try BlockHandle.decode(&cursor, "the index handle")
    }

    func encode() -> [UInt8] {
        var bytes: [UInt8] = []
        metaindex.encode(into: &bytes)
        index.encode(into: &bytes)
        bytes += [UInt8](repeating: 0, count: TableFormat.handleArea - bytes.count)
        WireEncoding.appendFixed32(UInt32(truncatingIfNeeded: TableFormat.magic), to: &bytes)
        WireEncoding.appendFixed32(UInt32(truncatingIfNeeded: TableFormat.magic >> 32), to: &bytes)
        return bytes
    }
}

func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
