/// Writes a `PickleObject` tree back as a pickle: the same objects, calls and sharing
/// (an object reached twice is written once and recalled from the memo), in the protocol
/// the input declared. Depth is bounded by the reader's check.
struct Pickler {
    private var out: [UInt8] = []
    private var memo: [ObjectIdentifier: UInt32] = [:]
    private var shared: Set<ObjectIdentifier> = []
    /// The persistent ids (storage references) in the order they are first written.
    private var persistentIDs: [PickleObject] = []

    static func pickle(_ root: PickleObject, protocol version: UInt8) -> [UInt8] {
        var pickler = Pickler()
        pickler.shared = Self.sharedObjects(root)
        pickler.out = [0x80, max(2, version)]
        pickler.write(root)
        pickler.out.append(0x2E) // STOP
        return pickler.out
    }

    /// The persistent ids of `root` in the order a pickle of it names them first, which is
    /// the order torch.load meets the storages in.
    static func persistentIDsInWriteOrder(_ root: PickleObject) -> [PickleObject] {
        var pickler = Pickler()
        pickler.shared = Self.sharedObjects(root)
        pickler.write(root)
        return pickler.persistentIDs
    }

    /// Objects reachable along more than one path.
    private static func sharedObjects(_ root: PickleObject) -> Set<ObjectIdentifier> {
        var seen = Set<ObjectIdentifier>()
        var shared = Set<ObjectIdentifier>()
        var stack = [root]
        while let object = stack.popLast() {
            let id = ObjectIdentifier(object)
            if seen.contains(id) { shared.insert(id); continue }
            seen.insert(id)
            stack += PickleTreeCheck.children(of: object)
        }
        return shared
    }

    private mutating func write(_ object: PickleObject) {
        let id = ObjectIdentifier(object)
        if let index = memo[id] {
            if index < 256 { out += [0x68, UInt8(index)] } else { out.append(0x6A); u32(index) }
            return
        }
        switch object.kind {
        case .none: out.append(0x4E)
        case let .bool(value): out.append(value ? 0x88 : 0x89)
        case let .int(value): int(value)
        case let .bigInt(raw):
            if raw.count < 256 { out += [0x8A, UInt8(raw.count)] } else { out.append(0x8B); u32(UInt32(raw.count)) }
            out += raw
        case let .float(value):
            out.append(0x47)
            withUnsafeBytes(of: value.bitPattern.bigEndian) { out += $0 }
        case let .string(text):
            let bytes = Array(text.utf8)
            out.append(0x58); u32(UInt32(bytes.count)); out += bytes
        case let .bytes(bytes):
            if bytes.count < 256 { out += [0x43, UInt8(bytes.count)] } else { out.append(0x42); u32(UInt32(bytes.count)) }
            out += bytes
        case let .tuple(items):
            switch items.count {
            case 0: out.append(0x29)
            case 1...3:
                for item in items { write(item) }
                out.append(0x85 + UInt8(items.count - 1))
            default:
                out.append(0x28)
                for item in items { write(item) }
                out.append(0x74)
            }
        case let .list(items):
            out.append(0x5D)
            remember(id)
            for batch in stride(from: 0, to: items.count, by: 1000) {
                out.append(0x28)
                for item in items[batch..<min(items.count, batch + 1000)] { write(item) }
                out.append(0x65)
            }
        case let .dict(entries, ordered):
            if ordered {
                out += Array("ccollections\nOrderedDict\n".utf8) + [0x29, 0x52]
            } else {
                out.append(0x7D)
            }
            remember(id)
            for batch in stride(from: 0, to: entries.count, by: 1000) {
                out.append(0x28)
                for entry in entries[batch..<min(entries.count, batch + 1000)] {
                    write(entry.key)
                    write(entry.value)
                }
                out.append(0x75)
            }
        case let .set(items):
            out.append(0x8F)
            remember(id)
            if !items.isEmpty {
                out.append(0x28)
                for item in items { write(item) }
                out.append(0x90)
            }
        case let .frozenSet(items):
            out.append(0x28)
            for item in items { write(item) }
            out.append(0x91)
        case let .global(module, name):
            out += Array("c\(module)\n\(name)\n".utf8)
        case let .call(callable, args):
            write(callable)
            write(args)
            out.append(0x52)
        case let .newObject(cls, args, kwargs):
            write(cls)
            write(args)
            if let kwargs {
                write(kwargs)
                out.append(0x92) // NEWOBJ_EX
            } else {
                out.append(0x81) // NEWOBJ
            }
        case let .persistentID(id):
            persistentIDs.append(id)
            write(id)
            out.append(0x51)
        }
        remember(id)
        // A carried object's items, then its state, in the order pickle's save_reduce writes them.
        for batch in stride(from: 0, to: object.appended.count, by: 1000) {
            out.append(0x28)
            for item in object.appended[batch..<min(object.appended.count, batch + 1000)] { write(item) }
            out.append(0x65)
        }
        for batch in stride(from: 0, to: object.setItems.count, by: 1000) {
            out.append(0x28)
            for entry in object.setItems[batch..<min(object.setItems.count, batch + 1000)] {
                write(entry.key)
                write(entry.value)
            }
            out.append(0x75)
        }
        if let state = object.state {
            write(state)
            out.append(0x62)
        }
    }

    /// Memoizes a shared object once, right after it is made.
    private mutating func remember(_ id: ObjectIdentifier) {
        guard shared.contains(id), memo[id] == nil else { return }
        let index = UInt32(memo.count)
        memo[id] = index
        if index < 256 { out += [0x71, UInt8(index)] } else { out.append(0x72); u32(index) }
    }

    private mutating func int(_ value: Int64) {
        if value >= 0 && value < 256 {
            out += [0x4B, UInt8(value)]
        } else if value >= 0 && value < 65536 {
            out.append(0x4D)
            withUnsafeBytes(of: UInt16(value).littleEndian) { out += $0 }
        } else if value >= Int64(Int32.min) && value <= Int64(Int32.max) {
            out.append(0x4A)
            withUnsafeBytes(of: Int32(value).littleEndian) { out += $0 }
        } else {
            // LONG1: the shortest little-endian two's complement.
            var raw = withUnsafeBytes(of: value.littleEndian) { Array($0) }
            while raw.count > 1, (raw[raw.count - 1] == 0 && raw[raw.count - 2] & 0x80 == 0) || (raw[raw.count - 1] == 0xFF && raw[raw.count - 2] & 0x80 != 0) {
                raw.removeLast()
            }
            out += [0x8A, UInt8(raw.count)] + raw
        }
    }

    private mutating func u32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { out += $0 }
    }
}
