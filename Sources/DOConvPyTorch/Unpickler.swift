/// An unpickler that reads the opcodes of pickle protocols 2-5 that torch writes and builds
/// `PickleObject` trees, never executing anything. Globals that `torch.load(weights_only=True)`
/// accepts build tensors and containers; any other global (an `argparse.Namespace`, numpy
/// data, a pickled module) is kept as a name, and what the pickle does with it (calls,
/// `__new__`, items, state) as nodes the pickler writes back unchanged. `strict` refuses such
/// globals instead, as torch's weights-only loader does.
///
/// Hostile input stays bounded: every read is checked against the end of the data, the
/// memo only answers indexes that were stored, the number of objects is capped, and the
/// finished tree is checked for cycles and nesting depth before anyone walks it.
struct Unpickler {
    let bytes: UnsafeRawBufferPointer
    let path: String
    /// Refuse globals outside the weights-only allowlist instead of carrying them.
    let strict: Bool
    private(set) var position: Int
    private var stack: [PickleObject] = []
    private var marks: [Int] = []
    private var memo: [UInt64: PickleObject] = [:]
    private var created = 0
    /// Every global outside the weights-only allowlist that the pickles named, "module.name".
    private(set) var carriedGlobals = Set<String>()

    /// More objects than any checkpoint's pickle holds (ResNet-50's has about 3,000).
    static let maxObjects = 1 << 20
    /// Deeper than any checkpoint nests (a few levels of dicts and tuples).
    static let maxDepth = 200

    init(bytes: UnsafeRawBufferPointer, path: String, position: Int = 0, strict: Bool = true) {
        self.bytes = bytes
        self.path = path
        self.strict = strict
        self.position = position
    }

    /// Reads one pickle from the current position up to and including its STOP opcode.
    mutating func load() throws(PyTorchError) -> PickleObject {
        stack.removeAll()
        marks.removeAll()
        memo.removeAll()
        defer {
            stack.removeAll()
            memo.removeAll()
        }
        do throws(PyTorchError) {
            while true {
                let opcode = try byte()
                if opcode == 0x2E { // STOP
                    guard stack.count == 1, marks.isEmpty else { throw fail("STOP with \(stack.count) objects on the stack") }
                    let result = stack[0]
                    try PickleTreeCheck.check(result, maxDepth: Self.maxDepth, path: path)
                    return result
                }
                try execute(opcode)
            }
        } catch {
            // A hostile pickle may have built a very deep tree (or a cycle): take it apart
            // without recursion before anything releases it.
            PickleTreeCheck.dismantle(stack + Array(memo.values))
            throw error
        }
    }

    // MARK: - Opcodes

