/// A Python object as the unpickler builds it. Nothing is ever executed: a call stays a
/// `.call` node, which readers interpret (a tensor rebuild, a `torch.Size`) and the pickler
/// writes back as the same call. Objects of classes outside torch's weights-only allowlist
/// (an `argparse.Namespace`, numpy scalars, a pickled `nn.Module`) are carried the same way:
/// their construction, the items pickled into them and their state are kept as read.
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
        /// `callable(*args)` (REDUCE).
        case call(callable: PickleObject, args: PickleObject)
        /// `cls.__new__(cls, *args, **kwargs)` (NEWOBJ; NEWOBJ_EX when `kwargs` is given).
        case newObject(cls: PickleObject, args: PickleObject, kwargs: PickleObject?)
        /// A persistent id: how torch refers to a storage outside the pickle.
        case persistentID(PickleObject)
    }

    public var kind: Kind
    /// State set by BUILD (an OrderedDict's `_metadata`, for example).
    public var state: PickleObject?
    /// Items APPENDed to an object that is not a list (a list subclass, a deque).
    public var appended: [PickleObject] = []
    /// Items SETITEM'd into an object that is not a dict (a defaultdict, a dict subclass).
    public var setItems: [(key: PickleObject, value: PickleObject)] = []

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

    /// The objects this one holds (items, call arguments, state), in pickle order.
    public var children: [PickleObject] { PickleTreeCheck.children(of: self) }

    /// The class of an object built from a global that `torch.load(weights_only=True)` does
    /// not accept ("models.yolo.Model", "argparse.Namespace"); nil for plain data and for
    /// torch's own rebuilds. `copyreg`'s helpers name the class in their first argument.
    public var carriedClass: String? {
        let maker: PickleObject
        var firstArgument: PickleObject?
        switch kind {
        case let .call(callable, args): (maker, firstArgument) = (callable, args.elements?.first)
        case let .newObject(cls, _, _): maker = cls
        default: return nil
        }
        guard case let .global(module, name) = maker.kind, !WeightsOnlyGlobals.allows(module: module, name: name) else { return nil }
        if module == "copyreg", let inner = firstArgument?.globalName { return inner }
        return "\(module).\(name)"
    }
}

extension PickleObject {
    /// Equality of this node alone: the same kind, the same leaf value, the same number of
    /// children (which the caller compares itself, e.g. tensors by their bytes whatever
    /// their storages are called).
    public func isShallowlyEqual(to other: PickleObject) -> Bool {
        guard (state == nil) == (other.state == nil), appended.count == other.appended.count,
              setItems.count == other.setItems.count else { return false }
        switch (kind, other.kind) {
        case (.none, .none), (.call, .call), (.persistentID, .persistentID): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.bigInt(a), .bigInt(b)): return a == b
        case let (.float(a), .float(b)): return a == b || (a.isNaN && b.isNaN)
        case let (.string(a), .string(b)): return a == b
        case let (.bytes(a), .bytes(b)): return a == b
        case let (.tuple(a), .tuple(b)), let (.list(a), .list(b)), let (.set(a), .set(b)), let (.frozenSet(a), .frozenSet(b)):
            return a.count == b.count
        case let (.dict(a, ao), .dict(b, bo)): return ao == bo && a.count == b.count
        case let (.global(am, an), .global(bm, bn)): return am == bm && an == bn
        case let (.newObject(_, _, ak), .newObject(_, _, bk)): return (ak == nil) == (bk == nil)
        default: return false
        }
    }

    /// Structural equality of two trees (shared objects compared by value), for checks that
    /// an entry came through a fold unchanged. Depth is bounded by the reader.
    public func isEqual(to other: PickleObject) -> Bool {
        if self === other { return true }
        return isShallowlyEqual(to: other) && zip(children, other.children).allSatisfy { $0.isEqual(to: $1) }
    }
}

/// The globals `torch.load(weights_only=True)` accepts by default: what a state dict's pickle
/// names. Anything else is a Python object the checkpoint carries (or, with
/// `--strict-pickle`, a reason to refuse the file).
public enum WeightsOnlyGlobals {
    static let names: Set<String> = [
        "collections.OrderedDict", "collections.Counter",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_sparse_tensor", "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._utils._rebuild_nested_tensor", "torch._utils._rebuild_qtensor",
        "torch._tensor._rebuild_from_type_v2", "torch.serialization._get_layout",
        "torch.Size", "torch.device", "torch.Tensor", "torch.nn.parameter.Parameter",
        "torch.storage.UntypedStorage", "torch.storage.TypedStorage",
        "_codecs.encode", "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.complex",
        "__builtin__.set", "__builtin__.frozenset", "__builtin__.bytearray", "__builtin__.complex",
    ]

    /// Layouts, memory formats and quantization schemes that tensors may name.
    static let torchConstants: Set<String> = [
        "strided", "sparse_coo", "sparse_csr", "contiguous_format", "channels_last", "preserve_format",
        "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
    ]

    public static func allows(module: String, name: String) -> Bool {
        names.contains("\(module).\(name)")
            || (module == "torch" && (TorchDType(storageClass: name) != nil || TorchDType(dtypeName: name) != nil || torchConstants.contains(name)))
    }
}
