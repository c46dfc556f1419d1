/// Bounds-checked little-endian reads from a byte buffer (a mapped file): a read past the
/// end is the caller's error, never a crash. `outOfBounds` turns the reason into the
/// caller's error type (a corrupt-file error naming the file, say).
public struct BoundedBytes<Failure: Error> {
    public let bytes: UnsafeRawBufferPointer
    private let outOfBounds: (String) -> Failure

    public init(_ bytes: UnsafeRawBufferPointer, outOfBounds: @escaping (String) -> Failure) {
        self.bytes = bytes
        self.outOfBounds = outOfBounds
    }

    /// The error `outOfBounds` makes of `reason`.
    public func failure(_ reason: String) -> Failure { outOfBounds(reason) }

    public func slice(_ offset: Int, _ count: Int) throws(Failure) -> UnsafeRawBufferPointer {
        guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else {
            throw outOfBounds("truncated: \(count) bytes at byte \(offset) run past the end of the file")
        }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }

    public func u16(_ offset: Int) throws(Failure) -> UInt16 {
        UInt16(littleEndian: try slice(offset, 2).loadUnaligned(as: UInt16.self))
    }

    public func u32(_ offset: Int) throws(Failure) -> UInt32 {
        UInt32(littleEndian: try slice(offset, 4).loadUnaligned(as: UInt32.self))
    }

    public func u64(_ offset: Int) throws(Failure) -> UInt64 {
        UInt64(littleEndian: try slice(offset, 8).loadUnaligned(as: UInt64.self))
    }

    /// A 64-bit offset or size, which must fit in the buffer.
    public func offset64(_ offset: Int) throws(Failure) -> Int {
        let value = try u64(offset)
        guard value <= UInt64(bytes.count) else { throw outOfBounds("an offset past the end of the file") }
        return Int(value)
    }
}
