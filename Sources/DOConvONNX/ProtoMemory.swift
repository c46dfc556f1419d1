#if canImport(Glibc)
import Glibc
#endif
import CProtobufC
import Synchronization

/// Who owns the memory of a model's message tree.
///
/// Everything is malloc'd (by protobuf-c while unpacking, by edits afterwards) and freed with
/// free, except one thing: raw_data of tensors loaded without a copy points into the mapped
/// model file (see `WireSkeleton`). Those bytes belong to the mapping. So every free of tree
/// memory goes through `free(_:)` here, which skips pointers into a borrowed mapping; that
/// includes protobuf-c's own frees, through `allocator`.
enum ProtoMemory {
    /// malloc, and the borrow-aware free: for protobuf-c's unpack and free_unpacked.
    // Written once, then only read by protobuf-c.
    nonisolated(unsafe) static let allocator: UnsafeMutablePointer<ProtobufCAllocator> = {
        let allocator = UnsafeMutablePointer<ProtobufCAllocator>.allocate(capacity: 1)
        allocator.initialize(to: ProtobufCAllocator(
            alloc: { _, size in malloc(max(size, 1)) },
            free: { _, pointer in ProtoMemory.free(pointer) },
            allocator_data: nil))
        return allocator
    }()

    /// Frees tree memory, unless it lies in a mapped file that tensors borrow from.
    static func free(_ pointer: UnsafeMutableRawPointer?) {
        guard let pointer, !BorrowedFiles.shared.contains(UnsafeRawPointer(pointer)) else { return }
        Glibc.free(pointer)
    }
}

/// The address ranges of mapped files whose bytes message trees point into, for as long as
/// the mappings live. A handful at a time (one per loaded model), so a list will do.
final class BorrowedFiles: Sendable {
    static let shared = BorrowedFiles()

    /// [start, end) of each borrowed mapping.
    private let ranges = Mutex<[(start: UInt, end: UInt)]>([])

    private init() {}

    func add(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        ranges.withLock { $0.append((UInt(bitPattern: base), UInt(bitPattern: base) + UInt(bytes.count))) }
    }

    func remove(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        ranges.withLock { ranges in
            if let k = ranges.firstIndex(where: { $0.start == UInt(bitPattern: base) }) { ranges.remove(at: k) }
        }
    }

    func contains(_ pointer: UnsafeRawPointer) -> Bool {
        let address = UInt(bitPattern: pointer)
        return ranges.withLock { $0.contains { $0.start <= address && address < $0.end } }
    }
}
