import DOConvCore
import DOConvFileIO
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// The index of a sharded checkpoint (transformers `save_pretrained(max_shard_size=...)`,
/// huggingface_hub `save_torch_state_dict`, accelerate `save_model`):
/// `{"metadata": {"total_size": bytes, ...}, "weight_map": {key: shard file name}}`, with the
/// shards (safetensors files or torch.save zips) beside it. Validated before any shard is
/// read: every shard is a plain file name in the index's folder.
public struct ShardIndex {
    /// The index file.
    public let path: String
    public let folder: String
    public let fileName: String
    let metadata: [String: JSONValue]
    let weightMap: [String: String]
    /// The shard file names, sorted (model-00001-of-00003 first).
    public let shardNames: [String]

    /// Larger than any index (a key and a file name per tensor).
    static let maxSize = 100_000_000

    /// Whether the first bytes of a file are those of an index: a JSON object whose first
    /// key is "metadata" or "weight_map" (both savers write it so).
    public static func looksLikeIndex(head: [UInt8]) -> Bool {
        let text = String(decoding: head, as: UTF8.self).drop { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        guard text.first == "{" else { return false }
        let rest = text.dropFirst().drop { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        return rest.hasPrefix("\"metadata\"") || rest.hasPrefix("\"weight_map\"")
    }

    /// The index a folder holds (`model.safetensors.index.json`, `pytorch_model.bin.index.json`).
    public static func indexFiles(inFolder folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".index.json") && !$0.hasPrefix(".") }.sorted()
    }

    /// Reads the index at `path`, or the one index in the folder `path`.
    public init(path given: String) throws(PyTorchError) {
        guard FilePath.exists(given) else { throw .cannotOpen(path: given, reason: "no such file") }
        if FilePath.isFolder(given) {
            let found = Self.indexFiles(inFolder: given)
            guard found.count == 1 else {
                throw .shards(path: given, reason: found.isEmpty ? "the folder holds no *.index.json" : "the folder holds several indexes (\(found.joined(separator: ", "))): pass the one to fold")
            }
            path = FilePath.join(given, found[0])
        } else {
            path = given
        }
        folder = FilePath.directory(of: path)
        fileName = FilePath.baseName(of: path)
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .file(error) }
        guard file.bytes.count <= Self.maxSize else { throw .shards(path: path, reason: "the index is larger than \(Self.maxSize) bytes") }
        let document: [String: JSONValue]
        do { document = try JSONDecoder().decode([String: JSONValue].self, from: Data(file.bytes)) } catch {
            throw .shards(path: path, reason: "the index is not a JSON object")
        }
        guard case let .object(map)? = document["weight_map"] else { throw .shards(path: path, reason: "the index has no weight_map object") }
        var weightMap: [String: String] = [:]
        for (key, value) in map {
            guard case let .string(shard) = value else { throw .shards(path: path, reason: "weight_map['\(key)'] is not a file name") }
            guard !shard.isEmpty, shard != ".", shard != "..", !shard.contains("/"), !shard.contains("\0") else {
                throw .shards(path: path, reason: "weight_map names shard '\(shard)', which is not a file beside the index")
            }
            weightMap[key] = shard
        }
        if let metadata = document["metadata"] {
            guard case let .object(fields) = metadata else { throw .shards(path: path, reason: "the index's metadata is not an object") }
            self.metadata = fields
        } else {
            self.metadata = [:]
        }
        self.weightMap = weightMap
        shardNames = Array(Set(weightMap.values)).sorted()
        guard !shardNames.isEmpty else { throw .shards(path: path, reason: "the index's weight_map is empty") }
    }

    /// Reads every shard and checks that they and the index agree, key by key.
    func readShards(strictPickle: Bool) throws(PyTorchError) -> [Checkpoint] {
        var holder: [String: String] = [:]
        var shards: [Checkpoint] = []
        var held: [(key: String, shard: String)] = []
        for name in shardNames {
            let shardPath = FilePath.join(folder, name)
            guard FilePath.exists(shardPath), !FilePath.isFolder(shardPath) else {
                throw .shards(path: path, reason: "the index names shard '\(name)', which is missing")
            }
            let shard = try Checkpoint(path: shardPath, strictPickle: strictPickle)
            guard let entries = shard.root.dictEntries else { throw .shards(path: path, reason: "shard '\(name)' does not hold a flat dict of tensors") }
            for entry in entries {
                guard let key = entry.key.string, try shard.tensor(entry.value, key: key) != nil else {
                    throw .shards(path: path, reason: "shard '\(name)' holds an entry that is not a named tensor")
                }
                if let other = holder[key] { throw .shards(path: path, reason: "tensor '\(key)' is in both '\(other)' and '\(name)'") }
                holder[key] = name
                held.append((key, name))
            }
            shards.append(shard)
        }
        for (key, name) in held where weightMap[key] != name {
            throw .shards(path: path, reason: weightMap[key].map { "tensor '\(key)' is in '\(name)', but the index maps it to '\($0)'" }
                          ?? "tensor '\(key)' of '\(name)' is not in the index")
        }
        if let missing = weightMap.keys.sorted().first(where: { holder[$0] == nil }) {
            throw .shards(path: path, reason: "the index maps '\(missing)' to '\(weightMap[missing] ?? "")', which does not hold it")
        }
        return shards
    }

    /// The index for shards as they are now: their keys, and the size fields moved by
    /// what the fold changed (so that each saver's own way of counting is kept).
    func rewritten(for shards: [(name: String, checkpoint: Checkpoint)], parameterDelta: Int, byteDelta: Int) throws(PyTorchError) -> [UInt8] {
        var map: [String: JSONValue] = [:]
        for (name, shard) in shards {
            for entry in shard.root.dictEntries ?? [] { if let key = entry.key.string { map[key] = .string(name) } }
        }
        var fields = metadata
        if case let .integer(size)? = fields["total_size"] { fields["total_size"] = .integer(size + Int64(byteDelta)) }
        if case let .integer(count)? = fields["total_parameters"] { fields["total_parameters"] = .integer(count + Int64(parameterDelta)) }
        let document: JSONValue = .object(["metadata": .object(fields), "weight_map": .object(map)])
        return Array((document.pythonJSON(indent: 0) + "\n").utf8)
    }
}

