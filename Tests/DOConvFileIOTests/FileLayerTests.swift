import CFileSupport
import DOConvFileIO
import Glibc
import XCTest

/// The file layer's pieces that replaced Foundation's (paths, file heads, sizes) and the
/// writer's early disk writes.
final class FileLayerTests: XCTestCase {
    private func temporaryFile(_ bytes: [UInt8]) throws -> String {
        var template = Array("/tmp/doconv-fileio-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        XCTAssertGreaterThanOrEqual(fd, 0)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        addTeardownBlock { unlink(path) }
        return path
    }

    func testPathPartsIgnoreTrailingSlashesAsNSStringDid() {
        XCTAssertEqual(FilePath.baseName(of: "a/b/model.onnx"), "model.onnx")
        XCTAssertEqual(FilePath.baseName(of: "shards/hf_model/"), "hf_model")
        XCTAssertEqual(FilePath.baseName(of: "model.onnx"), "model.onnx")
        XCTAssertEqual(FilePath.baseName(of: "/"), "/")
        XCTAssertEqual(FilePath.directory(of: "a/b/model.onnx"), "a/b")
        XCTAssertEqual(FilePath.directory(of: "a/b/"), "a")
        XCTAssertEqual(FilePath.directory(of: "model.onnx"), ".")
        XCTAssertEqual(FilePath.directory(of: "/model.onnx"), "/")
        XCTAssertEqual(FilePath.join("out/", "x.h5"), "out/x.h5")
        XCTAssertEqual(FilePath.join("out", "x.h5"), "out/x.h5")
    }

    func testBytesAndSizeOfAFile() throws {
        let path = try temporaryFile(Array(0..<100))
        XCTAssertEqual(FilePath.size(of: path), 100)
        XCTAssertEqual(FilePath.bytes(of: path, at: 0, count: 4), [0, 1, 2, 3])
        XCTAssertEqual(FilePath.bytes(of: path, at: 98, count: 8), [98, 99], "fewer at the end")
        XCTAssertEqual(FilePath.bytes(of: path, at: 200, count: 8), [])
        XCTAssertNil(FilePath.bytes(of: path + ".missing", at: 0, count: 8))
        XCTAssertNil(FilePath.size(of: path + ".missing"))
    }

    /// The shim must reach sync_file_range on Linux (with _GNU_SOURCE it is declared); if
    /// it fell back to its stub, the writer's early disk writes would silently never start.
    func testWritebackStartsOnARegularFile() throws {
        let path = try temporaryFile([UInt8](repeating: 7, count: 1 << 16))
        let fd = open(path, O_WRONLY)
        defer { close(fd) }
        XCTAssertEqual(doconv_start_writeback(fd, 0, 1 << 16), 0, String(cString: strerror(errno)))
    }

    func testAWriterLargerThanItsWritebackChunkWritesEveryByte() throws {
        let destination = try temporaryFile([])
        let writer = try AtomicFileWriter(destination: destination)
        var expected: [UInt8] = []
        for k in 0..<40 { // 40 x 1 MiB + 3 bytes: several chunks, a staged tail
            let block = [UInt8](repeating: UInt8(k), count: 1 << 20)
            writer.write(block)
            expected += block
        }
        writer.write([1, 2, 3])
        expected += [1, 2, 3]
        try writer.commit()
        XCTAssertEqual(FilePath.size(of: destination), expected.count)
        XCTAssertEqual(FilePath.bytes(of: destination, at: 0, count: expected.count), expected)
    }

    /// A large output being replaced has its cached pages dropped on another thread while the
    /// new one is written; the old file stays whole until the rename, and an input that is also
    /// the destination (by another name: a hard link) is spared.
    func testReplacingALargeFileKeepsItWholeUntilTheRename() throws {
        let old = [UInt8](repeating: 9, count: 9 << 20) // above the size worth a thread
        let destination = try temporaryFile(old)
        let link = destination + ".link"
        XCTAssertEqual(Glibc.link(destination, link), 0)
        addTeardownBlock { unlink(link) }
        let input = try MappedFile(path: link)
        var info = stat()
        XCTAssertEqual(stat(destination, &info), 0)
        XCTAssertTrue(input.isFile(device: info.st_dev, inode: info.st_ino), "a hard link is the same file")
        let writer = try AtomicFileWriter(destination: destination, sources: [input])
        writer.write([UInt8](repeating: 1, count: 3 << 20))
        usleep(50_000)
        XCTAssertEqual(FilePath.bytes(of: destination, at: 0, count: old.count), old, "the old file before the commit")
        try writer.commit()
        XCTAssertEqual(FilePath.bytes(of: destination, at: 0, count: 4 << 20), [UInt8](repeating: 1, count: 3 << 20))
        XCTAssertEqual(Array(input.bytes.prefix(16)), [UInt8](repeating: 9, count: 16), "the mapping still reads the old file")

        let other = try AtomicFileWriter(destination: destination) // no sources: its pages are dropped
        other.write([2])
        other.discard()
        XCTAssertEqual(FilePath.bytes(of: destination, at: 0, count: 4), [1, 1, 1, 1], "a discarded writer leaves the file")
    }
}
