import CFileSupport
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Writes a file next to its destination and renames it into place only on `commit()`, so
/// a failed run never leaves a partial output, and the destination may be the input (whose
/// mapping keeps reading the old file).
///
/// Small writes are staged in one buffer; large ones go straight to the file, and large ones
/// whose bytes lie in one of the `sources` (mapped inputs: tensors that pass through
/// unchanged) are copied file to file by the kernel (`sendfile`), so those bytes are never
/// touched by this process: a model's untouched tensors cost what `cp` costs.
public final class AtomicFileWriter {
    public let destination: String
    private let temporaryPath: String
    private var fd: Int32
    private let sources: [MappedFile]
    private let staging: UnsafeMutableRawBufferPointer
    private var staged = 0
    /// Bytes written so far (staged included): the offset of the next byte.
    public private(set) var offset = 0
    /// Bytes in the file itself (staged ones not), and how many of them the disk writes
    /// were started for.
    private var inFile = 0
    private var writebackStarted = 0
    /// Disk writes are started every this many bytes.
    private static let writebackChunk = 8 << 20
    private var failure: String?
    /// Set once the temporary file has become the destination.
    private var renamed = false
    private static let stagingSize = 1 << 20
    /// Below this a kernel copy costs more (a system call) than copying through the staging buffer.
    public static let kernelCopySize = 64 << 10

