import DOConvTestSupport
@testable import DOConvTensorFlow
import Foundation
import XCTest

/// The checkpoints TensorFlow 2.21 wrote (fixtures/make_tf_fixtures.py) against what
/// TensorFlow's own reader said of them (<checkpoint>.variables.json): every key, type,
/// shape, full name, object path, slot, and the values (first elements and sum).
final class FixtureTests: XCTestCase {
    static let folder = PackageTestSupport.fixtures.appendingPathComponent("tf")

    /// A manifest entry of a checkpoint, and what TF's reader recorded of it.
    struct Checkpoint {
        var name: String
        var prefix: String
        var numShards: Int
        var sliced: Bool
        /// Keys with an object-graph attribute (variables), by key.
        var variables: [String: [String: Any]]
        /// Every key TF's reader lists.
        var keys: Set<String>
    }

    static func checkpoints() throws -> [Checkpoint] {
        let entries = try PackageTestSupport.manifest(folder).filter { $0["kind"] as? String == "checkpoint" }
        XCTAssertGreaterThanOrEqual(entries.count, 6, "fixtures/tf/MANIFEST.json lists too few checkpoints")
        return try entries.map { entry in
            let file = try XCTUnwrap(entry["file"] as? String)
            let listing = try XCTUnwrap(entry["variables"] as? String)
            let data = try Data(contentsOf: folder.appendingPathComponent(listing))
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
            let records = try XCTUnwrap(json["variables"] as? [[String: Any]])
            var variables: [String: [String: Any]] = [:]
            for record in records where record["full_name"] != nil { variables[try XCTUnwrap(record["key"] as? String)] = record }
            return Checkpoint(
                name: listing, prefix: folder.appendingPathComponent(file).path,
                numShards: try XCTUnwrap(entry["num_shards"] as? Int), sliced: entry["sliced"] as? Bool ?? false,
                variables: variables, keys: Set(records.compactMap { $0["key"] as? String }))
        }
    }

    func testEveryCheckpointReadsAsTensorFlowReadsIt() throws {
        for checkpoint in try Self.checkpoints() {
            let bundle = try TensorBundle(prefix: checkpoint.prefix)
            XCTAssertEqual(bundle.header.numShards, checkpoint.numShards, checkpoint.name)
            XCTAssertEqual(bundle.header.endianness, .little)
            XCTAssertEqual(bundle.header.producer, 1)
            // TF's reader hides the entries of slices; every key it lists must be ours.
            XCTAssertTrue(checkpoint.keys.isSubset(of: Set(bundle.entries.map(\.key))), checkpoint.name)

            let variables = try bundle.variables()
            XCTAssertEqual(Set(variables.map(\.key)), Set(checkpoint.variables.keys), checkpoint.name)
            for variable in variables {
                let record = try XCTUnwrap(checkpoint.variables[variable.key])
                let what = "\(checkpoint.name) \(variable.key)"
                XCTAssertEqual(variable.fullName, record["full_name"] as? String, what)
                XCTAssertEqual(variable.dtype.name, record["dtype"] as? String, what)
                XCTAssertEqual(variable.shape, record["shape"] as? [Int], what)
                XCTAssertEqual(variable.nodeID, record["node"] as? Int, what)
                XCTAssertEqual(variable.objectPath, record["path"] as? [String], what)
                XCTAssertEqual(variable.keyPath, record["path_string"] as? String, what)
                XCTAssertEqual(variable.key, variable.keyPath + "/.ATTRIBUTES/" + variable.attributeName, what)
                let slot = record["slot"] as? [String: Any]
                XCTAssertEqual(variable.slot?.name, slot?["name"] as? String, what)
                XCTAssertEqual(variable.slot.map { TrackableObjectGraph.keyPath($0.variablePath) }, slot?["original_path"] as? String, what)
                try checkValues(bundle, variable, record, sliced: checkpoint.sliced, what: what)
            }
        }
    }

