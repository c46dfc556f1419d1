import DOConvZip
import DOConvFileIO
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// How a checkpoint is stored.
public enum CheckpointContainer: Equatable, Sendable {
    /// torch.save's zip (torch >= 1.6): `<root>/data.pkl` and `<root>/data/<key>`.
    case zip(root: String)
    /// torch.save's legacy stream (torch < 1.6, or `_use_new_zipfile_serialization=False`).
    case legacy
    /// `.safetensors`: a JSON header and the raw tensors.
    case safetensors
}

/// A PyTorch checkpoint read in place: its object tree (a restricted-unpickled pickle, or
/// for safetensors a flat dict built from the header) and its storages in the mapped file.
public final class Checkpoint {
    public let path: String
    public let container: CheckpointContainer
    /// The checkpoint's object: a state dict, or a dict holding state dicts and more.
    public internal(set) var root: PickleObject
    /// Storages by key: read ones lie in the mapped file, folded ones in memory.
    var storages: [String: TorchStorage] = [:]
    let file: MappedFile
    /// The pickle protocol the input declared (written back the same).
    let pickleProtocol: UInt8
    /// zip: every entry, in order, to write the non-tensor records back as they were.
    let zipEntries: [ZipArchive.Entry]
    /// legacy: the magic number, protocol and system-info pickles, written back as they are.
    let legacyHeader: UnsafeRawBufferPointer
    /// safetensors: the header's `__metadata__`.
    let safetensorsMetadata: [String: String]?
    /// The globals outside torch's weights-only allowlist that the pickles name, sorted:
    /// the Python objects the checkpoint carries (empty for a plain state dict).
    public private(set) var carriedGlobals: [String] = []

