@testable import DOConvTensorFlow
import XCTest

/// The table layer on its own: tables of many blocks (the fixtures' indexes have one data
/// block), LevelDB's shortened index keys, empty tables.
final class TableTests: XCTestCase {
    func entries(_ count: Int) -> [TensorBundleTable.Entry] {
        var keys = Set<[UInt8]>()
        var generator = SeededRandom(seed: UInt64(count))
        while keys.count < count {
            // Shared prefixes, 0x00 and 0xFF bytes: what separators and successors must handle.
            let stem: [UInt8] = [[], Array("layer_with_weights-".utf8), [0xFF, 0xFF], [0x00]][Int.random(in: 0..<4, using: &generator)]
            keys.insert(stem + (0..<Int.random(in: 0...6, using: &generator)).map { _ in [0x00, 0x41, 0x42, 0xFE, 0xFF][Int.random(in: 0..<5, using: &generator)] })
        }
        return keys.sorted { $0.lexicographicallyPrecedes($1) }.enumerated().map { k, key in
            TensorBundleTable.Entry(key: key, value: [UInt8](repeating: UInt8(k & 0xFF), count: k % 37))
        }
    }

    func testManyBlocksReadBack() throws {
        for (count, blockSize) in [(0, 64), (1, 64), (500, 64), (500, 1), (2000, 4096), (300, TableWriter.defaultBlockSize)] {
            let written = entries(count)
            let table = TableWriter.encode(written, blockSize: blockSize)
            let read = try table.withUnsafeBytes { try TensorBundleTable(bytes: $0, path: "t") }
            XCTAssertEqual(read.entries, written, "\(count) entries, blocks of \(blockSize)")
            for entry in written.prefix(50) { XCTAssertEqual(read.value(forKey: entry.key), entry.value) }
            XCTAssertNil(read.value(forKey: [0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42]))
        }
    }

    func testSeparatorsAndSuccessors() {
        XCTAssertEqual(TableWriter.shortestSeparator(Array("abcd".utf8), Array("abzz".utf8)), Array("abd".utf8))
        XCTAssertEqual(TableWriter.shortestSeparator(Array("abc".utf8), Array("abcd".utf8)), Array("abc".utf8))
        XCTAssertEqual(TableWriter.shortestSeparator(Array("abc".utf8), Array("abd".utf8)), Array("abc".utf8))
        XCTAssertEqual(TableWriter.shortestSeparator([0x61, 0xFF, 0x01], [0x62]), [0x61, 0xFF, 0x01])
        XCTAssertEqual(TableWriter.shortSuccessor([0xFF, 0xFF, 0x10, 0x20]), [0xFF, 0xFF, 0x11])
        XCTAssertEqual(TableWriter.shortSuccessor([0xFF, 0xFF]), [0xFF, 0xFF])
        XCTAssertEqual(TableWriter.shortSuccessor([]), [])
    }

    /// A data block listed twice in the index (or blocks out of file order) is refused before
    /// it is parsed again: each byte of a table is parsed once.
    func testBlocksOutOfFileOrder() throws {
        var file: [UInt8] = []
        var block = TableBlockBuilder()
        block.add(key: [0x61], value: [1])
        let handle = TableWriter.appendBlock(block.finish(), to: &file)
        var index = TableBlockBuilder(restartInterval: 1)
        index.add(key: [0x61], value: handle.encoded)
        index.add(key: [0x62], value: handle.encoded)
        let metaindex = TableWriter.appendBlock(TableBlockBuilder().finish(), to: &file)
        let indexHandle = TableWriter.appendBlock(index.finish(), to: &file)
        file += TableFooter(metaindex: metaindex, index: indexHandle).encode()
        XCTAssertThrowsError(try file.withUnsafeBytes { try TensorBundleTable(bytes: $0, path: "t") }) { error in
            XCTAssertTrue("\(error)".contains("overlaps the block before it"), "\(error)")
        }
    }
}
