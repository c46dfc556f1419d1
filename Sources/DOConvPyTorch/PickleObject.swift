/// A Python object as the restricted unpickler builds it. Nothing is ever executed: a call
/// of an allowed global stays a `.call` node, which readers interpret (a tensor rebuild, a
/// `torch.Size`) and the pickler writes back as the same call.
///
/// A class, not a value: a pickle shares objects through its memo and mutates them after
/// creation (SETITEMS, APPENDS, BUILD), and both must be kept to write it back faithfully.
public final class PickleObject {
    public enum Kind {
        case none
        case bool(Bool)
        case int(Int64)
        /// An integer that does not fit 64 bits, as pickle's little-endian two's complement.
        case bigInt([UInt8])
        case float(Double)
        case string(String)
        case bytes([UInt8])
        case tuple([PickleObject])
        case list([PickleObject])
        /// A dict; `ordered` for `collections.OrderedDict`. Keys keep their order.
        case dict(entries: [(key: PickleObject, value: PickleObject)], ordered: Bool)
        case set([PickleObject])
        case frozenSet([PickleObject])
        /// A module-level name, already checked against the allowlist.
        case global(module: String, name: String)
        /// `callable(*args)` (REDUCE, NEWOBJ).
        case call(callable: PickleObject, args: PickleObject)
        /// A persistent id: how torch refers to a storage outside the pickle.
        case persistentID(PickleObject)
    }

    public var kind: Kind
    /// State set by BUILD (an OrderedDict's `_metadata`, for example).
    public var state: PickleObject?

    public init(_ kind: Kind) { self.kind = kind }

    public var string: String? {
        if case let .string(s) = kind { return s }
        return nil
    }

    public var int: Int64? {
        switch kind {
        case let .int(v): return v
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Tuple or list elements.
    public var elements: [PickleObject]? {
        switch kind {
        case let .tuple(items), let .list(items): return items
        default: return nil
        }
    }

    public var dictEntries: [(key: PickleObject, value: PickleObject)]? {
        if case let .dict(entries, _) = kind { return entries }
        return nil
    }

    /// `module.name` of a global.
    public var globalName: String? {
        if case let .global(module, name) = kind { return "\(module).\(name)" }
        return nil
    }

    /// The callable's global name and the arguments of a call.
    public var call: (name: String, args: [PickleObject])? {
        guard case let .call(callable, args) = kind, let name = callable.globalName, let items = args.elements else { return nil }
        return (name, items)
    }
}

extension PickleObject {
    /// Structural equality of two trees (shared objects compared by value), for checks that
    /// an entry came through a fold unchanged. Depth is bounded by the reader.
    public func isEqual(to other: PickleObject) -> Bool {
        if self === other { return true }
        guard (state == nil) == (other.state == nil) else { return false }
        if let a = state, let b = other.state, !a.isEqual(to: b) { return false }
        switch (kind, other.kind) {
        case (.none, .none): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.bigInt(a), .bigInt(b)): return a == b
        case let (.float(a), .float(b)): return a == b || (a.isNaN && b.isNaN)
        case let (.string(a), .string(b)): return a == b
        case let (.bytes(a), .bytes(b)): return a == b
        case let (.tuple(a), .tuple(b)), let (.list(a), .list(b)), let (.set(a), .set(b)), let (.frozenSet(a), .frozenSet(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.isEqual(to: $1) }
        case let (.dict(a, ao), .dict(b, bo)):
            return ao == bo && a.count == b.count && zip(a, b).allSatisfy { $0.key.isEqual(to: $1.key) && $0.value.isEqual(to: $1.value) }
        case let (.global(am, an), .global(bm, bn)): return am == bm && an == bn
        case let (.call(ac, aa), .call(bc, ba)): return ac.isEqual(to: bc) && aa.isEqual(to: ba)
        case let (.persistentID(a), .persistentID(b)): return a.isEqual(to: b)
        default: return false
        }
    }
}
