import CDOConvZlib
import DOConvFileIO

/// Writes a zip of stored (uncompressed) entries laid out byte for byte as torch.save's
/// writer (miniz) lays them out: each entry's data starts on a 64-byte boundary (padding in
/// an 'FB' extra field of the local header), sizes and CRC follow the data in a data
/// descriptor, and ZIP64 fields appear exactly where an entry's size or offset needs them.
/// torch.load(mmap=True) and loading to the meta device compute storage offsets from this
/// layout instead of reading the headers, so it must match.
public struct ZipWriter {
    public static let alignment = 64
    private let file: AtomicFileWriter
    private var central: [UInt8] = []
    private var count = 0
    private static let limit = 0xFFFF_FFFF

    public init(file: AtomicFileWriter) {
        self.file = file
    }

    /// The CRC-32 of `bytes` (zlib's, which runs at several GB/s).
    public static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: uLong = CDOConvZlib.crc32(0, nil, 0)
        var start = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
        var left = bytes.count
        while left > 0, let base = start {
            let chunk = min(left, Int(UInt32.max >> 1))
            crc = CDOConvZlib.crc32(crc, base, uInt(chunk))
            start = base + chunk
            left -= chunk
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    /// The local header's extra field for an entry of `size` bytes whose header starts at
    /// `offset` with a `nameLength`-byte name: a ZIP64 field when the size or offset needs
    /// one, then the padding that aligns the data.
    static func localExtra(offset: Int, nameLength: Int, size: Int) -> [UInt8] {
        var extra = LittleEndianBytes()
        if size >= limit || offset >= limit {
            extra.u16(0x0001)
            extra.u16(UInt16((size >= limit ? 16 : 0) + (offset >= limit ? 8 : 0)))
            if size >= limit { extra.u64(UInt64(size)); extra.u64(UInt64(size)) }
            if offset >= limit { extra.u64(UInt64(offset)) }
        }
        let start = offset + 30 + nameLength + extra.bytes.count + 4
        let padding = (alignment - start % alignment) % alignment
        extra.u16(0x4246) // 'FB', as torch writes it
        extra.u16(UInt16(padding))
        extra.bytes += [UInt8](repeating: 0x5A, count: padding)
        return extra.bytes
    }

    /// Adds one stored entry; `crc32` when already known (an entry copied from the input).
    public mutating func add(name: String, data: UnsafeRawBufferPointer, crc32 known: UInt32? = nil) {
        let crc = known ?? Self.crc32(data)
        let nameBytes = Array(name.utf8)
        let offset = file.offset
        let large = data.count >= Self.limit || offset >= Self.limit
        let extra = Self.localExtra(offset: offset, nameLength: nameBytes.count, size: data.count)
        var header = LittleEndianBytes()
        header.u32(0x0403_4B50)
        header.u16(large ? 45 : 20) // version needed
        header.u16(0x0808) // sizes in a data descriptor; UTF-8 names
        header.u16(0) // stored
        header.u16(0); header.u16(0x21) // time, date: 1980-01-01, for reproducible files
        header.u32(0); header.u32(0); header.u32(0) // CRC and sizes: in the descriptor
        header.u16(UInt16(nameBytes.count))
        header.u16(UInt16(extra.count))
        file.write(header.bytes + nameBytes + extra)
        file.write(data)
        var descriptor = LittleEndianBytes()
        descriptor.u32(0x0807_4B50)
        descriptor.u32(crc)
        if large {
            descriptor.u64(UInt64(data.count)); descriptor.u64(UInt64(data.count))
        } else {
            descriptor.u32(UInt32(data.count)); descriptor.u32(UInt32(data.count))
        }
        file.write(descriptor.bytes)

        let bigSize = data.count >= Self.limit
        let bigOffset = offset >= Self.limit
        var entry = LittleEndianBytes()
        entry.u32(0x0201_4B50)
        entry.u16(large ? 45 : 20); entry.u16(large ? 45 : 20)
        entry.u16(0x0808); entry.u16(0)
        entry.u16(0); entry.u16(0x21)
        entry.u32(crc)
        entry.u32(bigSize ? 0xFFFF_FFFF : UInt32(data.count))
        entry.u32(bigSize ? 0xFFFF_FFFF : UInt32(data.count))
        entry.u16(UInt16(nameBytes.count))
        entry.u16(UInt16(large ? 4 + (bigSize ? 16 : 0) + (bigOffset ? 8 : 0) : 0))
        entry.u16(0); entry.u16(0); entry.u16(0); entry.u32(0)
        entry.u32(bigOffset ? 0xFFFF_FFFF : UInt32(offset))
        entry.bytes += nameBytes
        if large {
            entry.u16(0x0001); entry.u16(UInt16((bigSize ? 16 : 0) + (bigOffset ? 8 : 0)))
            if bigSize { entry.u64(UInt64(data.count)); entry.u64(UInt64(data.count)) }
            if bigOffset { entry.u64(UInt64(offset)) }
        }
        central += entry.bytes
        count += 1
    }

    /// Writes the central directory and end records.
    public func finish() {
        let directoryOffset = file.offset
        file.write(central)
        var end = LittleEndianBytes()
        let zip64 = count >= 0xFFFF || directoryOffset >= Self.limit || central.count >= Self.limit
        if zip64 {
            let record = file.offset
            end.u32(0x0606_4B50); end.u64(44); end.u16(45); end.u16(45); end.u32(0); end.u32(0)
            end.u64(UInt64(count)); end.u64(UInt64(count)); end.u64(UInt64(central.count)); end.u64(UInt64(directoryOffset))
            end.u32(0x0706_4B50); end.u32(0); end.u64(UInt64(record)); end.u32(1)
        }
        end.u32(0x0605_4B50); end.u16(0); end.u16(0)
        end.u16(zip64 ? 0xFFFF : UInt16(count)); end.u16(zip64 ? 0xFFFF : UInt16(count))
        end.u32(zip64 ? 0xFFFF_FFFF : UInt32(central.count))
        end.u32(zip64 ? 0xFFFF_FFFF : UInt32(directoryOffset))
        end.u16(0)
        file.write(end.bytes)
    }
}
