@testable import DOConvPyTorch
import XCTest

/// The restricted unpickler against pickles written by CPython's own pickle module, and the
/// pickler against the unpickler.
final class PickleTests: XCTestCase {
    /// pickle.dumps(OrderedDict(a=1, b=[1.5, None, True, 'x', b'y', (1, 2, 3), 2**70, -5, 300,
    /// 70000, -2**40, {'k': frozenset([1])}], c=(shared, shared)), protocol=2 and 4) with
    /// shared = [1, 2], by CPython 3.11.
    static let protocol2 = "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000006171024b0158010000006271035d710428473ff80000000000004e885801000000787105635f636f646563730a656e636f64650a7106580100000079710758060000006c6174696e31710886710952710a4b014b024b0387710b8a090000000000000000404afbffffff4d2c014a701101008a060000000000ff7d710c58010000006b710d635f5f6275696c74696e5f5f0a66726f7a656e7365740a710e5d710f4b0161857110527111736558010000006371125d7113284b014b02656813867114752e"
    static let protocol4 = "80049589000000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0161944b018c0162945d9428473ff80000000000004e888c017894430179944b014b024b0387948a090000000000000000404afbffffff4d2c014a701101008a060000000000ff7d948c016b94284b01919473658c0163945d94284b014b0265680e8694752e"

    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            out.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return out
    }

    static func load(_ bytes: [UInt8]) throws -> PickleObject {
        try bytes.withUnsafeBytes { buffer in
            var unpickler = Unpickler(bytes: buffer, path: "test.pkl")
            return try unpickler.load()
        }
    }

    /// Reads without the allowlist: foreign globals are carried; returns them too.
    static func loadCarrying(_ bytes: [UInt8]) throws -> (PickleObject, Set<String>) {
        try bytes.withUnsafeBytes { buffer in
            var unpickler = Unpickler(bytes: buffer, path: "test.pkl", strict: false)
            return (try unpickler.load(), unpickler.carriedGlobals)
        }
    }

    /// pickle.dumps({'args': argparse.Namespace(lr=0.1, name='x'), 'dd':
    /// collections.defaultdict(list, {'a': [1]}), 'best': numpy.float64(0.5)}, protocol=2 and 4)
    /// by CPython 3.11 with numpy 2: NEWOBJ + BUILD, REDUCE + SETITEM into a non-dict, numpy's
    /// scalar and dtype (a REDUCE, then BUILD with a tuple).
    static let carried2 = "80027d71002858040000006172677371016361726770617273650a4e616d6573706163650a7102298171037d71042858020000006c727105473fb999999999999a58040000006e616d6571065801000000787107756258020000006464710863636f6c6c656374696f6e730a64656661756c74646963740a7109635f5f6275696c74696e5f5f0a6c6973740a710a85710b52710c580100000061710d5d710e4b016173580400000062657374710f636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7110636e756d70790a64747970650a71115802000000663871128988877113527114284b0358010000003c71154e4e4e4affffffff4affffffff4b0074711662635f636f646563730a656e636f64650a71175809000000000000000000c3a03f711858060000006c6174696e31711986711a52711b86711c52711d752e"
    static let carried4 = "800495fb000000000000007d94288c0461726773948c086172677061727365948c094e616d6573706163659493942981947d94288c026c7294473fb999999999999a8c046e616d65948c01789475628c026464948c0b636f6c6c656374696f6e73948c0b64656661756c74646963749493948c086275696c74696e73948c046c697374949394859452948c0161945d944b0161738c0462657374948c166e756d70792e5f636f72652e6d756c74696172726179948c067363616c61729493948c056e756d7079948c0564747970659493948c02663894898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494624308000000000000e03f9486945294752e"

    func testCarriesForeignObjectsAsReadAndWritesThemBack() throws {
        for (hex, list) in [(Self.carried2, "__builtin__.list"), (Self.carried4, "builtins.list")] {
            let (root, carried) = try Self.loadCarrying(Self.bytes(hex))
            XCTAssertEqual(carried, ["argparse.Namespace", "collections.defaultdict", list, "numpy._core.multiarray.scalar", "numpy.dtype"])
            let entries = try XCTUnwrap(root.dictEntries)
            XCTAssertEqual(entries.map { $0.key.string }, ["args", "dd", "best"])
            // Namespace: cls.__new__(cls) (NEWOBJ), then its __dict__ by BUILD.
            guard case .newObject(_, _, nil) = entries[0].value.kind else { return XCTFail("Namespace is not a NEWOBJ") }
            XCTAssertEqual(entries[0].value.carriedClass, "argparse.Namespace")
            XCTAssertEqual(entries[0].value.state?.dictEntries?.map { $0.key.string }, ["lr", "name"])
            // defaultdict(list): a REDUCE whose items come by SETITEM.
            XCTAssertEqual(entries[1].value.setItems.map { $0.key.string }, ["a"])
            // Written back and read again: the same objects, items and state.
            let again = try Self.loadCarrying(Pickler.pickle(root, protocol: 2)).0
            XCTAssertTrue(root.isEqual(to: again))
            XCTAssertEqual(again.dictEntries?[1].value.setItems.count, 1)
        }
    }

    func testCarriedObjectsStillRefusedWhenStrict() {
        XCTAssertThrowsError(try Self.load(Self.bytes(Self.carried2))) { error in
            XCTAssertEqual(error as? PyTorchError, .disallowedGlobal(path: "test.pkl", global: "argparse.Namespace"))
        }
    }

    func testNewObjectWithKeywordsIsWrittenAsNewObjEx() throws {
        // GLOBAL m C, EMPTY_TUPLE, {'k': 1}, NEWOBJ_EX, STOP
        let raw: [UInt8] = [0x80, 0x04] + Array("cm\nC\n".utf8) + [0x29, 0x7D, 0x8C, 0x01, 0x6B, 0x4B, 0x01, 0x73, 0x92, 0x2E]
        let (root, _) = try Self.loadCarrying(raw)
        guard case let .newObject(_, _, kwargs?) = root.kind else { return XCTFail("not a NEWOBJ_EX") }
        XCTAssertEqual(kwargs.dictEntries?.first?.key.string, "k")
        let written = Pickler.pickle(root, protocol: 4)
        XCTAssertTrue(written.contains(0x92))
        XCTAssertTrue(try Self.loadCarrying(written).0.isEqual(to: root))
    }

    func testReadsCPythonPicklesOfBothProtocols() throws {
        for hex in [Self.protocol2, Self.protocol4] {
            let root = try Self.load(Self.bytes(hex))
            guard case let .dict(entries, ordered) = root.kind else { return XCTFail("not a dict") }
            XCTAssertTrue(ordered)
            XCTAssertEqual(entries.map { $0.key.string }, ["a", "b", "c"])
            XCTAssertEqual(entries[0].value.int, 1)
            let list = try XCTUnwrap(entries[1].value.elements)
            XCTAssertEqual(list.count, 12)
            guard case .float(1.5) = list[0].kind, case .none = list[1].kind, case .bool(true) = list[2].kind else { return XCTFail("scalars") }
            XCTAssertEqual(list[3].string, "x")
            XCTAssertEqual(list[5].elements?.compactMap(\.int), [1, 2, 3])
            guard case let .bigInt(raw) = list[6].kind else { return XCTFail("2**70 is a big int") }
            XCTAssertEqual(raw, [0, 0, 0, 0, 0, 0, 0, 0, 0x40])
            XCTAssertEqual(list[7].int, -5)
            XCTAssertEqual(list[8].int, 300)
            XCTAssertEqual(list[9].int, 70000)
            XCTAssertEqual(list[10].int, -(1 << 40))
            // The tuple holds the same list twice (the memo), not two copies.
            let pair = try XCTUnwrap(entries[2].value.elements)
            XCTAssertTrue(pair[0] === pair[1])
        }
    }

    func testPicklerRoundTripKeepsValuesAndSharing() throws {
        for hex in [Self.protocol2, Self.protocol4] {
            let root = try Self.load(Self.bytes(hex))
            let again = try Self.load(Pickler.pickle(root, protocol: 2))
            XCTAssertTrue(root.isEqual(to: again))
            let pair = try XCTUnwrap(again.dictEntries?[2].value.elements)
            XCTAssertTrue(pair[0] === pair[1])
        }
    }

    func testRefusesGlobalsOutsideTheAllowlist() {
        // GLOBAL posix system, then a call: what a malicious pickle does.
        let evil: [UInt8] = [0x80, 0x02] + Array("cposix\nsystem\n".utf8) + [0x58, 2, 0, 0, 0] + Array("ls".utf8) + [0x85, 0x52, 0x2E]
        XCTAssertThrowsError(try Self.load(evil)) { error in
            XCTAssertEqual(error as? PyTorchError, .disallowedGlobal(path: "test.pkl", global: "posix.system"))
            XCTAssertTrue("\(error)".contains("--strict-pickle"))
        }
    }

    func testBoundsHostilePickles() {
        let cases: [(String, [UInt8])] = [
            ("memo index", [0x80, 0x02, 0x6A, 0xF0, 0xFF, 0xFF, 0xFF, 0x2E]),
            ("unknown pickle opcode", [0x80, 0x02, 0xFF, 0x2E]),
            ("truncated", [0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F]),
            ("truncated", [0x80, 0x02, 0x5D]),
            ("cycle", [0x80, 0x02, 0x5D, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2E]),
            ("nested deeper than", [0x80, 0x02] + [UInt8](repeating: 0x5D, count: 50_000) + [UInt8](repeating: 0x61, count: 49_999) + [0x2E]),
            ("stack underflow", [0x80, 0x02, 0x61, 0x2E]),
        ]
        for (phrase, bytes) in cases {
            XCTAssertThrowsError(try Self.load(bytes), phrase) { error in
                XCTAssertTrue("\(error)".contains(phrase), "\(error) lacks '\(phrase)'")
            }
        }
    }
}
