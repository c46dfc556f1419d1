import CDOConvZlib
import DOConvFileIO

/// Why a zip archive cannot be read.
public struct ZipError: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public var description: String { reason }

    init(_ reason: String) {
        self.reason = reason
    }
}

/// The entries of a zip file, read from its central directory, with the data of each entry
/// located in the mapped file. torch.save and Keras write their archives stored, so their
/// contents are read in place; deflated entries are inflated on request. ZIP64 is read too
/// (files over 4 GiB).
public struct ZipArchive {
    public struct Entry {
        public var name: String
        /// 0 stored, 8 deflated.
        public var method: UInt16
        public var crc32: UInt32
        /// The uncompressed size.
        public var size: Int
        /// The entry's data (stored entries only; empty otherwise).
        public var data: UnsafeRawBufferPointer
        /// The entry's bytes as they lie in the file (the data itself when stored).
        public var compressed: UnsafeRawBufferPointer
    }

    public let entries: [Entry]

    /// The archive in `bytes` (a mapped file, which must outlive the archive).
    public init(bytes: UnsafeRawBufferPointer) throws(ZipError) {
        let reader = BoundedBytes(bytes, outOfBounds: ZipError.init)
        // End of central directory: the last signature within 64 KiB + 22 bytes of the end.
        let lowest = max(0, bytes.count - 22 - 0xFFFF)
        var eocd = -1
        var k = bytes.count - 22
        while k >= lowest {
            if try reader.u32(k) == 0x0605_4B50 { eocd = k; break }
            k -= 1
        }
        guard eocd >= 0 else { throw ZipError("no zip end record (the file is truncated or not a zip)") }
        var count = Int(try reader.u16(eocd + 10))
        var directorySize = Int(try reader.u32(eocd + 12))
        var directoryOffset = Int(try reader.u32(eocd + 16))
        if eocd >= 20, try reader.u32(eocd - 20) == 0x0706_4B50 { // ZIP64 locator
            let record = try reader.offset64(eocd - 20 + 8)
            guard try reader.u32(record) == 0x0606_4B50 else { throw ZipError("bad ZIP64 end record") }
            count = try reader.offset64(record + 32)
            directorySize = try reader.offset64(record + 40)
            directoryOffset = try reader.offset64(record + 48)
        }
        guard directoryOffset <= bytes.count, directorySize <= bytes.count - directoryOffset, count <= directorySize / 46 else {
            throw ZipError("the central directory lies past the end of the file")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var at = directoryOffset
        for _ in 0..<count {
            guard try reader.u32(at) == 0x0201_4B50 else { throw ZipError("bad central directory entry at byte \(at)") }
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
                throw ZipError("entry '\(name)' lies past the end of the file")
            }
            let local = Int(localOffset)
            guard try reader.u32(local) == 0x0403_4B50 else { throw ZipError("entry '\(name)' has no local header") }
            let dataStart = local + 30 + Int(try reader.u16(local + 26)) + Int(try reader.u16(local + 28))
            var data = UnsafeRawBufferPointer(start: nil, count: 0)
            if method == 0 {
                guard compressed == size else { throw ZipError("stored entry '\(name)' has two sizes") }
                data = try reader.slice(dataStart, Int(size))
            }
            let stored = try reader.slice(dataStart, Int(compressed))
            entries.append(Entry(name: name, method: method, crc32: crc, size: Int(size), data: data, compressed: stored))
        }
        self.entries = entries
    }
}

extension ZipArchive {
    /// The uncompressed contents of `entry`: its data when stored, inflated when deflated,
    /// checked against its CRC-32 and size either way.
    public func contents(of entry: Entry) throws(ZipError) -> [UInt8] {
        let bytes: [UInt8]
        switch entry.method {
        case 0: bytes = Array(entry.data)
        case 8: bytes = try Self.inflate(entry.compressed, size: entry.size, name: entry.name)
        default: throw ZipError("entry '\(entry.name)' is compressed with method \(entry.method) (only stored and deflated entries are read)")
        }
        guard bytes.count == entry.size else { throw ZipError("entry '\(entry.name)' holds \(bytes.count) bytes, not the \(entry.size) its header says") }
        guard bytes.withUnsafeBytes({ ZipWriter.crc32($0) }) == entry.crc32 else { throw ZipError("entry '\(entry.name)' fails its CRC-32 check") }
        return bytes
    }

    /// Raw deflate data (no zlib header) inflated to exactly `size` bytes.
    private static func inflate(_ input: UnsafeRawBufferPointer, size: Int, name: String) throws(ZipError) -> [UInt8] {
        guard size > 0 else { return [] } // nothing to inflate; the CRC check still runs
        var output = [UInt8](repeating: 0, count: size)
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw ZipError("entry '\(name)': zlib cannot start inflating")
        }
        defer { inflateEnd(&stream) }
        let status: Int32 = output.withUnsafeMutableBytes { out in
            let inBase = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            let outBase = out.baseAddress?.assumingMemoryBound(to: Bytef.self)
            var (fed, given) = (0, 0)
            var status = Z_OK
            // zlib counts in 32-bit units: hand it at most 1 GiB of input and of output at a time.
            while status == Z_OK {
                if stream.avail_in == 0, fed < input.count {
                    let chunk = min(input.count - fed, 1 << 30)
                    (stream.next_in, stream.avail_in) = (inBase.map { $0 + fed }, uInt(chunk))
                    fed += chunk
                }
                if stream.avail_out == 0 {
                    // The data inflating past `size` ends here as an error below.
                    guard given < out.count else { return Z_BUF_ERROR }
                    let chunk = min(out.count - given, 1 << 30)
                    (stream.next_out, stream.avail_out) = (outBase.map { $0 + given }, uInt(chunk))
                    given += chunk
                }
                status = CDOConvZlib.inflate(&stream, Z_NO_FLUSH)
            }
            // Ended, and exactly filled: the size check in `contents` catches a short one.
            return status == Z_STREAM_END && stream.avail_out == 0 && given == out.count ? Z_STREAM_END : status
        }
        guard status == Z_STREAM_END else { throw ZipError("entry '\(name)': its deflated data is corrupt (zlib status \(status))") }
        return output
    }
}
