#if canImport(Glibc)
import Glibc
#endif

/// Writes a file next to its destination and renames it into place only on `commit()`, so
/// a failed run never leaves a partial output, and the destination may be the input (whose
/// mapping keeps reading the old file). Small writes are buffered; large ones go straight
/// to the file.
public final class AtomicFileWriter {
    public let destination: String
    private let temporaryPath: String
    /// The destination's folder, synced after the rename.
    private let folder: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    /// Bytes written so far (buffered included): the offset of the next byte.
    public private(set) var offset = 0
    private var failure: String?
    /// Set once the temporary file has become the destination.
    private var renamed = false
    private static let bufferLimit = 1 << 20

    public init(destination: String) throws(FileIOError) {
        self.destination = destination
        let created = try TemporaryFiles.create(beside: destination)
        fd = created.descriptor
        temporaryPath = created.path
        folder = TemporaryFiles.split(destination).folder
    }

    deinit { discard() }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        offset += bytes.count
        if bytes.count >= Self.bufferLimit {
            flush()
            writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
            if buffer.count >= Self.bufferLimit { flush() }
        }
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
                let reason = String(cString: strerror(errno))
                for other in files[k...] { unlink(other.temporaryPath) }
                throw FileIOError(path: file.destination, reason: reason)
            }
            file.renamed = true
            folders.insert(file.folder)
        }
        // The renames themselves reach the disk with their folders.
        for folder in folders {
            let descriptor = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if descriptor >= 0 {
                fsync(descriptor)
                close(descriptor)
            }
        }
    }

    /// Flushes, syncs and closes the temporary file, which waits for its rename.
    private func finish() throws(FileIOError) {
        flush()
        if failure == nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            discard()
            throw FileIOError(path: destination, reason: failure)
        }
        close(fd)
        fd = -1
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

    private func flush() {
        guard !buffer.isEmpty else { return }
        buffer.withUnsafeBytes { writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil, var start = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, start, left)
            if n < 0 {
                if errno == EINTR { continue }
                failure = String(cString: strerror(errno))
                return
            }
            start += n
            left -= n
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
            return FileIOError(path: destination, reason: reason)
        }
        var existing = stat()
        if stat(destination, &existing) == 0 { chmod(temporary, existing.st_mode & 0o7777) }
        let fd = open(temporary, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail(String(cString: strerror(errno))) }
        let synced = fsync(fd) == 0
        let syncError = String(cString: strerror(errno))
        close(fd)
        guard synced else { throw fail(syncError) }
        guard rename(temporary, destination) == 0 else { throw fail(String(cString: strerror(errno))) }
        let slash = destination.lastIndex(of: "/")
        let folder = slash.map { String(destination[..<$0]) } ?? "."
        let descriptor = open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if descriptor >= 0 {
            fsync(descriptor)
            close(descriptor)
        }
    }
}
