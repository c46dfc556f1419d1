/// Bounds-checked reads of the integers TensorFlow's files are made of (LevelDB varints,
/// little-endian fixed32): a read past the end, or a varint longer than its type allows, is a
/// corrupt-file error naming where it happened.
struct ByteCursor {
    let bytes: UnsafeRawBufferPointer
    /// How a failure is reported: the file and which of its parts was being read.
    let failure: (String) -> TensorFlowError
    /// Prefixed to every failure's reason ("block at byte 1234: ").
    let context: String
    private(set) var position = 0

    init(_ bytes: UnsafeRawBufferPointer, context: String, failure: @escaping (String) -> TensorFlowError) {
        self.bytes = bytes
        self.context = context
        self.failure = failure
    }

    var remaining: Int { bytes.count - position }
    var atEnd: Bool { position == bytes.count }

    func fail(_ reason: String) -> TensorFlowError { failure(context + reason) }

    mutating func take(_ count: Int, _ what: @autoclosure () -> String) throws(TensorFlowError) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else {
            throw fail("\(what()) (\(count) bytes at byte \(position)) runs past the end (\(bytes.count) bytes)")
        }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    mutating func fixed32(_ what: @autoclosure () -> String) throws(TensorFlowError) -> UInt32 {
        UInt32(littleEndian: try take(4, what()).loadUnaligned(as: UInt32.self))
    }

    /// A varint of at most 10 bytes whose value fits 64 bits.
    mutating func varint64(_ what: @autoclosure () -> String) throws(TensorFlowError) -> UInt64 {
        let start = position
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard position < bytes.count else { throw fail("\(what()) (a varint at byte \(start)) runs past the end") }
            let byte = bytes[position]
            position += 1
            // The tenth byte may carry only the top bit of a 64-bit value.
            guard shift < 63 || byte <= 1 else { throw fail("\(what()) (a varint at byte \(start)) does not fit 64 bits") }
            value |= UInt64(byte & 0x7F) << UInt64(shift)
            if byte & 0x80 == 0 { return value }
        }
        throw fail("\(what()) (a varint at byte \(start)) is longer than 10 bytes")
    }

    /// A varint whose value fits 32 bits (LevelDB's lengths and counts).
    mutating func varint32(_ what: @autoclosure () -> String) throws(TensorFlowError) -> UInt32 {
        let start = position
        let value = try varint64(what())
        guard position - start <= 5, let narrow = UInt32(exactly: value) else {
            throw fail("\(what()) (a varint at byte \(start)) does not fit 32 bits")
        }
        return narrow
    }

    /// A varint that must be a usable length or count: below `Int.max`.
    mutating func length(_ what: @autoclosure () -> String) throws(TensorFlowError) -> Int {
        let start = position
        let value = try varint64(what())
        guard let length = Int(exactly: value) else { throw fail("\(what()) (a varint at byte \(start)) is \(value), past any file") }
        return length
    }
}

/// The encodings the reader decodes, for writing (varints, fixed32).
enum WireEncoding {
    static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    static func appendFixed32(_ value: UInt32, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}
