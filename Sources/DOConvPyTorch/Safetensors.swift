import DOConvJSON
import DOConvFileIO
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A `.safetensors` header: an 8-byte little-endian length, a JSON object of
/// `name: {dtype, shape, data_offsets}` (and `__metadata__`), then the tensors' bytes.
/// Its tensors become a flat dict of tensor rebuilds, so safetensors files fold through
/// the same code as pickled state dicts.
struct SafetensorsHeader {
    struct Entry {
        var name: String
        var dtype: TorchDType
        var shape: [Int]
        var begin: Int
        var end: Int
    }

    /// safetensors' own limit on the header size.
    static let maxHeaderSize = 100_000_000

    let entries: [Entry]
    let metadata: [String: String]?
    let dataStart: Int
    let bytes: UnsafeRawBufferPointer

    init(bytes: UnsafeRawBufferPointer, path: String) throws(PyTorchError) {
        let reader = BoundedBytes(bytes) { PyTorchError.corrupt(path: path, reason: $0) }
        let length = try reader.u64(0)
        guard length <= UInt64(Self.maxHeaderSize), length <= UInt64(bytes.count - 8) else {
            throw .corrupt(path: path, reason: "the safetensors header claims \(length) bytes, past the end of the file")
        }
        dataStart = 8 + Int(length)
        self.bytes = bytes
        guard let object = try? JSONTree.parse(try reader.slice(8, Int(length))) as? [String: Any] else {
            throw .corrupt(path: path, reason: "the safetensors header is not a JSON object")
        }
        var entries: [Entry] = []
        var metadata: [String: String]?
        let dataSize = bytes.count - dataStart
        for (name, value) in object {
            if name == "__metadata__" {
                guard let map = value as? [String: String] else { throw .corrupt(path: path, reason: "the safetensors header's __metadata__ is not a map of strings") }
                metadata = map
                continue
            }
            guard let info = value as? [String: Any], let code = info["dtype"] as? String,
                  let shape = (info["shape"] as? [Any])?.compactMap({ JSONNumber.int($0) }),
                  let offsets = (info["data_offsets"] as? [Any])?.compactMap({ JSONNumber.int($0) }), offsets.count == 2 else {
                throw .corrupt(path: path, reason: "tensor '\(name)' has no dtype, shape or data_offsets in the safetensors header")
            }
            guard let dtype = TorchDType(safetensorsCode: code) else { throw .corrupt(path: path, reason: "tensor '\(name)' has an unknown dtype \(code)") }
            guard shape.allSatisfy({ $0 >= 0 }), let count = Self.elementCount(shape), count.multipliedReportingOverflow(by: dtype.byteWidth).overflow == false else {
                throw .corrupt(path: path, reason: "tensor '\(name)' has a bad shape \(shape)")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw .corrupt(path: path, reason: "tensor '\(name)' has data_offsets [\(begin), \(end)] past the \(dataSize) bytes of data")
            }
            guard end - begin == count * dtype.byteWidth else {
                throw .corrupt(path: path, reason: "tensor '\(name)' has data_offsets [\(begin), \(end)] that do not hold its \(count) elements")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        // The order of the data, which is the order the file was written in.
        self.entries = entries.sorted { ($0.begin, $0.name) < ($1.begin, $1.name) }
        self.metadata = metadata
    }

    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for size in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// One storage per tensor, keyed by the tensor's name.
    func storages(owner: MappedFile) -> [String: TorchStorage] {
        Dictionary(entries.map { entry in
            let data = UnsafeRawBufferPointer(rebasing: bytes[(dataStart + entry.begin)..<(dataStart + entry.end)])
            return (entry.name, TorchStorage(key: entry.name, dtype: entry.dtype, count: (entry.end - entry.begin) / entry.dtype.byteWidth,
                                             bytes: data, owner: owner))
        }, uniquingKeysWith: { a, _ in a })
    }

    /// The tensors as an ordered dict of contiguous tensor rebuilds.
    var root: PickleObject {
        PickleObject(.dict(entries: entries.map { entry in
            let node = Checkpoint.tensorNode(storageKey: entry.name, dtype: entry.dtype, count: (entry.end - entry.begin) / entry.dtype.byteWidth, shape: entry.shape)
            return (key: PickleObject(.string(entry.name)), value: node)
        }, ordered: true))
    }
}

extension TorchDType {
    /// The safetensors code (`F32`).
    var safetensorsCode: String {
        switch self {
        case .float32: return "F32"
        case .float64: return "F64"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .int64: return "I64"
        case .int32: return "I32"
        case .int16: return "I16"
        case .int8: return "I8"
        case .uint8: return "U8"
        case .bool: return "BOOL"
        case .complex64: return "C64"
        case .complex128: return "C128"
        case .float8e4m3fn: return "F8_E4M3"
        case .float8e5m2: return "F8_E5M2"
        }
    }
}
