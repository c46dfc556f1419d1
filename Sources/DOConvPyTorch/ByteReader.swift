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
}
