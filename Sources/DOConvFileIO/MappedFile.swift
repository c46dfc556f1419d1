#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory mapping of a whole file, so that tensors are read in place and the
/// bytes that go unchanged into an output never pass through the heap.
///
/// The file stays open while the mapping lives, so an `AtomicFileWriter` given this file as
/// a source can have the kernel copy its bytes (`sendfile`) without this process reading them.
public final class MappedFile {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    /// The open file (read-only), or -1 for an empty file.
    public let descriptor: Int32

    public init(path: String) throws(FileIOError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: FileIOError.systemReason) }
        func fail(_ reason: String) -> FileIOError {
            close(fd)
            return .cannotOpen(path: path, reason: reason)
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw fail(FileIOError.systemReason) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file") }
        let size = Int(info.st_size)
        guard size > 0 else {
            close(fd)
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            descriptor = -1
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else { throw fail(FileIOError.systemReason) }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
        descriptor = fd
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
        if descriptor >= 0 { close(descriptor) }
    }

    /// Whether this is the file with that inode (a name or a hard link of it).
    public func isFile(device: UInt, inode: UInt) -> Bool {
        var info = stat()
        return descriptor >= 0 && fstat(descriptor, &info) == 0 && info.st_dev == device && info.st_ino == inode
    }

    /// The file offset of `range` when it lies wholly inside this mapping.
    public func offset(of range: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress, let start = range.baseAddress,
              start >= base, start + range.count <= base + bytes.count else { return nil }
        return start - base
    }

    /// Drops the pages behind `range` (which must lie in this mapping) from this process:
    /// they stay in the page cache and come back on the next read, so bytes already folded
    /// or copied to the output stop counting as memory. Only whole pages inside the range
    /// go, since the first and last may hold neighbouring data still to be read.
    public func release(_ range: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, let start = range.baseAddress, offset(of: range) != nil else { return }
        let first = (start - base + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        let end = (start - base + range.count) / Self.pageSize * Self.pageSize
        guard end > first else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + first), end - first, MADV_DONTNEED)
    }

    private static let pageSize = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))
}