    /// The first elements and the float64 sum TF's reader found, within float32 rounding of
    /// the sum's order; a sliced tensor put together from its slices as TF's reader does.
    func checkValues(_ bundle: TensorBundle, _ variable: CheckpointVariable, _ record: [String: Any], sliced: Bool, what: String) throws {
        let entry = try bundle.entry(variable.key)
        if entry.isSliced { XCTAssertTrue(sliced, "\(what) is sliced in a checkpoint not made sliced") }
        let values = try Self.doubles(bundle.tensorBytes(variable.key))
        let first = try XCTUnwrap(record["first"] as? [Double], what)
        // As float32: the JSON holds float32 values printed as doubles, which Foundation's
        // parser may read back a unit in the last place off.
        XCTAssertEqual(values.prefix(first.count).map { Float($0) }, first.map { Float($0) }, what)
        let sum = try XCTUnwrap(record["sum"] as? Double, what)
        XCTAssertEqual(values.reduce(0, +), sum, accuracy: 1e-9 * max(1, values.map(abs).reduce(0, +)), what)
    }

    /// float32 and int64 elements as doubles (the types the fixtures hold).
    static func doubles(_ bytes: TensorBytes) throws -> [Double] {
        try withExtendedLifetime(bytes.owner) {
            switch bytes.entry.dtype {
            case .float: return (0..<bytes.entry.elementCount).map { Double(Float(bitPattern: bytes.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            case .int64: return (0..<bytes.entry.elementCount).map { Double(bytes.bytes.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            default: throw XCTSkip("no reference for \(bytes.entry.dtype)")
            }
        }
    }

    func testSaveWeightsLayout() throws {
        let bundle = try TensorBundle(prefix: Self.folder.appendingPathComponent("net_a_weights/ckpt").path)
        let variables = try bundle.variables()
        let byKey = Dictionary(uniqueKeysWithValues: variables.map { ($0.key, $0) })
        // do_stem: W (Dmul, Cin, Cout) = (9, 3, 8), D (MN, Dmul, Cin) = (9, 9, 3), as FORMATS.md says.
        let kernel = try XCTUnwrap(byKey["layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"])
        XCTAssertEqual(kernel.fullName, "do_stem/kernel")
        XCTAssertEqual(kernel.shape, [9, 3, 8])
        XCTAssertFalse(kernel.isOptimizerState)
        let d = try XCTUnwrap(byKey["layer_with_weights-0/D/.ATTRIBUTES/VARIABLE_VALUE"])
        XCTAssertEqual(d.fullName, "do_stem/D")
        XCTAssertEqual(d.shape, [9, 9, 3])
        XCTAssertEqual(d.objectPath, ["layer_with_weights-0", "D"])
        // tf_keras's Adam holds m and v as children, not slots.
        let m = try XCTUnwrap(byKey["optimizer/_variables/5/.ATTRIBUTES/VARIABLE_VALUE"])
        XCTAssertEqual(m.fullName, "Adam/m/do_stem/D")
        XCTAssertTrue(m.isOptimizerState)
        XCTAssertNil(m.slot)
        // The float values decode as a doconv Tensor too.
        let tensor = try bundle.tensor(d.key)
        XCTAssertEqual(tensor.shape, [9, 9, 3])
        XCTAssertEqual(tensor.values.count, 243)
        XCTAssertFalse(bundle.contains("save_counter/.ATTRIBUTES/VARIABLE_VALUE"))
    }

    func testCheckpointAPILayoutHasSlotsAndSaveCounter() throws {
        let bundle = try TensorBundle(prefix: Self.folder.appendingPathComponent("net_dw_tfckpt/ckpt-1").path)
        let variables = try bundle.variables()
        let byKey = Dictionary(uniqueKeysWithValues: variables.map { ($0.key, $0) })
        let counter = try XCTUnwrap(byKey["save_counter/.ATTRIBUTES/VARIABLE_VALUE"])
        XCTAssertEqual(counter.dtype, .int64)
        XCTAssertEqual(try Self.doubles(bundle.tensorBytes(counter.key)), [1])
        let slot = try XCTUnwrap(byKey["model/layer_with_weights-0/D/.OPTIMIZER_SLOT/model/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE"])
        XCTAssertEqual(slot.slot, CheckpointVariable.Slot(name: "m", variablePath: ["model", "layer_with_weights-0", "D"], optimizerPath: ["model", "optimizer"]))
        XCTAssertEqual(slot.fullName, "Adam/do_dw/D/m")
        XCTAssertTrue(slot.isOptimizerState)
        // m and v of each of the 8 weights (do_dw and do_dil: kernel, bias, D; head: kernel, bias)
        XCTAssertEqual(variables.filter { $0.slot != nil }.count, 16)
    }

    func testShardedCheckpointReadsFromEveryShard() throws {
        let bundle = try TensorBundle(prefix: Self.folder.appendingPathComponent("net_a_sharded/ckpt").path)
        XCTAssertEqual(bundle.header.numShards, 3)
        XCTAssertEqual(Set(bundle.entries.map(\.shardID)), [0, 1, 2])
        XCTAssertFalse(bundle.entries.contains { $0.isSliced })
    }

    func testSlicedCheckpointListsItsSlices() throws {
        let bundle = try TensorBundle(prefix: Self.folder.appendingPathComponent("net_dw_sliced/ckpt").path)
        let sliced = bundle.entries.filter(\.isSliced)
        XCTAssertFalse(sliced.isEmpty)
        // Each slice has an entry of its own under a binary key naming the full tensor, of
        // raw bytes that read and pass their checksum.
        for full in sliced {
            let slices = bundle.entries.filter { $0.sliceOf == full.key }
            XCTAssertEqual(slices.count, full.slices.count, full.key)
            XCTAssertEqual(slices.map(\.elementCount).reduce(0, +), full.elementCount, full.key)
            for slice in slices { XCTAssertNoThrow(try bundle.tensorBytes(of: slice), full.key) }
        }
        XCTAssertNil(sliced.first?.sliceOf)
    }

    /// The object graph is a DT_STRING scalar: one varint length, the masked CRC32C of the
    /// length (as a uint32), the serialized proto.
    func testObjectGraphStringEncoding() throws {
        let bundle = try TensorBundle(prefix: Self.folder.appendingPathComponent("net_a_weights/ckpt").path)
        let entry = try bundle.entry(TensorBundle.objectGraphKey)
        XCTAssertEqual(entry.dtype, .string)
        XCTAssertEqual(entry.shape, [])
        let strings = try bundle.strings(TensorBundle.objectGraphKey)
        XCTAssertEqual(strings.count, 1)
        let proto = try XCTUnwrap(strings.first)
        var varint: [UInt8] = []
        WireEncoding.appendVarint(UInt64(proto.count), to: &varint)
        XCTAssertEqual(entry.size, varint.count + 4 + proto.count)
        let graph = try bundle.objectGraph()
        XCTAssertEqual(graph.nodes[0].children.first?.localName, "layer-0")
    }

    /// The SavedModel's variables/ are a bundle too; its weights are the checkpoint's.
    func testSavedModelVariablesAreABundle() throws {
        let weights = try TensorBundle(prefix: Self.folder.appendingPathComponent("net_a_weights/ckpt").path)
        let byName = Dictionary(uniqueKeysWithValues: try weights.variables().filter { !$0.isOptimizerState }.map { ($0.fullName, $0) })
        for name in ["net_a_savedmodel", "net_a_tf_savedmodel"] {
            let bundle = try TensorBundle(prefix: Self.folder.appendingPathComponent("\(name)/variables/variables").path)
            var compared = 0
            for variable in try bundle.variables() {
                guard let twin = byName[variable.fullName] else { continue }
                XCTAssertEqual(try bundle.tensorBytes(variable.key).array, try weights.tensorBytes(twin.key).array, "\(name) \(variable.key)")
                compared += 1
            }
            XCTAssertEqual(compared, byName.count, name)
        }
    }

    /// The table writer makes TensorFlow's index files byte for byte from their entries.
    func testTableWriterReproducesTensorFlowsIndexFiles() throws {
        for checkpoint in try Self.checkpoints() {
            let path = checkpoint.prefix + ".index"
            let original = try Data(contentsOf: URL(fileURLWithPath: path))
            let table = try TensorBundleTable(path: path)
            XCTAssertEqual(Data(TableWriter.encode(table.entries)), original, path)
            // and the header and entries re-encode to the bytes TensorFlow wrote
            for item in table.entries {
                if item.key.isEmpty {
                    XCTAssertEqual(try BundleHeader(serialized: item.value, path: path).encode(), item.value)
                } else {
                    let entry = try BundleEntry(key: item.key, serialized: item.value, path: path)
                    if !entry.isSliced { XCTAssertEqual(entry.encode(), item.value, item.keyString) }
                }
            }
        }
    }
}
