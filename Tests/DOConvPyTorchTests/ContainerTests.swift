import DOConvFileIO
@testable import DOConvPyTorch
@testable import DOConvZip
import XCTest

/// The zip writer against the zip reader: 64-byte aligned stored entries, CRCs, ZIP64.
final class ContainerTests: XCTestCase {
    func write(entries: [(String, [UInt8])]) throws -> String {
        let path = NSTemporaryDirectory() + "doconv-zip-test-\(UUID().uuidString).zip"
        let file = try AtomicFileWriter(destination: path)
        var zip = ZipWriter(file: file)
        for (name, data) in entries { data.withUnsafeBytes { zip.add(name: name, data: $0) } }
        zip.finish()
        try file.commit()
        return path
    }

    /// Where torch's reader expects an entry's data for a header at `cursor` (from
    /// torch._C.PyTorchFileReader.get_record_offset_no_read("data/0", ...) on an archive
    /// named "probe", torch 2.15): our local header must put it there.
    func testLocalHeadersPutDataWhereTorchComputesIt() {
        let name = "probe/data/0".utf8.count
        let torch: [(cursor: Int, size: Int, data: Int)] = [
            (0, 10, 64), (0, 1 << 32, 128), (100, 10, 192), (100, 1 << 32, 192),
            ((1 << 32) - 10, 10, (1 << 32) + 64), ((1 << 32) - 10, 1 << 32, (1 << 32) + 64),
            ((1 << 32) + 5, 10, (1 << 32) + 64), ((1 << 32) + 5, 1 << 32, (1 << 32) + 128),
        ]
        for (cursor, size, data) in torch {
            let extra = ZipWriter.localExtra(offset: cursor, nameLength: name, size: size)
            XCTAssertEqual(cursor + 30 + name + extra.count, data, "header at \(cursor), \(size) bytes")
        }
    }

    func testStoredEntriesAreAlignedAndReadBack() throws {
        do {
            let entries = [("archive/data.pkl", Array("pickle".utf8)), ("archive/data/0", [UInt8](repeating: 7, count: 1000)), ("archive/version", Array("3\n".utf8))]
            let path = try write(entries: entries)
            defer { unlink(path) }
            let mapped = try MappedFile(path: path)
            let archive = try ZipArchive(bytes: mapped.bytes)
            XCTAssertEqual(archive.entries.map(\.name), entries.map(\.0))
            for (entry, expected) in zip(archive.entries, entries) {
                XCTAssertEqual(Array(entry.data), expected.1)
                XCTAssertEqual((entry.data.baseAddress! - mapped.bytes.baseAddress!) % 64, 0, "\(entry.name) is not 64-byte aligned")
                XCTAssertEqual(entry.crc32, ZipWriter.crc32(UnsafeRawBufferPointer(entry.data)))
            }
        }
    }

    func testCRC32MatchesTheStandardCheckValue() {
        // The CRC-32 of "123456789" is 0xCBF43926 (the standard check value).
        Array("123456789".utf8).withUnsafeBytes { XCTAssertEqual(ZipWriter.crc32($0), 0xCBF4_3926) }
    }

    func testTruncatedZipIsACorruptFileError() throws {
        let path = try write(entries: [("archive/data.pkl", [0x80, 0x02, 0x7D, 0x2E])])
        defer { unlink(path) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try Data(bytes.prefix(bytes.count - 10)).withUnsafeBytes { buffer in
            XCTAssertThrowsError(try ZipArchive(bytes: buffer)) { error in
                XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
            }
        }
    }
}

/// torch.save(..., _use_new_zipfile_serialization=False, pickle_protocol=N) starts with
/// PROTO N (and a FRAME from protocol 4 on) before the magic number.
final class LegacyHeaderTests: XCTestCase {
    func testLegacyMagicAtEveryProtocol() {
        let magic = Checkpoint.legacyMagicNumber
        XCTAssertTrue(Checkpoint.looksLikeLegacy(head: [0x80, 0x02] + magic + [0x2E]))
        XCTAssertTrue(Checkpoint.looksLikeLegacy(head: [0x80, 0x03] + magic + [0x2E]))
        for version: UInt8 in [4, 5] {
            XCTAssertTrue(Checkpoint.looksLikeLegacy(head: [0x80, version, 0x95, 13, 0, 0, 0, 0, 0, 0, 0] + magic + [0x2E]))
        }
        XCTAssertFalse(Checkpoint.looksLikeLegacy(head: [0x80, 0x06] + magic))
        XCTAssertFalse(Checkpoint.looksLikeLegacy(head: [0x80, 0x02, 0x8A, 0x0A] + [UInt8](repeating: 0, count: 10)))
        XCTAssertFalse(Checkpoint.looksLikeLegacy(head: [0x80]))
    }
}
