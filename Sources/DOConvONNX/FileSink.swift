#if canImport(Glibc)
import Glibc
#endif
import CProtobufC

/// A buffered file writer that protobuf-c packs into directly (as a `ProtobufCBuffer`),
/// so a model is never assembled in memory before it is written.
///
/// Large appends whose bytes lie in one of the `sources` (mapped input files: tensors that
/// pass through unchanged) are copied file to file by the kernel (`sendfile`), so those
/// bytes are never touched by this process: a model's untouched tensors cost what `cp` costs.
final class FileSink {
    /// The `ProtobufCBuffer` protobuf-c appends to, followed in the same allocation by a
    /// pointer back to this sink (C layout, so the callback can find its owner).
    let buffer: UnsafeMutablePointer<ProtobufCBuffer>
    private static let ownerOffset = MemoryLayout<ProtobufCBuffer>.stride
    private let fd: Int32
    private let path: String
    private var staging: UnsafeMutableRawBufferPointer
    private var staged = 0
    private(set) var bytesWritten = 0
    private var failure: Int32 = 0
    private var closed = false
    private let sources: [FileMapping]
    private static let stagingSize = 1 << 20
    /// Below this a kernel copy costs more (a system call) than copying through the staging buffer.
    static let kernelCopySize = 64 << 10

    init(fd: Int32, path: String, sources: [FileMapping] = []) {
        self.fd = fd
        self.path = path
        self.sources = sources
        staging = UnsafeMutableRawBufferPointer.allocate(byteCount: FileSink.stagingSize, alignment: 64)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: FileSink.ownerOffset + MemoryLayout<UnsafeRawPointer>.stride, alignment: 16)
        buffer = raw.bindMemory(to: ProtobufCBuffer.self, capacity: 1)
        buffer.initialize(to: ProtobufCBuffer(append: { base, count, data in
            guard let base, let data else { return }
            let owner = UnsafeRawPointer(base).load(fromByteOffset: FileSink.ownerOffset, as: UnsafeRawPointer.self)
            Unmanaged<FileSink>.fromOpaque(owner).takeUnretainedValue().append(UnsafeRawBufferPointer(start: data, count: count))
        }))
        raw.storeBytes(of: UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()), toByteOffset: FileSink.ownerOffset, as: UnsafeRawPointer.self)
    }

    deinit {
        close()
        staging.deallocate()
        UnsafeMutableRawPointer(buffer).deallocate()
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard failure == 0, bytes.count > 0, let source = bytes.baseAddress else { return }
        bytesWritten += bytes.count
        if staged + bytes.count <= staging.count {
            (staging.baseAddress! + staged).copyMemory(from: source, byteCount: bytes.count)
            staged += bytes.count
            return
        }
        flush()
        if bytes.count >= FileSink.kernelCopySize, let file = sources.first(where: { $0.offset(of: bytes) != nil }) {
            copy(bytes, from: file)
        } else if bytes.count >= staging.count / 2 {
            writeAll(bytes)
        } else {
            staging.baseAddress!.copyMemory(from: source, byteCount: bytes.count)
            staged = bytes.count
        }
    }

    /// Throws if any write so far failed.
    func check() throws(ONNXError) {
        if failure != 0 { throw .cannotWrite(path: path, reason: String(cString: strerror(failure))) }
    }

    func finish() throws(ONNXError) {
        flush()
        try check()
        guard !closed else { return }
        closed = true
        if fsync(fd) != 0 {
            let reason = String(cString: strerror(errno))
            _ = Glibc.close(fd)
            throw .cannotWrite(path: path, reason: reason)
        }
        if Glibc.close(fd) != 0 { throw .cannotWrite(path: path, reason: String(cString: strerror(errno))) }
    }

    func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(fd)
    }

    private func flush() {
        guard staged > 0 else { return }
        writeAll(UnsafeRawBufferPointer(start: staging.baseAddress, count: staged))
        staged = 0
    }

    /// Copies `bytes`, which lie in `file`'s mapping, from the file itself. Falls back to
    /// writing from the mapping where the kernel cannot copy between these two files.
    private func copy(_ bytes: UnsafeRawBufferPointer, from file: FileMapping) {
        guard var offset = file.offset(of: bytes) else { writeAll(bytes); return }
        let end = offset + bytes.count
        while offset < end && failure == 0 {
            // sendfile moves at most about 2 GiB per call.
            let n = sendfile(fd, file.descriptor, &offset, min(end - offset, 1 << 30))
            if n > 0 { continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && ![EINVAL, ENOSYS, EOPNOTSUPP, EXDEV, EBADF].contains(errno) {
                failure = errno
                return
            }
            break // unsupported here (or the file shrank): write the rest from the mapping
        }
        guard offset < end, failure == 0, let base = file.bytes.baseAddress else { return }
        writeAll(UnsafeRawBufferPointer(start: base + offset, count: end - offset))
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count && failure == 0 {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
            } else {
                offset += n
            }
        }
    }
}
