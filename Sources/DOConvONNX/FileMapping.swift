#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory mapping of a whole file: model bytes are parsed and tensor data is
/// read in place, without copying the file into the heap first.
///
/// The file stays open for as long as the mapping lives, so bytes that go unchanged into
/// an output file can be copied there by the kernel (`FileSink`) without ever being read
/// into this process.
final class FileMapping {
    let path: String
    let bytes: UnsafeRawBufferPointer
    /// The open file (read-only), or -1 for an empty file.
    let descriptor: Int32
    /// True once message trees point into these bytes (see `ProtoMemory`).
    private var lent = false

    init(path: String) throws(ONNXError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .cannotOpen(path: path, reason: reason)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw .cannotOpen(path: path, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        guard size > 0 else {
            close(fd)
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            descriptor = -1
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .cannotOpen(path: path, reason: reason)
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
        descriptor = fd
    }

    deinit {
        if lent { BorrowedFiles.shared.remove(bytes) }
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
        if descriptor >= 0 { close(descriptor) }
    }

    /// Records that message trees will point into these bytes, so freeing a tree leaves them
    /// alone. The trees must be freed before this mapping goes.
    func lendToMessages() {
        guard !lent else { return }
        lent = true
        BorrowedFiles.shared.add(bytes)
    }

    /// The file offset of `range` when it lies wholly inside this mapping.
    func offset(of range: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress, let start = range.baseAddress,
              start >= base, start + range.count <= base + bytes.count else { return nil }
        return start - base
    }

    /// Drops the pages behind `range` from this process (they stay in the page cache and
    /// come back on the next read), so tensors already folded stop counting as memory.
    func release(_ range: UnsafeRawBufferPointer) {
        guard let start = range.baseAddress, offset(of: range) != nil, let base = bytes.baseAddress else { return }
        let page = FileMapping.pageSize
        // Whole pages only: the first and last ones may hold bytes of neighbouring tensors,
        // which would only have to be faulted in again.
        let first = (start - base + page - 1) / page * page
        let end = (start - base + range.count) / page * page
        guard end > first else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + first), end - first, MADV_DONTNEED)
    }

    private static let pageSize = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))
}