/// A JSON value kept as read, written back the way Python's `json.dumps(indent=2,
/// sort_keys=True)` writes it (the index files' own style).
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer()
        if value.decodeNil() { self = .null }
        else if let flag = try? value.decode(Bool.self) { self = .bool(flag) }
        else if let integer = try? value.decode(Int64.self) { self = .integer(integer) }
        else if let number = try? value.decode(Double.self) { self = .number(number) }
        else if let text = try? value.decode(String.self) { self = .string(text) }
        else if let items = try? value.decode([JSONValue].self) { self = .array(items) }
        else { self = .object(try value.decode([String: JSONValue].self)) }
    }

    func pythonJSON(indent level: Int) -> String {
        let pad = String(repeating: "  ", count: level + 1)
        let close = String(repeating: "  ", count: level)
        switch self {
        case .null: return "null"
        case let .bool(flag): return flag ? "true" : "false"
        case let .integer(value): return String(value)
        case let .number(value): return value.isFinite ? "\(value)" : (value.isNaN ? "NaN" : (value > 0 ? "Infinity" : "-Infinity"))
        case let .string(text): return Self.quoted(text)
        case let .array(items):
            guard !items.isEmpty else { return "[]" }
            return "[\n" + items.map { pad + $0.pythonJSON(indent: level + 1) }.joined(separator: ",\n") + "\n" + close + "]"
        case let .object(fields):
            guard !fields.isEmpty else { return "{}" }
            return "{\n" + fields.keys.sorted().map { pad + Self.quoted($0) + ": " + (fields[$0] ?? .null).pythonJSON(indent: level + 1) }.joined(separator: ",\n") + "\n" + close + "}"
        }
    }

    /// A string as Python's json module writes it by default (ensure_ascii).
    static func quoted(_ text: String) -> String {
        var out = "\""
        for unit in text.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
            default:
                let hex = String(unit, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        }
        return out + "\""
    }
}