    /// LONG1 of torch's legacy magic number, the legacy stream's first value.
    static let legacyMagicNumber: [UInt8] = [0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// Whether a zip with these entries is a PyTorch archive (`<root>/data.pkl`).
    public static func zipRoot(entries: [String]) -> String? {
        entries.lazy.compactMap { name -> String? in
            guard name.hasSuffix("/data.pkl") else { return nil }
            let root = String(name.dropLast("/data.pkl".count))
            return root.contains("/") ? nil : root
        }.first
    }

    /// Whether bytes starting a file look like a safetensors header: a little-endian
    /// length that fits the file, then `{`.
    public static func looksLikeSafetensors(head: [UInt8], size: Int) -> Bool {
        guard head.count >= 9, head[8] == UInt8(ascii: "{") else { return false }
        let length = head[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return length >= 2 && length <= UInt64(max(0, size - 8))
    }

    /// The legacy stream starts with PROTO 2-5 (`pickle_protocol`), a FRAME from protocol 4
    /// on, then the magic number.
    public static func looksLikeLegacy(head: [UInt8]) -> Bool {
        guard head.count >= 2, head[0] == 0x80, (2...5).contains(head[1]) else { return false }
        let start = head.count > 2 && head[2] == 0x95 ? 11 : 2
        return head.count >= start + legacyMagicNumber.count && Array(head[start..<(start + legacyMagicNumber.count)]) == legacyMagicNumber
    }

    /// Whether a zip with these entries under `root` is a TorchScript archive (code and
    /// constants beside the pickle), which `torch.jit.save` writes.
    static func isTorchScript(entries: [String], root: String) -> Bool {
        entries.contains { $0 == root + "/constants.pkl" || $0.hasPrefix(root + "/code/") }
    }

    /// Reads the checkpoint at `path`, deciding the container by content. Python objects the
    /// pickle names outside torch's weights-only allowlist are carried, unexecuted, unless
    /// `strictPickle` refuses them.
    public init(path: String, strictPickle: Bool = false) throws(PyTorchError) {
        self.path = path
        do { file = try MappedFile(path: path) } catch { throw .file(error) }
        let bytes = file.bytes
        guard bytes.count > 0 else { throw .corrupt(path: path, reason: "the file is empty") }
        let head = Array(bytes.prefix(64))
        if head.starts(with: [0x50, 0x4B]) {
            let zip: ZipArchive
            do { zip = try ZipArchive(bytes: bytes) } catch { throw .corrupt(path: path, reason: error.reason) }
            guard let root = Self.zipRoot(entries: zip.entries.map(\.name)) else {
                throw .corrupt(path: path, reason: "not a PyTorch archive: the zip has no <root>/data.pkl")
            }
            guard !Self.isTorchScript(entries: zip.entries.map(\.name), root: root) else { throw .torchScript(path: path) }
            container = .zip(root: root)
            zipEntries = zip.entries
            legacyHeader = UnsafeRawBufferPointer(start: nil, count: 0)
            safetensorsMetadata = nil
            guard let pickle = zip.entries.first(where: { $0.name == root + "/data.pkl" }), pickle.method == 0 else {
                throw .corrupt(path: path, reason: "\(root)/data.pkl is compressed (torch writes it stored)")
            }
            var unpickler = Unpickler(bytes: pickle.data, path: path, strict: strictPickle)
            self.root = try unpickler.load()
            carriedGlobals = unpickler.carriedGlobals.sorted()
            pickleProtocol = Self.declaredProtocol(pickle.data)
            let byName = Dictionary(zip.entries.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            try resolveStorages { key, dtype, count throws(PyTorchError) in
                guard let entry = byName["\(root)/data/\(key)"] else {
                    throw .corrupt(path: path, reason: "storage '\(key)' is missing from the archive")
                }
                guard entry.method == 0 else { throw .corrupt(path: path, reason: "storage '\(key)' is compressed (torch writes storages stored)") }
                return entry.data
            }
        } else if Self.looksLikeLegacy(head: head) {
            container = .legacy
            zipEntries = []
            safetensorsMetadata = nil
            var unpickler = Unpickler(bytes: bytes, path: path, strict: strictPickle)
            let magic = try unpickler.load()
            guard case .bigInt = magic.kind else { throw .corrupt(path: path, reason: "bad legacy magic number") }
            guard try unpickler.load().int == 1001 else { throw .corrupt(path: path, reason: "unknown legacy protocol version") }
            let sysInfo = try unpickler.load()
            let littleEndian = sysInfo.dictEntries?.first { $0.key.string == "little_endian" }?.value
            if case .bool(false)? = littleEndian?.kind { throw .corrupt(path: path, reason: "a big-endian checkpoint is not supported") }
            legacyHeader = UnsafeRawBufferPointer(rebasing: bytes[0..<unpickler.position])
            let pickleStart = unpickler.position
            root = try unpickler.load()
            pickleProtocol = Self.declaredProtocol(UnsafeRawBufferPointer(rebasing: bytes[pickleStart...]))
            carriedGlobals = unpickler.carriedGlobals.sorted()
            guard let keys = try unpickler.load().elements?.compactMap(\.string) else {
                throw .corrupt(path: path, reason: "the legacy storage key list is not a list of strings")
            }
            let layout = try Self.legacyStorageLayout(keys: keys, root: root, bytes: bytes, start: unpickler.position, path: path)
            try resolveStorages { key, _, _ throws(PyTorchError) in
                guard let data = layout[key] else { throw .corrupt(path: path, reason: "storage '\(key)' is missing from the file") }
                return data
            }
        } else if Self.looksLikeSafetensors(head: head, size: bytes.count) || path.lowercased().hasSuffix(".safetensors") {
            container = .safetensors
            zipEntries = []
            legacyHeader = UnsafeRawBufferPointer(start: nil, count: 0)
            pickleProtocol = 2
            let header = try SafetensorsHeader(bytes: bytes, path: path)
            safetensorsMetadata = header.metadata
            root = header.root
            storages = header.storages(owner: file)
        } else {
            throw .corrupt(path: path, reason: "not a PyTorch checkpoint (neither a torch.save zip or legacy file nor safetensors)")
        }
        try validateTensorViews()
    }

    /// Checks every tensor's view against its storage before anything reads one, so that
    /// each tool refuses a bad view alike, whichever tensors it goes on to read.
    private func validateTensorViews() throws(PyTorchError) {
        var seen = Set<ObjectIdentifier>()
        var stack: [(PickleObject, String)] = [(root, "")]
        while let (node, path) = stack.popLast() {
            guard seen.insert(ObjectIdentifier(node)).inserted else { continue }
            if let (name, _) = node.call, name.hasPrefix("torch._utils._rebuild_") {
                _ = try tensor(node, key: path)
                continue
            }
            if let entries = node.dictEntries {
                for entry in entries.reversed() {
                    let key = entry.key.string ?? entry.key.int.map(String.init) ?? "?"
                    stack.append((entry.value, path.isEmpty ? key : path + "/" + key))
                }
            } else {
                stack += PickleTreeCheck.children(of: node).reversed().map { ($0, path) }
            }
        }
    }

    private static func declaredProtocol(_ bytes: UnsafeRawBufferPointer) -> UInt8 {
        bytes.count >= 2 && bytes[0] == 0x80 ? bytes[1] : 2
    }

    /// Creates a storage for every persistent id in the tree, with its bytes from `locate`.
    private func resolveStorages(_ locate: (String, TorchDType, Int) throws(PyTorchError) -> UnsafeRawBufferPointer) throws(PyTorchError) {
        for id in Self.persistentIDs(in: root) {
            let (key, dtype, count) = try storageReference(id)
            if let existing = storages[key] {
                guard existing.dtype == dtype else { throw .corrupt(path: path, reason: "storage '\(key)' is named with two element types") }
                continue
            }
            let data = try locate(key, dtype, count)
            let (needed, overflow) = count.multipliedReportingOverflow(by: dtype.byteWidth)
            guard !overflow, needed <= data.count else {
                throw .corrupt(path: path, reason: "storage '\(key)' holds \(data.count) bytes, but \(count) \(dtype.rawValue) elements need \(overflow ? Int.max : needed) (truncated)")
            }
            storages[key] = TorchStorage(key: key, dtype: dtype, count: count, bytes: UnsafeRawBufferPointer(rebasing: data[0..<needed]), owner: file)
        }
    }

    /// ('storage', torch.XStorage, key, location, numel, ...) -> key, dtype, numel. A storage
    /// read from the file cannot hold more elements than the file has bytes; one made in
    /// memory (an expanded layer's W and D) can.
    func storageReference(_ id: PickleObject) throws(PyTorchError) -> (String, TorchDType, Int) {
        guard let items = id.elements, items.count >= 5, items[0].string == "storage",
              case let .global(module, name) = items[1].kind, module == "torch", let dtype = TorchDType(storageClass: name),
              let key = items[2].string, let numel = items[4].int, numel >= 0,
              numel <= Int64(file.bytes.count) || storages[key].map({ Int64($0.count) == numel && !$0.isMapped }) == true else {
            throw .pickle(path: path, reason: "a persistent id that is not a torch storage reference")
        }
        return (key, dtype, Int(numel))
    }

    /// Every persistent id in the tree (tensors' storages), each object visited once.
    static func persistentIDs(in root: PickleObject) -> [PickleObject] {
        var seen = Set<ObjectIdentifier>()
        var found: [PickleObject] = []
        var stack = [root]
        while let object = stack.popLast() {
            guard seen.insert(ObjectIdentifier(object)).inserted else { continue }
            if case let .persistentID(id) = object.kind { found.append(id) }
            stack += PickleTreeCheck.children(of: object)
        }
        return found
    }

    /// The legacy stream after the key list: for each key, an int64 element count, then the
    /// elements. The element width comes from the storage class the pickle names.
    private static func legacyStorageLayout(keys: [String], root: PickleObject, bytes: UnsafeRawBufferPointer, start: Int, path: String) throws(PyTorchError) -> [String: UnsafeRawBufferPointer] {
        var widths: [String: Int] = [:]
        for id in persistentIDs(in: root) {
            if let items = id.elements, items.count >= 3, let key = items[2].string,
               case let .global(_, name) = items[1].kind, let dtype = TorchDType(storageClass: name) {
                widths[key] = dtype.byteWidth
            }
        }
        let reader = BoundedBytes(bytes) { PyTorchError.corrupt(path: path, reason: $0) }
        var layout: [String: UnsafeRawBufferPointer] = [:]
        var at = start
        for key in keys {
            guard at + 8 <= bytes.count else { throw .corrupt(path: path, reason: "truncated: storage '\(key)' is missing from the end of the file") }
            let count = try reader.u64(at)
            let width = widths[key] ?? 1
            guard count <= UInt64(bytes.count - at - 8) / UInt64(width) else {
                throw .corrupt(path: path, reason: "truncated: storage '\(key)' claims \(count) elements, past the end of the file")
            }
            layout[key] = try reader.slice(at + 8, Int(count) * width)
            at += 8 + Int(count) * width
        }
        return layout
    }

    // MARK: - Tensors

    /// The tensor a pickled value rebuilds, or nil when the value is not a tensor.
    public func tensor(_ node: PickleObject, key: String) throws(PyTorchError) -> TorchTensor? {
        guard let (name, args) = node.call else { return nil }
        switch name {
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let data = args.first else { return nil }
            return try tensor(data, key: key)
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            guard args.count >= 4, case let .persistentID(id) = args[0].kind else { return nil }
            let (storageKey, _, _) = try storageReference(id)
            guard let storage = storages[storageKey] else { throw .corrupt(path: path, reason: "storage '\(storageKey)' is missing") }
            guard let offset = args[1].int, let shape = Self.ints(args[2]), let strides = Self.ints(args[3]) else {
                throw .tensor(path: path, key: key, reason: "a tensor rebuild with a bad offset, size or stride")
            }
            return try TorchTensor(storage: storage, offset: Int(offset), shape: shape, strides: strides, key: key, path: path)
        default:
            return nil
        }
    }

    /// A tuple of ints (or a `torch.Size` of one).
    static func ints(_ node: PickleObject) -> [Int]? {
        if let (name, args) = node.call, name == "torch.Size", let inner = args.first { return ints(inner) }
        guard let items = node.elements else { return nil }
        var values: [Int] = []
        for item in items {
            guard let value = item.int, value >= Int64(Int.min), value <= Int64(Int.max) else { return nil }
            values.append(Int(value))
        }
        return values
    }

    /// A fresh node rebuilding a contiguous tensor over `storage`, which joins the storages;
    /// `location` is the device tag torch.load maps it to ("cpu", "cuda:0").
    func makeTensorNode(storage: TorchStorage, shape: [Int], location: String = "cpu") -> PickleObject {
        storages[storage.key] = storage
        return Self.tensorNode(storageKey: storage.key, dtype: storage.dtype, count: storage.count, shape: shape, location: location, legacy: container == .legacy)
    }

    /// The device tag of the storage under a tensor node (a parameter's too), nil when the
    /// node is no pickled tensor.
    func storageLocation(of node: PickleObject) -> String? {
        guard let (name, args) = node.call, let first = args.first else { return nil }
        if name.hasPrefix("torch._utils._rebuild_parameter") { return storageLocation(of: first) }
        guard case let .persistentID(id) = first.kind, let items = id.elements, items.count >= 4 else { return nil }
        return items[3].string
    }

    /// `_rebuild_tensor_v2(storage, 0, shape, contiguous strides, False, OrderedDict())`, as
    /// torch pickles a contiguous tensor; the legacy format's storage ids end with a view
    /// (None).
    static func tensorNode(storageKey: String, dtype: TorchDType, count: Int, shape: [Int], location: String = "cpu", legacy: Bool = false) -> PickleObject {
        let id = PickleObject(.tuple([
            PickleObject(.string("storage")), PickleObject(.global(module: "torch", name: dtype.storageClass)),
            PickleObject(.string(storageKey)), PickleObject(.string(location)), PickleObject(.int(Int64(count))),
        ] + (legacy ? [PickleObject(.none)] : [])))
        let ints = { (values: [Int]) in PickleObject(.tuple(values.map { PickleObject(.int(Int64($0))) })) }
        return PickleObject(.call(callable: PickleObject(.global(module: "torch._utils", name: "_rebuild_tensor_v2")), args: PickleObject(.tuple([
            PickleObject(.persistentID(id)), PickleObject(.int(0)), ints(shape), ints(TorchTensor.contiguousStrides(shape)),
            PickleObject(.bool(false)), PickleObject(.dict(entries: [], ordered: true)),
        ]))))
    }

    /// A key for a new storage that no existing one uses.
    func freshStorageKey() -> String {
        var k = storages.count
        while storages["\(k)"] != nil { k += 1 }
        return "\(k)"
    }
}
