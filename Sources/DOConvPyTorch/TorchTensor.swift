import DOConvFileIO
import DOConvCore

/// The bytes of one storage: a region of the mapped input, or bytes made by the fold.
public final class TorchStorage {
    public let key: String
    public let dtype: TorchDType
    public let count: Int
    public let bytes: UnsafeRawBufferPointer
    /// Keeps `bytes` alive: the mapped file, or owned memory.
    private let owner: AnyObject?

    init(key: String, dtype: TorchDType, count: Int, bytes: UnsafeRawBufferPointer, owner: AnyObject?) {
        self.key = key
        self.dtype = dtype
        self.count = count
        self.bytes = bytes
        self.owner = owner
    }

    /// New storage holding `byteCount` bytes written by `fill`.
    convenience init(key: String, dtype: TorchDType, count: Int, fill: (UnsafeMutableRawBufferPointer) -> Void) {
        let memory = OwnedBytes(count: count * dtype.byteWidth)
        fill(memory.buffer)
        self.init(key: key, dtype: dtype, count: count, bytes: UnsafeRawBufferPointer(memory.buffer), owner: memory)
    }

    /// Whether the bytes lie in a mapped input file (not in memory made here).
    var isMapped: Bool { owner is MappedFile }

    /// Lets the pages of a storage read from the input go (see `MappedFile.release`).
    func releaseMappedPages() {
        (owner as? MappedFile)?.release(bytes)
    }

    func withExtendedLifetime<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        defer { Swift.withExtendedLifetime(owner) {} }
        return try body()
    }
}

private final class OwnedBytes {
    let buffer: UnsafeMutableRawBufferPointer
    init(count: Int) { buffer = .allocate(byteCount: max(count, 1), alignment: 64) }
    deinit { buffer.deallocate() }
}

/// A tensor of a checkpoint: a strided view of a storage, as `_rebuild_tensor_v2` (or a
/// safetensors header entry) describes it.
public struct TorchTensor {
    public let storage: TorchStorage
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]

    public var dtype: TorchDType { storage.dtype }
    public var count: Int { shape.reduce(1, *) }

    /// Checks that the view lies inside its storage; `key` names the tensor in errors.
    init(storage: TorchStorage, offset: Int, shape: [Int], strides: [Int], key: String, path: String) throws(PyTorchError) {
        guard shape.count == strides.count else { throw .tensor(path: path, key: key, reason: "\(shape.count) dims but \(strides.count) strides") }
        guard offset >= 0, shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else {
            throw .tensor(path: path, key: key, reason: "a negative size, stride or offset")
        }
        // An empty view reads nothing, but its offset must still lie inside the storage (or
        // at its end), since readers slice the storage from it.
        if shape.contains(0) {
            guard offset <= storage.count else {
                throw .tensor(path: path, key: key, reason: "its empty view's offset \(offset) lies past the end of its storage of \(storage.count) elements")
            }
        }
        // The last element the view reaches must lie inside the storage.
        if !shape.contains(0) {
            var last = offset
            for (size, stride) in zip(shape, strides) {
                let (step, o1) = (size - 1).multipliedReportingOverflow(by: stride)
                let (sum, o2) = last.addingReportingOverflow(step)
                guard !o1, !o2 else { throw .tensor(path: path, key: key, reason: "its view lies past the end of its storage") }
                last = sum
            }
            guard last < storage.count else {
                throw .tensor(path: path, key: key, reason: "its view (offset \(offset), size \(shape), stride \(strides)) lies past the end of its storage of \(storage.count) elements")
            }
            guard Tensor.elementCount(of: shape) != nil else { throw .tensor(path: path, key: key, reason: "its size overflows") }
        }
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = strides
    }

    /// Row-major strides of `shape`.
    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var step = 1
        for k in shape.indices.reversed() {
            strides[k] = step
            step *= max(shape[k], 1)
        }
        return strides
    }

    public var isContiguous: Bool {
        zip(zip(shape, strides), Self.contiguousStrides(shape)).allSatisfy { $0.0 <= 1 || $0.1 == $1 }
    }

    /// The element bytes in row-major order: the storage's own bytes when contiguous.
    public func withLogicalBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let width = dtype.byteWidth
        if count == 0 { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        if isContiguous {
            return try storage.withExtendedLifetime { () throws(E) -> R in
                try body(UnsafeRawBufferPointer(rebasing: storage.bytes[(offset * width)..<((offset + count) * width)]))
            }
        }
        var gathered = [UInt8](repeating: 0, count: count * width)
        storage.withExtendedLifetime {
            gathered.withUnsafeMutableBytes { out in
                var index = [Int](repeating: 0, count: shape.count)
                for k in 0..<count {
                    var element = offset
                    for d in shape.indices { element += index[d] * strides[d] }
                    out.baseAddress!.advanced(by: k * width).copyMemory(from: storage.bytes.baseAddress!.advanced(by: element * width), byteCount: width)
                    _ = Tensor.advance(&index, within: shape)
                }
            }
        }
        let result = gathered.withUnsafeBytes { bytes in Result { () throws(E) -> R in try body(bytes) } }
        return try result.get()
    }

    /// The values as floats (a float type only), borrowing the storage for contiguous float32.
    /// The values of a float64 tensor, exactly; nil for other types.
    public func float64Values() -> [Double]? {
        guard dtype == .float64 else { return nil }
        return withLogicalBytes { bytes in (0..<count).map { bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) } }
    }

    public func floatValues() throws(TensorError) -> FloatValues {
        guard let type = dtype.elementType else { throw .inconsistentLayer("not a floating-point tensor") }
        if type == .float32 && isContiguous {
            return try FloatValues(borrowing: UnsafeRawBufferPointer(rebasing: storage.bytes[(offset * 4)..<((offset + count) * 4)]), count: count, owner: storage)
        }
        return try withLogicalBytes { (bytes) throws(TensorError) in FloatValues(try ElementCodec.decode(bytes, as: type, count: count)) }
    }
}
