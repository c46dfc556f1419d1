#if canImport(Glibc)
import Glibc
#endif

/// Why a file could not be mapped or written.
public struct FileIOError: Error, Equatable, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(reason)" }
}

/// A read-only memory mapping of a whole file, so that tensors are read in place and the
/// bytes that go unchanged into an output never pass through the heap.
public final class MappedFile {
    public let path: String
    public let bytes: UnsafeRawBufferPointer

    public init(path: String) throws(FileIOError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileIOError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) } // the mapping keeps the file's pages
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileIOError(path: path, reason: String(cString: strerror(errno))) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FileIOError(path: path, reason: "not a regular file") }
        let size = Int(info.st_size)
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else { throw FileIOError(path: path, reason: String(cString: strerror(errno))) }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }

    /// Drops the pages behind `range` (which must lie in this mapping) from this process:
    /// they stay in the page cache and come back on the next read, so bytes already folded
    /// or copied to the output stop counting as memory. Only whole pages inside the range
    /// go, since the first and last may hold neighbouring data still to be read.
    public func release(_ range: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, let start = range.baseAddress, start >= base, start + range.count <= base + bytes.count else { return }
        let first = (start - base + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        let end = (start - base + range.count) / Self.pageSize * Self.pageSize
        guard end > first else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + first), end - first, MADV_DONTNEED)
    }

    private static let pageSize = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))
}
