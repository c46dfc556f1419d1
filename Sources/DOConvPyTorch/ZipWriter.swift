import CDOConvZlib
import DOConvFileIO

/// Writes a zip of stored (uncompressed) entries the way torch.save does: each entry's
/// data starts on a 64-byte boundary (padding in the local header's extra field), so that
/// torch can map tensors in place. ZIP64 records are written when the archive needs them.
struct ZipWriter {
    static let alignment = 64
    private let file: AtomicFileWriter
    private var central: [UInt8] = []
    private var count = 0
    private let zip64: Bool

    /// `zip64`: whether offsets or sizes may pass 4 GiB (decided from the total up front).
    init(file: AtomicFileWriter, zip64: Bool) {
        self.file = file
        self.zip64 = zip64
    }

    /// The CRC-32 of `bytes` (zlib's, which runs at several GB/s).
    static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
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

    /// Adds one stored entry; `crc32` when already known (an entry copied from the input).
    mutating func add(name: String, data: UnsafeRawBufferPointer, crc32 known: UInt32? = nil) {
        let crc = known ?? Self.crc32(data)
        let nameBytes = Array(name.utf8)
        let offset = file.offset
        var header = LittleEndianBytes()
        header.u32(0x0403_4B50)
        header.u16(zip64 ? 45 : 20) // version needed
        header.u16(0) // flags
        header.u16(0) // stored
        header.u16(0); header.u16(0x21) // time, date: 1980-01-01, for reproducible files
        header.u32(crc)
        header.u32(zip64 ? 0xFFFF_FFFF : UInt32(data.count))
        header.u32(zip64 ? 0xFFFF_FFFF : UInt32(data.count))
        header.u16(UInt16(nameBytes.count))
        var extra = LittleEndianBytes()
        if zip64 {
            extra.u16(0x0001); extra.u16(16)
            extra.u64(UInt64(data.count)); extra.u64(UInt64(data.count))
        }
        // Padding field ('FB', as torch writes it) up to the alignment.
        let unpadded = offset + 30 + nameBytes.count + extra.bytes.count
        var padding = (Self.alignment - (unpadded + 4) % Self.alignment) % Self.alignment
        if unpadded % Self.alignment == 0 { padding = -4 }
        if padding >= 0 {
            extra.u16(0x4246); extra.u16(UInt16(padding))
            extra.bytes += [UInt8](repeating: 0x5A, count: padding)
        }
        header.u16(UInt16(extra.bytes.count))
        file.write(header.bytes + nameBytes + extra.bytes)
        file.write(data)

        var entry = LittleEndianBytes()
        entry.u32(0x0201_4B50)
        entry.u16(zip64 ? 45 : 20); entry.u16(zip64 ? 45 : 20)
        entry.u16(0); entry.u16(0)
        entry.u16(0); entry.u16(0x21)
        entry.u32(crc)
        entry.u32(zip64 ? 0xFFFF_FFFF : UInt32(data.count))
        entry.u32(zip64 ? 0xFFFF_FFFF : UInt32(data.count))
        entry.u16(UInt16(nameBytes.count))
        entry.u16(zip64 ? 28 : 0)
        entry.u16(0); entry.u16(0); entry.u16(0); entry.u32(0)
        entry.u32(zip64 ? 0xFFFF_FFFF : UInt32(offset))
        entry.bytes += nameBytes
        if zip64 {
            entry.u16(0x0001); entry.u16(24)
            entry.u64(UInt64(data.count)); entry.u64(UInt64(data.count)); entry.u64(UInt64(offset))
        }
        central += entry.bytes
        count += 1
    }

    /// Writes the central directory and end records.
    func finish() {
        let directoryOffset = file.offset
        file.write(central)
        var end = LittleEndianBytes()
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