    private mutating func execute(_ opcode: UInt8) throws(PyTorchError) {
        switch opcode {
        case 0x80: // PROTO
            let version = try byte()
            guard version <= 5 else { throw fail("unsupported pickle protocol \(version)") }
        case 0x95: _ = try read(8) // FRAME: a length hint only
        case 0x28: marks.append(stack.count) // MARK
        case 0x30: _ = try pop() // POP
        case 0x31: _ = try popMark() // POP_MARK
        case 0x32: try push(top()) // DUP (the same object)
        case 0x4E: try push(.none)
        case 0x88: try push(.bool(true))
        case 0x89: try push(.bool(false))
        case 0x4A: try push(.int(Int64(Int32(bitPattern: UInt32(try uint(4)))))) // BININT
        case 0x4B: try push(.int(Int64(try uint(1)))) // BININT1
        case 0x4D: try push(.int(Int64(try uint(2)))) // BININT2
        case 0x8A: try push(long(try read(Int(try uint(1))))) // LONG1
        case 0x8B: try push(long(try read(try length(4)))) // LONG4
        case 0x47: try push(.float(Double(bitPattern: UInt64(bigEndianBytes: try read(8))))) // BINFLOAT
        case 0x49: try push(try textInt()) // INT
        case 0x4C: try push(try textInt(suffix: "L")) // LONG
        case 0x46: // FLOAT
            guard let value = Double(try line()) else { throw fail("bad FLOAT") }
            try push(.float(value))
        case 0x58: try push(.string(try utf8(try read(try length(4))))) // BINUNICODE
        case 0x8C: try push(.string(try utf8(try read(Int(try uint(1)))))) // SHORT_BINUNICODE
        case 0x8D: try push(.string(try utf8(try read(try length(8))))) // BINUNICODE8
        case 0x56: try push(.string(try line())) // UNICODE (raw-unicode-escape; torch never writes it)
        case 0x54: try push(.bytes(try read(try length(4)))) // BINSTRING (Python 2 str)
        case 0x55: try push(.bytes(try read(Int(try uint(1))))) // SHORT_BINSTRING
        case 0x42: try push(.bytes(try read(try length(4)))) // BINBYTES
        case 0x43: try push(.bytes(try read(Int(try uint(1))))) // SHORT_BINBYTES
        case 0x8E: try push(.bytes(try read(try length(8)))) // BINBYTES8
        case 0x96: // BYTEARRAY8: bytearray(b)
            let data = try read(try length(8))
            try push(.call(callable: PickleObject(.global(module: "builtins", name: "bytearray")), args: make(.tuple([make(.bytes(data))]))))
        case 0x29: try push(.tuple([])) // EMPTY_TUPLE
        case 0x74: try push(.tuple(try popMark())) // TUPLE
        case 0x85: try push(.tuple(try pop(1))) // TUPLE1
        case 0x86: try push(.tuple(try pop(2))) // TUPLE2
        case 0x87: try push(.tuple(try pop(3))) // TUPLE3
        case 0x5D: try push(.list([])) // EMPTY_LIST
        case 0x6C: try push(.list(try popMark())) // LIST
        case 0x7D: try push(.dict(entries: [], ordered: false)) // EMPTY_DICT
        case 0x64: try push(.dict(entries: try pairs(try popMark()), ordered: false)) // DICT
        case 0x8F: try push(.set([])) // EMPTY_SET
        case 0x91: try push(.frozenSet(try popMark())) // FROZENSET
        case 0x61: try append([try pop()]) // APPEND
        case 0x65: try append(try popMark()) // APPENDS
        case 0x73: try setItems(try pop(2)) // SETITEM
        case 0x75: try setItems(try popMark()) // SETITEMS
        case 0x90: // ADDITEMS
            let items = try popMark()
            let target = try top()
            guard case let .set(existing) = target.kind else { throw fail("ADDITEMS on a non-set") }
            target.kind = .set(existing + items)
        case 0x63: // GLOBAL
            let module = try line()
            let name = try line()
            try push(try global(module: module, name: name))
        case 0x93: // STACK_GLOBAL
            let parts = try pop(2)
            guard let module = parts[0].string, let name = parts[1].string else { throw fail("STACK_GLOBAL without two strings") }
            try push(try global(module: module, name: name))
        case 0x52: // REDUCE
            let parts = try pop(2)
            try push(try reduce(callable: parts[0], args: parts[1]))
        case 0x81: // NEWOBJ: cls.__new__(cls, *args)
            let parts = try pop(2)
            try push(try newObject(cls: parts[0], args: parts[1], kwargs: nil))
        case 0x92: // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
            let parts = try pop(3)
            try push(try newObject(cls: parts[0], args: parts[1], kwargs: parts[2]))
        case 0x62: // BUILD
            let state = try pop()
            let target = try top()
            guard target.state == nil else { throw fail("BUILD twice on one object") }
            target.state = state
        case 0x51: try push(.persistentID(try pop())) // BINPERSID
        case 0x50: try push(.persistentID(make(.string(try line())))) // PERSID
        case 0x71: try memoize(UInt64(try uint(1))) // BINPUT
        case 0x72: try memoize(UInt64(try uint(4))) // LONG_BINPUT
        case 0x94: try memoize(UInt64(memo.count)) // MEMOIZE
        case 0x70: // PUT
            guard let index = UInt64(try line()) else { throw fail("bad PUT index") }
            try memoize(index)
        case 0x68: try push(try recall(UInt64(try uint(1)))) // BINGET
        case 0x6A: try push(try recall(UInt64(try uint(4)))) // LONG_BINGET
        case 0x67: // GET
            guard let index = UInt64(try line()) else { throw fail("bad GET index") }
            try push(try recall(index))
        case 0x97, 0x98: throw fail("out-of-band buffers (protocol 5) are not supported")
        case 0x69, 0x6F: throw fail("a protocol 0/1 object (opcode 0x\(String(opcode, radix: 16, uppercase: true))); torch writes protocol 2 or later")
        case 0x82, 0x83, 0x84: throw fail("a copyreg extension code (opcode 0x\(String(opcode, radix: 16, uppercase: true))), which only the writing process could resolve")
        default:
            throw fail("unknown pickle opcode 0x\(String(opcode, radix: 16, uppercase: true)) at byte \(position - 1)")
        }
    }

