/// One block of a table, parsed: its entries in order.
///
/// Layout: entries, then the restart array (uint32 offsets of entries stored with their
/// whole key) and its count (uint32). An entry is three varints, the bytes its key shares
/// with the previous key, the bytes it adds, and its value's length, then the added key
/// bytes and the value. Keys must increase strictly (bytewise), every restart point must be
/// the start of an entry that shares nothing, and the entries must end exactly where the
/// restart array begins.
struct TableBlock {
    struct Entry {
        var key: [UInt8]
        var value: UnsafeRawBufferPointer
    }

    var entries: [Entry] = []

    /// The longest key accepted: TensorFlow's keys are object paths of a few hundred bytes,
    /// and prefix compression would otherwise let a small file claim huge keys.
    static let maxKeyLength = 1 << 16

    /// Parses `contents`. `keyBudget` is how many key bytes may still be made (shared
    /// prefixes are copied once per entry), spent here.
    init(_ contents: UnsafeRawBufferPointer, what: String, path: String, keyBudget: inout Int) throws(TensorFlowError) {
        func corrupt(_ reason: String) -> TensorFlowError { .corruptIndex(path: path, reason: "\(what): \(reason)") }
        guard contents.count >= 4 else { throw corrupt("\(contents.count) bytes, too short for a restart count") }
        let restartCount = Int(UInt32(littleEndian: contents.loadUnaligned(fromByteOffset: contents.count - 4, as: UInt32.self)))
        guard restartCount >= 1, restartCount <= (contents.count - 4) / 4 else {
            throw corrupt("\(restartCount) restart points claimed, room for \((contents.count - 4) / 4)")
        }
        let entriesEnd = contents.count - 4 - 4 * restartCount
        var restarts: [Int] = []
        restarts.reserveCapacity(restartCount)
        for k in 0..<restartCount {
            restarts.append(Int(UInt32(littleEndian: contents.loadUnaligned(fromByteOffset: entriesEnd + 4 * k, as: UInt32.self))))
        }

        var cursor = ByteCursor(UnsafeRawBufferPointer(rebasing: contents[0..<entriesEnd]), context: "\(what): ") {
            .corruptIndex(path: path, reason: $0)
        }
        var previous: [UInt8] = []
        var nextRestart = 0
        while !cursor.atEnd {
            let start = cursor.position
            let shared = Int(try cursor.varint32("entry \(entries.count)'s shared key length"))
            let added = Int(try cursor.varint32("entry \(entries.count)'s key length"))
            let valueLength = Int(try cursor.varint32("entry \(entries.count)'s value length"))
            guard shared <= previous.count else {
                throw corrupt("entry \(entries.count) at byte \(start) shares \(shared) key bytes with a previous key of \(previous.count)")
            }
            // Restart points are where an entry stores its whole key.
            let isRestart = nextRestart < restarts.count && restarts[nextRestart] == start
            if isRestart { nextRestart += 1 }
            guard shared == 0 || !isRestart else { throw corrupt("restart point \(nextRestart - 1) at byte \(start) is an entry that shares its key") }
            guard !entries.isEmpty || isRestart else { throw corrupt("the first restart point is byte \(restarts[0]), not the first entry") }
            guard added <= Self.maxKeyLength - shared else {
                throw corrupt("entry \(entries.count) at byte \(start) has a key of \(shared + added) bytes (at most \(Self.maxKeyLength))")
            }
            let keyLength = shared + added
            guard keyLength <= keyBudget else { throw corrupt("keys that share prefixes expand past \(keyBudget) bytes") }
            keyBudget -= keyLength
            var key = Array(previous[0..<shared])
            key += try cursor.take(added, "entry \(entries.count)'s key")
            let value = try cursor.take(valueLength, "entry \(entries.count)'s value")
            guard entries.isEmpty || previous.lexicographicallyPrecedes(key) else {
                throw corrupt("entry \(entries.count) at byte \(start): keys out of order ('\(printable(key))' after '\(printable(previous))')")
            }
            entries.append(Entry(key: key, value: value))
            previous = key
        }
        // An empty block (an empty table's) has the one restart point 0 and nothing else.
        guard nextRestart == restarts.count || (entries.isEmpty && restarts == [0]) else {
            throw corrupt("restart point \(nextRestart) (byte \(restarts[nextRestart])) is not the start of an entry in order")
        }
    }
}

/// Builds blocks in the layout `TableBlock` reads: keys must be added in increasing order.
struct TableBlockBuilder {
    private(set) var bytes: [UInt8] = []
    private var restarts: [UInt32] = [0]
    private var sinceRestart = 0
    private(set) var lastKey: [UInt8] = []
    private(set) var count = 0
    /// Entries from one restart point to the next (1 in index blocks, so each is found by
    /// binary search alone).
    let restartInterval: Int

    init(restartInterval: Int = TableFormat.restartInterval) {
        self.restartInterval = restartInterval
    }

    var isEmpty: Bool { count == 0 }

    /// Bytes of the finished block, restart array included.
    var estimatedSize: Int { bytes.count + 4 * restarts.count + 4 }

    mutating func add(key: [UInt8], value: [UInt8]) {
        precondition(count == 0 || lastKey.lexicographicallyPrecedes(key), "keys must be added in increasing order")
        var shared = 0
        if sinceRestart < restartInterval {
            let limit = min(lastKey.count, key.count)
            while shared < limit, lastKey[shared] == key[shared] { shared += 1 }
        } else {
            restarts.append(UInt32(bytes.count))
            sinceRestart = 0
        }
        WireEncoding.appendVarint(UInt64(shared), to: &bytes)
        WireEncoding.appendVarint(UInt64(key.count - shared), to: &bytes)
        WireEncoding.appendVarint(UInt64(value.count), to: &bytes)
        bytes += key[shared...]
        bytes += value
        lastKey = key
        sinceRestart += 1
        count += 1
    }

    /// The block: entries, restart array, restart count.
    func finish() -> [UInt8] {
        var out = bytes
        for restart in restarts { WireEncoding.appendFixed32(restart, to: &out) }
        WireEncoding.appendFixed32(UInt32(restarts.count), to: &out)
        return out
    }
}

/// A key for an error message: printable ASCII kept, other bytes as \xNN, long keys cut.
func printable(_ key: [UInt8]) -> String {
    var text = ""
    for byte in key.prefix(120) {
        if byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") { text.unicodeScalars.append(Unicode.Scalar(byte)) } else { text += "\\x" + String(byte, radix: 16) }
    }
    return key.count > 120 ? text + "..." : text
}
