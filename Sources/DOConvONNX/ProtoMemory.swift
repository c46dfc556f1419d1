#if canImport(Glibc)
import Glibc
#endif
import CProtobufC

/// Who owns the memory of a model's message tree.
///
/// Everything is malloc'd (by protobuf-c while unpacking, by edits afterwards) and freed with
/// free, except one thing: raw_data of tensors loaded without a copy points into the mapped
/// model file (see `WireSkeleton`). Those bytes belong to the mapping. So every free of tree
/// memory goes through `free(_:)` here, which skips pointers into a borrowed mapping; that
/// includes protobuf-c's own frees, through `allocator`.
enum ProtoMemory {
    /// malloc, and the borrow-aware free: for protobuf-c's unpack and free_unpacked.
    static let allocator: UnsafeMutablePointer<ProtobufCAllocator> = {
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
final class BorrowedFiles: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    static let shared = BorrowedFiles()

    private var ranges: [(start: UInt, end: UInt)] = []
    private var lock = pthread_mutex_t()

    private init() { pthread_mutex_init(&lock, nil) }

    func add(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        pthread_mutex_lock(&lock)
        ranges.append((UInt(bitPattern: base), UInt(bitPattern: base) + UInt(bytes.count)))
        pthread_mutex_unlock(&lock)
    }

    func remove(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        pthread_mutex_lock(&lock)
        if let k = ranges.firstIndex(where: { $0.start == UInt(bitPattern: base) }) { ranges.remove(at: k) }
        pthread_mutex_unlock(&lock)
    }

    func contains(_ pointer: UnsafeRawPointer) -> Bool {
        let address = UInt(bitPattern: pointer)
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return ranges.contains { $0.start <= address && address < $0.end }
    }
}