    // MARK: - Allowlist and calls

    private mutating func global(module: String, name: String) throws(PyTorchError) -> PickleObject.Kind {
        if !WeightsOnlyGlobals.allows(module: module, name: name) {
            guard !strict else { throw .disallowedGlobal(path: path, global: "\(module).\(name)") }
            carriedGlobals.insert("\(module).\(name)")
        }
        return .global(module: module, name: name)
    }

    private mutating func reduce(callable: PickleObject, args: PickleObject) throws(PyTorchError) -> PickleObject.Kind {
        // A carried object may call what another call returned (a bound method, say).
        guard callable.globalName != nil || !strict else { throw fail("a call of something that is not a global") }
        guard case .tuple = args.kind else { throw fail("call arguments are not a tuple") }
        // An empty OrderedDict() is a dict that SETITEMS fills in next.
        if callable.globalName == "collections.OrderedDict", args.elements?.isEmpty == true {
            return .dict(entries: [], ordered: true)
        }
        return .call(callable: callable, args: args)
    }

    private mutating func newObject(cls: PickleObject, args: PickleObject, kwargs: PickleObject?) throws(PyTorchError) -> PickleObject.Kind {
        guard cls.globalName != nil else { throw fail("NEWOBJ of something that is not a class") }
        guard case .tuple = args.kind else { throw fail("NEWOBJ arguments are not a tuple") }
        if let kwargs, kwargs.dictEntries == nil { throw fail("NEWOBJ_EX keyword arguments are not a dict") }
        return .newObject(cls: cls, args: args, kwargs: kwargs)
    }

    /// APPEND(S): into a list, or into a carried object (a list subclass), kept as items.
    private mutating func append(_ items: [PickleObject]) throws(PyTorchError) {
        let target = try top()
        switch target.kind {
        case let .list(existing): target.kind = .list(existing + items)
        case .call, .newObject: target.appended += items
        default: throw fail("APPEND to a non-list")
        }
    }

    /// SETITEM(S): into a dict, or into a carried object (a dict subclass), kept as items.
    private mutating func setItems(_ flat: [PickleObject]) throws(PyTorchError) {
        let target = try top()
        switch target.kind {
        case let .dict(existing, ordered): target.kind = .dict(entries: existing + (try pairs(flat)), ordered: ordered)
        case .call, .newObject: target.setItems += try pairs(flat)
        default: throw fail("SETITEM on a non-dict")
        }
    }

    private func pairs(_ flat: [PickleObject]) throws(PyTorchError) -> [(key: PickleObject, value: PickleObject)] {
        guard flat.count % 2 == 0 else { throw fail("odd number of dict items") }
        return stride(from: 0, to: flat.count, by: 2).map { (key: flat[$0], value: flat[$0 + 1]) }
    }

    // MARK: - Stack and memo

    private mutating func make(_ kind: PickleObject.Kind) -> PickleObject {
        created += 1
        return PickleObject(kind)
    }

    private mutating func push(_ kind: PickleObject.Kind) throws(PyTorchError) {
        try push(make(kind))
    }

    private mutating func push(_ object: PickleObject) throws(PyTorchError) {
        guard created <= Self.maxObjects, stack.count <= Self.maxObjects else { throw fail("more than \(Self.maxObjects) objects") }
        stack.append(object)
    }

    private func top() throws(PyTorchError) -> PickleObject {
        guard let last = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
        return last
    }

    private mutating func pop() throws(PyTorchError) -> PickleObject {
        guard stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
        return stack.removeLast()
    }

    private mutating func pop(_ count: Int) throws(PyTorchError) -> [PickleObject] {
        guard stack.count - (marks.last ?? 0) >= count else { throw fail("stack underflow") }
        let items = Array(stack.suffix(count))
        stack.removeLast(count)
        return items
    }

