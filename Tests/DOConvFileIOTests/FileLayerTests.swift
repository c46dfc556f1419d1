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
}
