import DOConvTestSupport
@testable import DOConvTensorFlow
import Foundation
import XCTest

/// Damaged and hostile checkpoints, made by editing a real one (net_a_weights): each must end
/// in the typed error of its kind, one line naming the file, never a trap.
final class HostileTests: XCTestCase {
    /// A copy of net_a_weights in a fresh folder; returns its prefix.
    func copyOfCheckpoint() throws -> String {
        let folder = try PackageTestSupport.temporaryDirectory(self)
        let source = FixtureTests.folder.appendingPathComponent("net_a_weights")
        for name in ["ckpt.index", "ckpt.data-00000-of-00001"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: folder.appendingPathComponent(name))
        }
        return folder.appendingPathComponent("ckpt").path
    }

    func read(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
    func write(_ bytes: [UInt8], _ path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    /// Edits the index's bytes.
    func patchIndex(_ prefix: String, _ edit: (inout [UInt8]) throws -> Void) throws {
        var bytes = try read(prefix + ".index")
        try edit(&bytes)
        try write(bytes, prefix + ".index")
    }

    /// Edits the first data block's contents (same length) and recomputes its checksum, so
    /// that only the edit is wrong.
    func patchFirstBlock(_ prefix: String, _ edit: (inout [UInt8]) -> Void, type: UInt8 = TableFormat.noCompression) throws {
        try patchIndex(prefix) { bytes in
            let handle = try firstBlock(bytes)
            let start = Int(handle.offset)
            let end = start + Int(handle.size)
            var contents = Array(bytes[start..<end])
            edit(&contents)
            precondition(contents.count == end - start)
            bytes.replaceSubrange(start..<end, with: contents)
            bytes[end] = type
            let crc = CRC32C.mask(CRC32C.checksum(Array(bytes[start...end])))
            withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange((end + 1)..<(end + 5), with: $0) }
        }
    }

    func firstBlock(_ bytes: [UInt8]) throws -> BlockHandle {
        try bytes.withUnsafeBytes { file in
            let footer = try TableFooter(file: file, path: "")
            let contents = try footer.index.contents(in: file, limit: file.count - TableFormat.footerLength, what: "index", path: "")
            var budget = Int.max
            let index = try TableBlock(contents, what: "index", path: "", keyBudget: &budget)
            var cursor = ByteCursor(try XCTUnwrap(index.entries.first).value, context: "") { .corruptIndex(path: "", reason: $0) }
            return try BlockHandle.decode(&cursor, "handle")
        }
    }

    /// Rewrites the index from edited entries (the table written anew, so only the edit is
    /// wrong).
    func rewriteEntries(_ prefix: String, _ edit: (inout [TensorBundleTable.Entry]) throws -> Void) throws {
        var entries = try TensorBundleTable(path: prefix + ".index").entries
        try edit(&entries)
        try write(TableWriter.encode(entries), prefix + ".index")
    }

    /// Rewrites one bundle entry's proto.
    func rewriteEntry(_ prefix: String, _ key: String, _ edit: (inout BundleEntry) -> Void) throws {
        try rewriteEntries(prefix) { entries in
            let k = try XCTUnwrap(entries.firstIndex { $0.keyString == key })
            var entry = try BundleEntry(key: entries[k].key, serialized: entries[k].value, path: "")
            edit(&entry)
            entries[k].value = entry.encode()
        }
    }

    /// `body` must throw a TensorFlowError of `kind` whose one line names `path` and says
    /// `text`.
    func expect(_ kind: String, _ text: String, path: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("no error (expected \(kind): \(text))", file: file, line: line)
        } catch let error as TensorFlowError {
            let message = "\(error)"
            XCTAssertEqual(error.kind, kind, message, file: file, line: line)
            XCTAssertTrue(message.hasPrefix(path + ": "), message, file: file, line: line)
            XCTAssertTrue(message.contains(text), "'\(message)' does not say '\(text)'", file: file, line: line)
            XCTAssertFalse(message.contains("\n"), message, file: file, line: line)
        } catch {
            XCTFail("not a TensorFlowError: \(error)", file: file, line: line)
        }
    }

    let kernelKey = "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"

    // MARK: the table

    func testBadMagic() throws {
        let prefix = try copyOfCheckpoint()
        try patchIndex(prefix) { $0[$0.count - 1] ^= 0x01 }
        expect("corruptIndex", "footer magic", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testFileShorterThanAFooter() throws {
        let prefix = try copyOfCheckpoint()
        try patchIndex(prefix) { $0 = Array($0.suffix(40)) }
        expect("corruptIndex", "shorter than a table's 48-byte footer", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testIndexHandlePastTheFile() throws {
        for (offset, size) in [(UInt64(1) << 40, UInt64(10)), (0, UInt64.max), (UInt64.max, UInt64.max), (100, 1 << 20)] {
            let prefix = try copyOfCheckpoint()
            try patchIndex(prefix) { bytes in
                let footer = try bytes.withUnsafeBytes { try TableFooter(file: $0, path: "") }
                let edited = TableFooter(metaindex: footer.metaindex, index: BlockHandle(offset: offset, size: size))
                bytes.replaceSubrange((bytes.count - 48)..., with: edited.encode())
            }
            expect("corruptIndex", "the index block", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
        }
    }

    func testMetaindexHandlePastTheFile() throws {
        let prefix = try copyOfCheckpoint()
        try patchIndex(prefix) { bytes in
            let footer = try bytes.withUnsafeBytes { try TableFooter(file: $0, path: "") }
            let edited = TableFooter(metaindex: BlockHandle(offset: UInt64(bytes.count), size: 8), index: footer.index)
            bytes.replaceSubrange((bytes.count - 48)..., with: edited.encode())
        }
        expect("corruptIndex", "metaindex handle", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testHandleVarintLongerThanTenBytes() throws {
        let prefix = try copyOfCheckpoint()
        try patchIndex(prefix) { bytes in
            bytes.replaceSubrange((bytes.count - 48)..<(bytes.count - 8), with: [UInt8](repeating: 0xFF, count: 40))
        }
        expect("corruptIndex", "does not fit 64 bits", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testBlockChecksumMismatch() throws {
        let prefix = try copyOfCheckpoint()
        try patchIndex(prefix) { bytes in
            let handle = try firstBlock(bytes)
            bytes[Int(handle.offset) + 20] ^= 0x40
        }
        expect("corruptIndex", "fails its checksum", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testRestartCountPastTheBlock() throws {
        for count: UInt32 in [0, 0xFFFF_FFFF, 1 << 20] {
            let prefix = try copyOfCheckpoint()
            try patchFirstBlock(prefix) { contents in
                withUnsafeBytes(of: count.littleEndian) { contents.replaceSubrange((contents.count - 4)..., with: $0) }
            }
            expect("corruptIndex", "restart points claimed", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
        }
    }

    func testRestartPointInsideAnEntry() throws {
        let prefix = try copyOfCheckpoint()
        try patchFirstBlock(prefix) { contents in
            // The second restart point (the first is entry 0 at byte 0) moved one byte on.
            let count = Int(contents[contents.count - 4])
            let second = contents.count - 4 - 4 * count + 4
            contents[second] &+= 1
        }
        expect("corruptIndex", "restart point", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testEntryLengthPastTheBlock() throws {
        let prefix = try copyOfCheckpoint()
        // Entry 0 (the header, key "") starts 00 00 <value length>: claim 2^28 - 1 bytes.
        try patchFirstBlock(prefix) { contents in contents.replaceSubrange(2..<6, with: [0xFF, 0xFF, 0xFF, 0x7F]) }
        expect("corruptIndex", "runs past the end", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testSnappyBlockIsRefusedClearly() throws {
        let prefix = try copyOfCheckpoint()
        try patchFirstBlock(prefix, { _ in }, type: TableFormat.snappyCompression)
        expect("unsupported", "snappy-compressed", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testUnknownBlockType() throws {
        let prefix = try copyOfCheckpoint()
        try patchFirstBlock(prefix, { _ in }, type: 7)
        expect("corruptIndex", "unknown compression type 7", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testKeysOutOfOrderAndOverlongKeys() {
        // Raw blocks: entries (shared, added, value length, key, value), restarts [0], count 1.
        func block(_ entries: [[UInt8]]) -> [UInt8] { entries.flatMap { $0 } + [0, 0, 0, 0, 1, 0, 0, 0] }
        let cases: [([UInt8], String)] = [
            (block([[0, 1, 0, 0x62], [0, 1, 0, 0x61]]), "keys out of order"),
            (block([[0, 1, 0, 0x61], [0, 1, 0, 0x61]]), "keys out of order"),
            (block([[0, 1, 0, 0x61], [5, 1, 0, 0x61]]), "shares 5 key bytes"),
            (block([[0, 0xFF, 0xFF, 0x07, 0]]), "a key of"),
            (block([[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0]]), "does not fit 32 bits"),
        ]
        for (bytes, text) in cases {
            var budget = Int.max
            expect("corruptIndex", text, path: "t") {
                _ = try bytes.withUnsafeBytes { try TableBlock($0, what: "b", path: "t", keyBudget: &budget) }
            }
        }
    }

    func testSharedPrefixesCannotExpandPastTheBudget() {
        // 4-byte entries that each share the whole previous key and add one byte: keys grow
        // by one byte per entry, their total quadratically.
        var entries: [UInt8] = [0, 1, 0, 0x61]
        for k in 1..<4000 { entries += [0x80 | UInt8(k & 0x7F), UInt8(k >> 7), 1, 0, 0x61] }
        let bytes = entries + [0, 0, 0, 0, 1, 0, 0, 0]
        var budget = 1 << 20
        expect("corruptIndex", "expand past", path: "t") {
            _ = try bytes.withUnsafeBytes { try TableBlock($0, what: "b", path: "t", keyBudget: &budget) }
        }
    }

    // MARK: the bundle

    func testHeaderThatIsNotAProto() throws {
        let prefix = try copyOfCheckpoint()
        try rewriteEntries(prefix) { $0[0].value = [0xFF, 0xFF] }
        expect("corruptIndex", "not a BundleHeaderProto", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testHeaderClaims() throws {
        let cases: [(BundleHeader, String, String)] = [
            (BundleHeader(numShards: 0), "corruptIndex", "claims 0 data shards"),
            (BundleHeader(numShards: 1 << 30), "corruptIndex", "claims 1073741824 data shards"),
            (BundleHeader(numShards: 1, endianness: .big), "unsupported", "big-endian"),
            (BundleHeader(numShards: 1, minConsumer: 5), "unsupported", "bundle format version"),
            (BundleHeader(numShards: 1, badConsumers: [1]), "unsupported", "as bad"),
        ]
        for (header, kind, text) in cases {
            let prefix = try copyOfCheckpoint()
            try rewriteEntries(prefix) { $0[0].value = header.encode() }
            expect(kind, text, path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
        }
    }

    func testMissingHeader() throws {
        let prefix = try copyOfCheckpoint()
        try rewriteEntries(prefix) { $0.removeFirst() }
        expect("corruptIndex", "no header entry", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testShardIDWithNoFile() throws {
        let prefix = try copyOfCheckpoint()
        try rewriteEntry(prefix, kernelKey) { $0.shardID = 3 }
        expect("corruptIndex", "shard 3, but the bundle has 1", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testHeaderNamingAShardThatIsMissing() throws {
        let prefix = try copyOfCheckpoint()
        try rewriteEntries(prefix) { $0[0].value = BundleHeader(numShards: 2).encode() }
        // Shard 0 found under its two-shard name; shard 1 is not there.
        try FileManager.default.moveItem(atPath: prefix + ".data-00000-of-00001", toPath: prefix + ".data-00000-of-00002")
        expect("cannotOpen", "data shard 1 of 2", path: prefix + ".data-00001-of-00002") { _ = try TensorBundle(prefix: prefix) }
    }

    func testEntrySizeDisagreesWithTypeAndShape() throws {
        let prefix = try copyOfCheckpoint()
        try rewriteEntry(prefix, kernelKey) { $0.size += 4 }
        expect("corruptIndex", "but float32 [9, 3, 8] takes 864", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testShapesThatCannotBe() throws {
        let cases: [([Int], String)] = [
            ([Int.max, 4], "more elements than an Int counts"),
            ([1 << 40, 1 << 40], "more elements than an Int counts"),
            ([1 << 62], "more bytes than an Int counts"),
        ]
        for (shape, text) in cases {
            let prefix = try copyOfCheckpoint()
            try rewriteEntry(prefix, kernelKey) { $0.shape = shape }
            expect("corruptIndex", text, path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
        }
    }

    func testNegativeDimAndUnknownType() throws {
        let prefix = try copyOfCheckpoint()
        try rewriteEntries(prefix) { entries in
            let k = try XCTUnwrap(entries.firstIndex { $0.keyString == kernelKey })
            // dtype 99 in place of float (field 1, varint: the entry's first two bytes).
            entries[k].value = [0x08, 99] + entries[k].value.dropFirst(2)
        }
        expect("unsupported", "element type code 99", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }

        let second = try copyOfCheckpoint()
        try rewriteEntries(second) { entries in
            let k = try XCTUnwrap(entries.firstIndex { $0.keyString == kernelKey })
            // dtype float, shape { dim { size: -1 } }.
            entries[k].value = [0x08, 0x01, 0x12, 0x0D, 0x12, 0x0B, 0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01]
        }
        expect("corruptIndex", "a dim of -1", path: second + ".index") { _ = try TensorBundle(prefix: second) }
    }

    func testStringCountPastItsBytes() throws {
        let prefix = try copyOfCheckpoint()
        // A billion strings in the object graph's few bytes.
        try rewriteEntry(prefix, TensorBundle.objectGraphKey) { $0.shape = [1 << 30] }
        expect("corruptIndex", "cannot hold 1073741824 strings", path: prefix + ".index") { _ = try TensorBundle(prefix: prefix) }
    }

    func testOffsetPastTheShard() throws {
        let prefix = try copyOfCheckpoint()
        try rewriteEntry(prefix, kernelKey) { $0.offset = Int(Int64.max) }
        expect("corruptData", "runs past the end of the shard", path: prefix + ".data-00000-of-00001") { _ = try TensorBundle(prefix: prefix) }
    }

    func testTruncatedShard() throws {
        let prefix = try copyOfCheckpoint()
        let data = prefix + ".data-00000-of-00001"
        try write(Array(try read(data).dropLast(100)), data)
        expect("corruptData", "runs past the end of the shard", path: data) { _ = try TensorBundle(prefix: prefix) }
        try write([], data)
        expect("corruptData", "runs past the end of the shard (0 bytes)", path: data) { _ = try TensorBundle(prefix: prefix) }
    }

    func testTensorBytesFailingTheirChecksum() throws {
        let prefix = try copyOfCheckpoint()
        let entry = try TensorBundle(prefix: prefix).entry(kernelKey)
        let data = prefix + ".data-00000-of-00001"
        var bytes = try read(data)
        bytes[entry.offset + 17] ^= 0x10
        try write(bytes, data)
        // The bundle opens (checksums are checked on read); the tensor does not read.
        let bundle = try TensorBundle(prefix: prefix)
        expect("corruptData", "fails its checksum", path: data) { _ = try bundle.tensorBytes(kernelKey) }
        expect("corruptData", "fails its checksum", path: data) { _ = try bundle.tensor(kernelKey) }
        XCTAssertNoThrow(try bundle.tensorBytes("layer_with_weights-0/D/.ATTRIBUTES/VARIABLE_VALUE"))
    }

    func testMissingKey() throws {
        let bundle = try TensorBundle(prefix: try copyOfCheckpoint())
        expect("missingKey", "no tensor named 'nope'", path: bundle.prefix + ".index") { _ = try bundle.tensorBytes("nope") }
    }

    // MARK: strings and the object graph

    func testObjectGraphStringDamaged() throws {
        let prefix = try copyOfCheckpoint()
        let entry = try TensorBundle(prefix: prefix).entry(TensorBundle.objectGraphKey)
        let data = prefix + ".data-00000-of-00001"
        let original = try read(data)
        // The length varint, the length checksum, a byte of the proto.
        for (position, text) in [(0, "the lengths fail their checksum"), (entry.size - 1, "fails its checksum")] {
            var bytes = original
            bytes[entry.offset + position] ^= 0x01
            try write(bytes, data)
            let bundle = try TensorBundle(prefix: prefix)
            expect("corruptData", text, path: data) { _ = try bundle.objectGraph() }
        }
    }

    func testStringLengthsPastTheTensor() throws {
        let prefix = try copyOfCheckpoint()
        let entry = try TensorBundle(prefix: prefix).entry(TensorBundle.objectGraphKey)
        let data = prefix + ".data-00000-of-00001"
        var bytes = try read(data)
        // Length varint made huge (10 bytes of 0xFF would not fit; 0xFF 0xFF 0xFF 0x7F).
        bytes.replaceSubrange(entry.offset..<(entry.offset + 4), with: [0xFF, 0xFF, 0xFF, 0x7F])
        // and its checksum made to match, so that only the length is wrong
        let crc = CRC32C.mask(withUnsafeBytes(of: UInt32(0x0FFF_FFFF).littleEndian) { CRC32C.checksum($0) })
        withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange((entry.offset + 4)..<(entry.offset + 8), with: $0) }
        try write(bytes, data)
        let bundle = try TensorBundle(prefix: prefix)
        expect("corruptData", "runs past the end", path: data) { _ = try bundle.strings(TensorBundle.objectGraphKey) }
    }

    func testObjectGraphProtos() {
        let cases: [([UInt8], String)] = [
            ([0xFF, 0x01], "not a TrackableObjectGraph"),
            ([], "no root object"),
            // nodes { children { node_id: 5 } }
            ([0x0A, 0x04, 0x0A, 0x02, 0x08, 0x05], "is node 5, of 1"),
            // nodes { children { node_id: -1 } }
            ([0x0A, 0x0D, 0x0A, 0x0B, 0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01], "is node -1, of 1"),
            // nodes { slot_variables { original_variable_node_id: 0, slot_variable_node_id: 9 } }
            ([0x0A, 0x04, 0x1A, 0x02, 0x18, 0x09], "names nodes 0 and 9"),
        ]
        for (bytes, text) in cases {
            expect("corruptObjectGraph", text, path: "g") { _ = try TrackableObjectGraph(serialized: bytes, path: "g") }
        }
    }

    func testObjectGraphNamingAKeyWithNoEntry() throws {
        let prefix = try copyOfCheckpoint()
        try rewriteEntries(prefix) { entries in entries.removeAll { $0.keyString == kernelKey } }
        let bundle = try TensorBundle(prefix: prefix)
        expect("corruptObjectGraph", "which has no entry in the bundle", path: prefix + ".index") { _ = try bundle.variables() }
    }

    // MARK: random damage

    /// Truncated at every length and with random bytes changed, the index must read or fail
    /// with a TensorFlowError; what reads must list its variables or fail the same way.
    func testRandomDamageEndsInTypedErrors() throws {
        let prefix = try copyOfCheckpoint()
        let original = try read(prefix + ".index")
        var generator = SeededRandom(seed: 24)
        var outcomes: [String: Int] = [:]
        func attempt() {
            do {
                let bundle = try TensorBundle(prefix: prefix)
                _ = try bundle.variables()
                for entry in bundle.entries where !entry.isSliced && entry.dtype.byteWidth != nil { _ = try bundle.tensorBytes(of: entry) }
                outcomes["read", default: 0] += 1
            } catch {
                // typed throws: nothing but a TensorFlowError gets here
                outcomes[error.kind, default: 0] += 1
            }
        }
        for length in stride(from: 0, to: original.count, by: 7) {
            try write(Array(original.prefix(length)), prefix + ".index")
            attempt()
        }
        for _ in 0..<1500 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            try write(bytes, prefix + ".index")
            attempt()
        }
        XCTAssertGreaterThan(outcomes["corruptIndex", default: 0], 100, "\(outcomes)")
        // Changes inside the data block with its checksum made to match reach the block,
        // entry and proto parsers.
        let block = try firstBlock(original)
        let start = Int(block.offset)
        let end = start + Int(block.size)
        outcomes = [:]
        for _ in 0..<1500 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                bytes[Int.random(in: start..<end, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            let crc = CRC32C.mask(CRC32C.checksum(Array(bytes[start...end])))
            withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange((end + 1)..<(end + 5), with: $0) }
            try write(bytes, prefix + ".index")
            attempt()
        }
        XCTAssertGreaterThan(outcomes.count, 2, "\(outcomes)")
    }

    /// The same for the object graph proto itself (no checksum guards it here).
    func testRandomObjectGraphsEndInTypedErrors() throws {
        let bundle = try TensorBundle(prefix: try copyOfCheckpoint())
        let original = try XCTUnwrap(try bundle.strings(TensorBundle.objectGraphKey).first)
        var generator = SeededRandom(seed: 7)
        var decoded = 0
        for _ in 0..<3000 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            if Bool.random(using: &generator) { bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &generator))) }
            do {
                let graph = try TrackableObjectGraph(serialized: bytes, path: "g")
                _ = graph.objectPaths()
                decoded += 1
            } catch {}
        }
        XCTAssertGreaterThan(decoded, 0)
    }
}

/// A small deterministic generator (SplitMix64), so a failing case can be found again.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension TensorFlowError {
    /// The case's name, for tests that expect a kind of error.
    var kind: String {
        switch self {
        case .file(.cannotOpen): return "cannotOpen"
        case .corruptIndex: return "corruptIndex"
        case .corruptData: return "corruptData"
        case .corruptObjectGraph: return "corruptObjectGraph"
        case .unsupported: return "unsupported"
        case .missingKey: return "missingKey"
        case .file(.cannotWrite): return "cannotWrite"
        case .layer: return "layer"
        case .undecidableLayer: return "undecidableLayer"
        case .config: return "config"
        case .dataShard: return "dataShard"
        }
    }
}