    /// `sources`: mapped files whose bytes, when written here, the kernel may copy itself.
    public init(destination: String, sources: [MappedFile] = []) throws(FileIOError) {
        self.destination = destination
        self.sources = sources
        let created = try TemporaryFiles.create(beside: destination)
        fd = created.descriptor
        temporaryPath = created.path
        staging = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.stagingSize, alignment: 64)
        Self.dropCachedPages(of: destination, sparing: sources)
    }

    /// Drops the page cache of the file this one will replace, on another thread, while this
    /// one is written. The kernel frees a replaced file's pages inside the `rename` that
    /// replaces it, on the critical path: 7 of the 20 ms that renaming over a 100 MB output
    /// took. Dropping them changes nothing in the file, which stays whole until the rename
    /// (and is left as it was when the write fails): a later reader reads it from the disk.
    /// An input being replaced (one of `sources`, by inode) keeps its pages: they are read.
    private static func dropCachedPages(of destination: String, sparing sources: [MappedFile]) {
        let fd = open(destination, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size >= evictionSize,
              !sources.contains(where: { $0.isFile(device: info.st_dev, inode: info.st_ino) }) else {
            close(fd)
            return
        }
        let file = fd
        DispatchQueue.global().async {
            _ = posix_fadvise(file, 0, 0, POSIX_FADV_DONTNEED)
            close(file)
        }
    }

    /// Below this a replaced file's pages are not worth a thread.
    private static let evictionSize = 8 << 20

    deinit {
        discard()
        staging.deallocate()
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil, bytes.count > 0, let source = bytes.baseAddress else { return }
        offset += bytes.count
        if staged + bytes.count <= staging.count {
            (staging.baseAddress! + staged).copyMemory(from: source, byteCount: bytes.count)
            staged += bytes.count
            return
        }
        flush()
        if bytes.count >= Self.kernelCopySize, let file = sources.first(where: { $0.offset(of: bytes) != nil }) {
            copy(bytes, from: file)
        } else if bytes.count >= staging.count / 2 {
            writeAll(bytes)
        } else {
            staging.baseAddress!.copyMemory(from: source, byteCount: bytes.count)
            staged = bytes.count
        }
    }

    /// Throws if a write so far has failed (every later write is dropped).
    public func check() throws(FileIOError) {
        if let failure { throw .cannotWrite(path: destination, reason: failure) }
    }

    /// Flushes, closes and renames the file into place.
    public func commit() throws(FileIOError) {
        try Self.commit([self])
    }

    /// Commits several files as one result: every file is written out and synced first, and
    /// only then renamed into place, in the order given (put the file that names the others,
    /// an index, last). A failure before the renames leaves every destination as it was.
    public static func commit(_ files: [AtomicFileWriter]) throws(FileIOError) {
        for (k, file) in files.enumerated() {
            do throws(FileIOError) { try file.finish() } catch {
                for other in files[k...] { other.discard() }
                throw error
            }
        }
        var folders = Set<String>()
        for (k, file) in files.enumerated() {
            guard rename(file.temporaryPath, file.destination) == 0 else {
                let reason = FileIOError.systemReason
                for other in files[k...] { unlink(other.temporaryPath) }
                throw .cannotWrite(path: file.destination, reason: reason)
            }
            file.renamed = true
            folders.insert(FilePath.directory(of: file.destination))
        }
        for folder in folders { syncFolder(folder) }
    }

    /// Removes the temporary file unless it was committed.
    public func discard() {
        if fd >= 0 {
            close(fd)
            fd = -1
            unlink(temporaryPath)
        } else if !renamed {
            unlink(temporaryPath)
        }
    }

    /// Flushes, syncs and closes the temporary file, which waits for its rename.
    private func finish() throws(FileIOError) {
        flush()
        if failure == nil, fsync(fd) != 0 { failure = FileIOError.systemReason }
        let closed = close(fd) == 0
        if failure == nil, !closed { failure = FileIOError.systemReason }
        fd = -1
        if let failure {
            unlink(temporaryPath)
            throw .cannotWrite(path: destination, reason: failure)
        }
    }

    private func flush() {
        guard staged > 0 else { return }
        writeAll(UnsafeRawBufferPointer(start: staging.baseAddress, count: staged))
        staged = 0
    }

    /// Copies `bytes`, which lie in `file`'s mapping, from the file itself. Falls back to
    /// writing from the mapping where the kernel cannot copy between these two files.
    private func copy(_ bytes: UnsafeRawBufferPointer, from file: MappedFile) {
        guard var position = file.offset(of: bytes) else { writeAll(bytes); return }
        let end = position + bytes.count
        while position < end && failure == nil {
            // sendfile moves at most about 2 GiB per call.
            let n = sendfile(fd, file.descriptor, &position, min(end - position, 1 << 30))
            if n > 0 {
                inFile += n
                startWriteback()
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && ![EINVAL, ENOSYS, EOPNOTSUPP, EXDEV, EBADF].contains(errno) {
                failure = FileIOError.systemReason
                return
            }
            break // unsupported here (or the file shrank): write the rest from the mapping
        }
        guard position < end, failure == nil, let base = file.bytes.baseAddress else { return }
        writeAll(UnsafeRawBufferPointer(start: base + position, count: end - position))
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil, var start = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, start, left)
            if n < 0 {
                if errno == EINTR { continue }
                failure = FileIOError.systemReason
                return
            }
            start += n
            left -= n
            inFile += n
        }
        startWriteback()
    }

    /// Starts the disk writes of every full chunk written since the last start, without
    /// waiting for them: they then run while the fold computes and writes the rest, and the
    /// fsync in `finish()` waits for the last chunk only. Measured on a 97 MiB ResNet-50
    /// fold: the fsync took 36-54 ms after the last write, and about 2 ms with this.
    private func startWriteback() {
        guard inFile - writebackStarted >= Self.writebackChunk else { return }
        _ = doconv_start_writeback(fd, Int64(writebackStarted), Int64(inFile - writebackStarted))
        writebackStarted = inFile
    }

    /// Makes a rename durable: the folder's entry reaches the disk with it.
    static func syncFolder(_ folder: String) {
        let descriptor = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if descriptor >= 0 {
            fsync(descriptor)
            close(descriptor)
        }
    }
}

extension AtomicFileWriter {
    /// Puts a finished temporary file (written by a library that writes its own files, such
    /// as libhdf5) in place of `destination` as `commit()` does: the destination's mode
    /// kept, the file synced, renamed, and its folder synced. The temporary file is removed
    /// on failure.
    public static func replace(_ destination: String, with temporary: String) throws(FileIOError) {
        func fail(_ reason: String) -> FileIOError {
            unlink(temporary)
            return .cannotWrite(path: destination, reason: reason)
        }
        var existing = stat()
        if stat(destination, &existing) == 0 { chmod(temporary, existing.st_mode & 0o7777) }
        let fd = open(temporary, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail(FileIOError.systemReason) }
        let synced = fsync(fd) == 0
        let syncError = FileIOError.systemReason
        close(fd)
        guard synced else { throw fail(syncError) }
        guard rename(temporary, destination) == 0 else { throw fail(FileIOError.systemReason) }
        syncFolder(FilePath.directory(of: destination))
    }
}
