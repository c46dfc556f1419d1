import DOConvCore
import DOConvFileIO

/// An MXNet `.params` file (`NDArray::Save`): a list of named dense arrays, read in place
/// from the mapped file. Each array keeps the exact bytes of its header, so arrays that are
/// not folded are written back byte for byte.
///
/// Layout (little-endian): uint64 0x112, uint64 reserved, uint64 count, the arrays, uint64
/// name count, names (uint64 length + bytes). An array: uint32 magic (0xF993FAC9 V2 with a
/// storage type, 0xF993FAC8 V1, 0xF993FACA V3 with a storage type), or a legacy header that
/// starts with ndim; the shape (uint32 ndim, then int64 dims; uint32 dims in the legacy
/// header); the context (int32 device type, int32 id); int32 dtype; the data.
public struct NDArrayList {
    public struct Array {
        public var name: String
        public var dtype: MXNetDType
        public var shape: [Int]
        /// The header as stored, magic to dtype.
        public var header: UnsafeRawBufferPointer
        public var data: UnsafeRawBufferPointer
        public var count: Int { shape.reduce(1, *) }
    }

    static let listMagic: UInt64 = 0x112
    static let magicV1: UInt32 = 0xF993_FAC8
    static let magicV2: UInt32 = 0xF993_FAC9
    static let magicV3: UInt32 = 0xF993_FACA

    public let path: String
    public private(set) var arrays: [Array] = []
    let file: MappedFile
    /// The 8-byte reserved word of the list header, written back as read.
    let reserved: UInt64

    /// Whether bytes starting a file look like an NDArray list.
    public static func looksLikeParams(head: [UInt8]) -> Bool {
        head.count >= 8 && head[0..<8].elementsEqual(withUnsafeBytes(of: listMagic.littleEndian) { Swift.Array($0) })
    }

    public init(path: String) throws(MXNetError) {
        self.path = path
        do { file = try MappedFile(path: path) } catch { throw .file(error) }
        var reader = Reader(bytes: file.bytes, path: path)
        guard try reader.u64() == Self.listMagic else { throw .corrupt(path: path, reason: "not an MXNet .params file (bad list magic)") }
        reserved = try reader.u64()
        let count = try reader.u64()
        // Every array takes at least 24 bytes, so a count past that is a lie.
        guard count <= UInt64(file.bytes.count / 24) else { throw .corrupt(path: path, reason: "\(count) arrays claimed, past the end of the file") }
        var arrays: [Array] = []
        for k in 0..<Int(count) {
            arrays.append(try Self.readArray(&reader, index: k, path: path))
        }
        let names = try reader.u64()
        guard names == count || names == 0 else {
            throw .corrupt(path: path, reason: "\(names) names for \(count) arrays (the names and arrays disagree)")
        }
        for k in 0..<Int(names) {
            let length = try reader.u64()
            guard length <= UInt64(reader.remaining) else { throw .corrupt(path: path, reason: "truncated: name \(k) runs past the end of the file") }
            arrays[k].name = String(decoding: try reader.bytes(Int(length)), as: UTF8.self)
        }
        // Arrays are found, replaced and removed by name: two of one name would be confused.
        var seen = Set<String>()
        for array in arrays where names > 0 && !seen.insert(array.name).inserted {
            throw .corrupt(path: path, reason: "the array name '\(array.name)' appears twice")
        }
        self.arrays = arrays
    }

    private static func readArray(_ reader: inout Reader, index: Int, path: String) throws(MXNetError) -> Array {
        let start = reader.position
        let first = try reader.u32()
        var shape: [Int] = []
        switch first {
        case magicV2, magicV3:
            let storage = try reader.i32()
            guard storage == 0 || storage == -1 else {
                throw .corrupt(path: path, reason: "array \(index) is sparse (storage type \(storage)); only dense arrays are supported")
            }
            shape = try readShape(&reader, index: index, path: path, wide: true)
        case magicV1:
            shape = try readShape(&reader, index: index, path: path, wide: true)
        default:
            // The legacy header: the first word is ndim, then uint32 dims.
            guard first <= 32 else { throw .corrupt(path: path, reason: "array \(index) has an unknown magic 0x\(String(first, radix: 16))") }
            reader.position = start
            shape = try readShape(&reader, index: index, path: path, wide: false)
        }
        if shape.isEmpty && first != magicV3 {
            // An empty array (ndim 0) stores nothing more.
            return Array(name: "", dtype: .float32, shape: [], header: try reader.slice(from: start), data: UnsafeRawBufferPointer(start: nil, count: 0))
        }
        _ = try reader.i32() // device type
        _ = try reader.i32() // device id
        let code = try reader.i32()
        guard let dtype = MXNetDType(rawValue: code) else { throw .corrupt(path: path, reason: "array \(index) has an unknown dtype \(code)") }
        let header = try reader.slice(from: start)
        guard let count = Tensor.elementCount(of: shape), count <= reader.remaining / dtype.byteWidth else {
            throw .corrupt(path: path, reason: "truncated: array \(index) of shape \(shape) runs past the end of the file")
        }
        let data = try reader.bytes(count * dtype.byteWidth)
        return Array(name: "", dtype: dtype, shape: shape, header: header, data: data)
    }