    private mutating func popMark() throws(PyTorchError) -> [PickleObject] {
        guard let mark = marks.popLast() else { throw fail("no MARK on the stack") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    private mutating func memoize(_ index: UInt64) throws(PyTorchError) {
        guard memo.count < Self.maxObjects else { throw fail("memo larger than \(Self.maxObjects) entries") }
        memo[index] = try top()
    }

    private func recall(_ index: UInt64) throws(PyTorchError) -> PickleObject {
        guard let object = memo[index] else { throw fail("memo index \(index) was never stored") }
        return object
    }

    // MARK: - Reading bytes

    private func fail(_ reason: String) -> PyTorchError { .pickle(path: path, reason: reason) }

    private mutating func byte() throws(PyTorchError) -> UInt8 {
        guard position < bytes.count else { throw fail("truncated: the pickle ends without STOP") }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func read(_ count: Int) throws(PyTorchError) -> [UInt8] {
        guard count >= 0, count <= bytes.count - position else { throw fail("truncated: a \(count)-byte value runs past the end") }
        defer { position += count }
        return Array(bytes[position..<(position + count)])
    }

    private mutating func uint(_ width: Int) throws(PyTorchError) -> UInt64 {
        let raw = try read(width)
        return raw.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// A length field, which must fit in what is left of the data.
    private mutating func length(_ width: Int) throws(PyTorchError) -> Int {
        let value = try uint(width)
        guard value <= UInt64(bytes.count - position) else { throw fail("truncated: a length of \(value) runs past the end") }
        return Int(value)
    }

    private mutating func line() throws(PyTorchError) -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw fail("truncated: a text argument has no newline") }
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    private func utf8(_ raw: [UInt8]) throws(PyTorchError) -> String {
        guard let text = String(validating: raw, as: UTF8.self) else { throw fail("a string that is not UTF-8") }
        return text
    }

    private mutating func textInt(suffix: String = "") throws(PyTorchError) -> PickleObject.Kind {
        var text = try line()
        if text.hasSuffix("L") { text.removeLast() }
        if text == "01" && suffix.isEmpty { return .bool(true) }
        if text == "00" && suffix.isEmpty { return .bool(false) }
        guard let value = Int64(text) else { throw fail("bad integer '\(text.prefix(40))'") }
        return .int(value)
    }

    /// LONG1/LONG4: little-endian two's complement of any length.
    private func long(_ raw: [UInt8]) -> PickleObject.Kind {
        guard raw.count <= 8 else { return .bigInt(raw) }
        guard let last = raw.last else { return .int(0) }
        var value = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        if last & 0x80 != 0, raw.count < 8 { value |= ~UInt64(0) << (8 * UInt64(raw.count)) }
        return .int(Int64(bitPattern: value))
    }
}

extension UInt64 {
    init(bigEndianBytes raw: [UInt8]) {
        self = raw.reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// Checks a finished pickle tree for cycles and depth, without recursion, so that the
/// recursive walkers after it (readers, the pickler, equality) are safe.
enum PickleTreeCheck {
    static func check(_ root: PickleObject, maxDepth: Int, path: String) throws(PyTorchError) {
        var finished = Set<ObjectIdentifier>()
        var onPath = Set<ObjectIdentifier>()
        // (object, index of the next child to visit)
        var stack: [(PickleObject, [PickleObject], Int)] = [(root, children(of: root), 0)]
        onPath.insert(ObjectIdentifier(root))
        while let (object, kids, next) = stack.last {
            if next == kids.count {
                stack.removeLast()
                onPath.remove(ObjectIdentifier(object))
                finished.insert(ObjectIdentifier(object))
                continue
            }
            stack[stack.count - 1].2 = next + 1
            let child = kids[next]
            let id = ObjectIdentifier(child)
            if finished.contains(id) { continue }
            guard !onPath.contains(id) else { throw .pickle(path: path, reason: "the pickle holds a cycle (an object that contains itself)") }
            guard stack.count < maxDepth else { throw .pickle(path: path, reason: "objects nested deeper than \(maxDepth) levels") }
            onPath.insert(id)
            stack.append((child, children(of: child), 0))
        }
    }

    /// Empties every object reachable from `roots`, one at a time, so that releasing them
    /// never recurses (Swift releases nested objects recursively) and cycles are broken.
    static func dismantle(_ roots: [PickleObject]) {
        var stack = roots
        while let object = stack.popLast() {
            stack += children(of: object)
            object.kind = .none
            object.state = nil
            object.appended = []
            object.setItems = []
        }
    }

    static func children(of object: PickleObject) -> [PickleObject] {
        var kids: [PickleObject]
        switch object.kind {
        case let .tuple(items), let .list(items), let .set(items), let .frozenSet(items): kids = items
        case let .dict(entries, _): kids = entries.flatMap { [$0.key, $0.value] }
        case let .call(callable, args): kids = [callable, args]
        case let .newObject(cls, args, kwargs): kids = [cls, args] + (kwargs.map { [$0] } ?? [])
        case let .persistentID(id): kids = [id]
        default: kids = []
        }
        kids += object.appended
        kids += object.setItems.flatMap { [$0.key, $0.value] }
        if let state = object.state { kids.append(state) }
        return kids
    }
}
