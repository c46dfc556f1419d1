#if canImport(Glibc)
import Glibc
#endif

/// A file written next to its destination and renamed over it only on `commit()`.
final class TemporaryFile {
    let destination: String
    let temporaryPath: String
    let sink: FileSink
    private var done = false

    /// `sources`: mapped files whose bytes the sink may copy in the kernel (see `FileSink`).
    init(destination: String, sources: [FileMapping] = []) throws(ONNXError) {
        self.destination = destination
        let directory = FilePath.directory(of: destination)
        var template = Array(FilePath.join(directory, "." + FilePath.baseName(of: destination) + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw .cannotWrite(path: destination, reason: String(cString: strerror(errno))) }
        // An existing destination keeps its mode; a new file gets 0644 less the umask.
        var existing = stat()
        fchmod(fd, stat(destination, &existing) == 0 ? existing.st_mode & 0o7777 : 0o644 & ~TemporaryFile.umaskValue)
        temporaryPath = String(cString: template)
        sink = FileSink(fd: fd, path: destination, sources: sources)
    }

    private static let umaskValue: mode_t = {
        let current = umask(0o022)
        umask(current)
        return current
    }()

    /// Flushes, syncs, closes and renames the file into place, then syncs its folder.
    func commit() throws(ONNXError) {
        try sink.finish()
        guard rename(temporaryPath, destination) == 0 else {
            throw .cannotWrite(path: destination, reason: String(cString: strerror(errno)))
        }
        done = true
        let folder = open(FilePath.directory(of: destination), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folder >= 0 {
            fsync(folder)
            Glibc.close(folder)
        }
    }

    /// Removes the temporary file unless it was committed.
    func discard() {
        guard !done else { return }
        done = true
        sink.close()
        unlink(temporaryPath)
    }
}