    private static func readShape(_ reader: inout Reader, index: Int, path: String, wide: Bool) throws(MXNetError) -> [Int] {
        let ndim = try reader.u32()
        guard ndim <= 32 else { throw .corrupt(path: path, reason: "array \(index) claims \(ndim) dims") }
        var shape: [Int] = []
        for _ in 0..<ndim {
            let dim = wide ? Int64(bitPattern: try reader.u64()) : Int64(try reader.u32())
            guard dim >= 0, dim <= Int64(Int32.max) else { throw .corrupt(path: path, reason: "array \(index) has a dim of \(dim)") }
            shape.append(Int(dim))
        }
        return shape
    }

    /// A new dense array, written after an existing one.
    struct NewArray {
        var name: String
        var dtype: MXNetDType
        var shape: [Int]
        var data: [UInt8]

        /// A V2 header as `NDArray::Save` writes one: magic, dense storage, the shape as
        /// int64 dims, the CPU context, the dtype.
        var header: [UInt8] {
            var header = LittleEndianBytes()
            header.u32(NDArrayList.magicV2)
            header.u32(0)
            header.u32(UInt32(shape.count))
            for dim in shape { header.u64(UInt64(dim)) }
            header.u32(1) // cpu
            header.u32(0)
            header.u32(UInt32(bitPattern: dtype.rawValue))
            return header.bytes
        }
    }

    /// Writes the list into `file` with `replaced` data for the arrays at some positions
    /// (same size), without the arrays at the positions in `removed`, and with the
    /// `inserted` arrays after the one at their position; every other byte as read. By
    /// position, not name: a name could not tell two arrays apart. Replaced data that
    /// `pending` is still computing is waited for where it is written.
    func write(into file: AtomicFileWriter, replaced: [Int: UnsafeRawBufferPointer], removed: Set<Int>, inserted: [Int: [NewArray]] = [:],
               pending: PendingKernels? = nil) {
        let kept = arrays.indices.filter { !removed.contains($0) }
        let count = kept.count + inserted.values.reduce(0) { $0 + $1.count }
        var head = LittleEndianBytes()
        head.u64(Self.listMagic)
        head.u64(reserved)
        head.u64(UInt64(count))
        file.write(head.bytes)
        var names: [String] = []
        withExtendedLifetime(self.file) {
            for k in kept {
                file.write(arrays[k].header)
                if let data = replaced[k] {
                    pending?.waitForBytes(at: data.baseAddress)
                    file.write(data)
                } else {
                    file.write(arrays[k].data)
                }
                names.append(arrays[k].name)
                for array in inserted[k] ?? [] {
                    file.write(array.header)
                    file.write(array.data)
                    names.append(array.name)
                }
            }
        }
        var list = LittleEndianBytes()
        list.u64(UInt64(names.count))
        for name in names {
            let bytes = Swift.Array(name.utf8)
            list.u64(UInt64(bytes.count))
            list.bytes += bytes
        }
        file.write(list.bytes)
    }
}

/// MXNet's dtype codes.
public enum MXNetDType: Int32, Sendable {
    case float32 = 0, float64 = 1, float16 = 2, uint8 = 3, int32 = 4, int8 = 5, int64 = 6, bool = 7, int16 = 8
    case uint16 = 9, uint32 = 10, uint64 = 11, bfloat16 = 12

    /// The element type in doconv's one table (widths, foldable types).
    public var scalar: ScalarType {
        switch self {
        case .float32: return .float32
        case .float64: return .float64
        case .float16: return .float16
        case .uint8: return .uint8
        case .int32: return .int32
        case .int8: return .int8
        case .int64: return .int64
        case .bool: return .bool
        case .int16: return .int16
        case .uint16: return .uint16
        case .uint32: return .uint32
        case .uint64: return .uint64
        case .bfloat16: return .bfloat16
        }
    }

    public var byteWidth: Int { scalar.byteWidth }

    public var elementType: ElementType? { scalar.elementType }
}

/// Bounds-checked little-endian reads: a read past the end is a corrupt-file error.
struct Reader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var position = 0

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    var remaining: Int { bytes.count - position }

    mutating func bytes(_ count: Int) throws(MXNetError) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw .corrupt(path: path, reason: "truncated: \(count) bytes at byte \(position) run past the end of the file") }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    func slice(from start: Int) throws(MXNetError) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[start..<position])
    }

    mutating func u64() throws(MXNetError) -> UInt64 { UInt64(littleEndian: try bytes(8).loadUnaligned(as: UInt64.self)) }
    mutating func u32() throws(MXNetError) -> UInt32 { UInt32(littleEndian: try bytes(4).loadUnaligned(as: UInt32.self)) }
    mutating func i32() throws(MXNetError) -> Int32 { Int32(bitPattern: try u32()) }
}
