import DOConvFileIO

/// The entries of a zip file, read from its central directory, with the data of each
/// stored (uncompressed) entry located in the mapped file. torch.save writes its archives
/// stored, so tensors are read in place. ZIP64 is read too (files over 4 GiB).
struct ZipArchive {
    struct Entry {
        var name: String
        var method: UInt16
        var crc32: UInt32
        var size: Int
        /// The entry's data (stored entries only; empty otherwise).
        var data: UnsafeRawBufferPointer
    }

    let entries: [Entry]

    init(bytes: UnsafeRawBufferPointer, path: String) throws(PyTorchError) {
        let reader = ByteReader(bytes: bytes, path: path)
        // End of central directory: the last signature within 64 KiB + 22 bytes of the end.
        let lowest = max(0, bytes.count - 22 - 0xFFFF)
        var eocd = -1
        var k = bytes.count - 22
        while k >= lowest {
            if try reader.u32(k) == 0x0605_4B50 { eocd = k; break }
            k -= 1
        }
        guard eocd >= 0 else { throw .corrupt(path: path, reason: "no zip end record (the file is truncated or not a zip)") }
        var count = Int(try reader.u16(eocd + 10))
        var directorySize = Int(try reader.u32(eocd + 12))
        var directoryOffset = Int(try reader.u32(eocd + 16))
        if eocd >= 20, try reader.u32(eocd - 20) == 0x0706_4B50 { // ZIP64 locator
            let record = try reader.offset64(eocd - 20 + 8)
            guard try reader.u32(record) == 0x0606_4B50 else { throw .corrupt(path: path, reason: "bad ZIP64 end record") }
            count = try reader.offset64(record + 32)
            directorySize = try reader.offset64(record + 40)
            directoryOffset = try reader.offset64(record + 48)
        }
        guard directoryOffset <= bytes.count, directorySize <= bytes.count - directoryOffset, count <= directorySize / 46 else {
            throw .corrupt(path: path, reason: "the central directory lies past the end of the file")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var at = directoryOffset
        for _ in 0..<count {
            guard try reader.u32(at) == 0x0201_4B50 else { throw .corrupt(path: path, reason: "bad central directory entry at byte \(at)") }
            let method = try reader.u16(at + 10)
            let crc = try reader.u32(at + 16)
            var compressed = UInt64(try reader.u32(at + 20))
            var size = UInt64(try reader.u32(at + 24))
            let nameLength = Int(try reader.u16(at + 28))
            let extraLength = Int(try reader.u16(at + 30))
            let commentLength = Int(try reader.u16(at + 32))
            var localOffset = UInt64(try reader.u32(at + 42))
            let name = String(decoding: try reader.slice(at + 46, nameLength), as: UTF8.self)
            // ZIP64 extra field: the 64-bit values of the fields that hold 0xFFFFFFFF, in order.
            var extra = at + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = try reader.u16(extra)
                let length = Int(try reader.u16(extra + 2))
                if id == 0x0001 {
                    var field = extra + 4
                    if size == 0xFFFF_FFFF { size = try reader.u64(field); field += 8 }
                    if compressed == 0xFFFF_FFFF { compressed = try reader.u64(field); field += 8 }
                    if localOffset == 0xFFFF_FFFF { localOffset = try reader.u64(field) }
                }
                extra += 4 + length
            }
            at = extraEnd + commentLength
            guard localOffset <= UInt64(bytes.count), compressed <= UInt64(bytes.count), size <= UInt64(Int.max) else {
                throw .corrupt(path: path, reason: "entry '\(name)' lies past the end of the file")
            }
            let local = Int(localOffset)
            guard try reader.u32(local) == 0x0403_4B50 else { throw .corrupt(path: path, reason: "entry '\(name)' has no local header") }
            let dataStart = local + 30 + Int(try reader.u16(local + 26)) + Int(try reader.u16(local + 28))
            var data = UnsafeRawBufferPointer(start: nil, count: 0)
            if method == 0 {
                guard compressed == size else { throw .corrupt(path: path, reason: "stored entry '\(name)' has two sizes") }
                data = try reader.slice(dataStart, Int(size))
            }
            entries.append(Entry(name: name, method: method, crc32: crc, size: Int(size), data: data))
        }
        self.entries = entries
    }
}

/// Bounds-checked little-endian reads from a byte buffer: a read past the end is a
/// corrupt-file error, never a crash.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String

    func slice(_ offset: Int, _ count: Int) throws(PyTorchError) -> UnsafeRawBufferPointer {
        guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else {
            throw .corrupt(path: path, reason: "truncated: \(count) bytes at byte \(offset) run past the end of the file")
        }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }

    func u16(_ offset: Int) throws(PyTorchError) -> UInt16 {
        UInt16(littleEndian: try slice(offset, 2).loadUnaligned(as: UInt16.self))
    }

    func u32(_ offset: Int) throws(PyTorchError) -> UInt32 {
        UInt32(littleEndian: try slice(offset, 4).loadUnaligned(as: UInt32.self))
    }

    func u64(_ offset: Int) throws(PyTorchError) -> UInt64 {
        UInt64(littleEndian: try slice(offset, 8).loadUnaligned(as: UInt64.self))
    }

    /// A 64-bit offset or size, which must fit in the file.
    func offset64(_ offset: Int) throws(PyTorchError) -> Int {
        let value = try u64(offset)
        guard value <= UInt64(bytes.count) else { throw .corrupt(path: path, reason: "an offset past the end of the file") }
        return Int(value)
    }
}
