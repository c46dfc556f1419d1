#if canImport(Glibc)
import Glibc
#endif
import DOConvFileIO

/// A file written next to its destination and renamed over it only on `commit()`.
final class TemporaryFile {
    let destination: String
    let temporaryPath: String
    let sink: FileSink
    private var done = false

    /// `sources`: mapped files whose bytes the sink may copy in the kernel (see `FileSink`).
    /// The file is made and named by DOConvFileIO's `TemporaryFiles` (an existing
    /// destination's mode kept).
    init(destination: String, sources: [FileMapping] = []) throws(ONNXError) {
        self.destination = destination
        let created: (descriptor: Int32, path: String)
        do { created = try TemporaryFiles.create(beside: destination) } catch { throw .cannotWrite(path: destination, reason: error.reason) }
        temporaryPath = created.path
        sink = FileSink(fd: created.descriptor, path: destination, sources: sources)
    }

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
