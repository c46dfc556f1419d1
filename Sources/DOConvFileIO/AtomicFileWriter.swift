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
    private var fd: Int32
    private var buffer: [UInt8] = []
    /// Bytes written so far (buffered included): the offset of the next byte.
    public private(set) var offset = 0
    private var failure: String?
    private static let bufferLimit = 1 << 20

    public init(destination: String) throws(FileIOError) {
        self.destination = destination
        let slash = destination.lastIndex(of: "/")
        let directory = slash.map { String(destination[..<$0]) } ?? "."
        let name = slash.map { String(destination[destination.index(after: $0)...]) } ?? destination
        var template = Array(((directory.isEmpty ? "/" : directory) + "/." + name + ".tmp-XXXXXX").utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw FileIOError(path: destination, reason: String(cString: strerror(errno))) }
        let mask = umask(0o022)
        umask(mask)
        fchmod(descriptor, 0o644 & ~mask)
        fd = descriptor
        temporaryPath = String(cString: template)
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
        flush()
        if let failure {
            discard()
            throw FileIOError(path: destination, reason: failure)
        }
        close(fd)
        fd = -1
        guard rename(temporaryPath, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw FileIOError(path: destination, reason: reason)
        }
    }

    /// Removes the temporary file unless it was committed.
    public func discard() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
        unlink(temporaryPath)
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
