import DOConvTestSupport
@testable import DOConvTensorFlow
import Foundation
import XCTest

final class WriterTests: XCTestCase {
    /// Copies `bundle` into a writer at `prefix`: tensors in the order they sit in their
    /// shards, each to the shard `shard` picks (its own by default), `replace` giving new
    /// bytes for some keys.
    func copy(_ bundle: TensorBundle, to prefix: String, numShards: Int? = nil, shard: ((BundleEntry) -> Int)? = nil,
              replace: [String: [UInt8]] = [:]) throws {
        let writer = try TensorBundleWriter(prefix: prefix, numShards: numShards ?? bundle.header.numShards)
        for entry in bundle.entries.sorted(by: { ($0.shardID, $0.offset) < ($1.shardID, $1.offset) }) {
            let target = shard?(entry) ?? entry.shardID
            if entry.sliceOf != nil {
                let stored = try bundle.tensorBytes(of: entry)
                try withExtendedLifetime(stored.owner) { try writer.addSlice(entry, bytes: stored.bytes) }
            } else if entry.isSliced {
                try writer.addSlicedTensor(entry)
            } else if entry.dtype == .string {
                try writer.addStrings(entry.key, shape: entry.shape, strings: try bundle.strings(entry.key), shard: target)
            } else if let bytes = replace[entry.key] {
                try writer.add(entry.key, dtype: entry.dtype, shape: entry.shape, bytes: bytes, shard: target)
            } else {
                try writer.add(entry.key, dtype: entry.dtype, shape: entry.shape, bytes: try bundle.tensorBytes(entry.key).array, shard: target)
            }
        }
        try writer.commit()
    }

    /// Every bundle TensorFlow wrote, copied tensor by tensor (a sliced one slice by slice),
    /// comes out as the same files, byte for byte: offsets, CRCs, entries with their slice
    /// lists, index blocks, header.
    func testCopiesAreTensorFlowsFilesByteForByte() throws {
        let prefixes = try FixtureTests.checkpoints().map(\.prefix)
            + ["net_a_savedmodel/variables/variables", "net_a_tf_savedmodel/variables/variables"].map { FixtureTests.folder.appendingPathComponent($0).path }
        let folder = try PackageTestSupport.temporaryDirectory(self)
        for (k, source) in prefixes.enumerated() {
            let bundle = try TensorBundle(prefix: source)
            let prefix = folder.appendingPathComponent("copy\(k)").path
            try copy(bundle, to: prefix)
            var files = [(TensorBundle.indexPath(prefix: source), TensorBundle.indexPath(prefix: prefix))]
            for shard in 0..<bundle.header.numShards {
                let n = bundle.header.numShards
                files.append((TensorBundle.dataPath(prefix: source, shard: shard, of: n), TensorBundle.dataPath(prefix: prefix, shard: shard, of: n)))
            }
            for (original, written) in files {
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: written)), try Data(contentsOf: URL(fileURLWithPath: original)), original)
            }
        }
    }

    /// Each body fails with a cannot-write error whose text holds its phrase.
    func expectCannotWrite(_ refused: [(String, () throws -> Void)], file: StaticString = #filePath, line: UInt = #line) {
        for (text, body) in refused {
            XCTAssertThrowsError(try body(), text, file: file, line: line) { error in
                guard case .file(.cannotWrite) = error as? TensorFlowError else { return XCTFail("\(error)", file: file, line: line) }
                XCTAssertTrue("\(error)".contains(text), "\(error)", file: file, line: line)
            }
        }
    }

    func testWriterRefusesWhatItCannotWrite() throws {
        let folder = try PackageTestSupport.temporaryDirectory(self)
        let prefix = folder.appendingPathComponent("w").path
        let writer = try TensorBundleWriter(prefix: prefix, numShards: 2)
        try writer.add("a", dtype: .float, shape: [2], bytes: [UInt8](repeating: 0, count: 8))
        let refused: [(String, () throws -> Void)] = [
            ("takes 8", { try writer.add("b", dtype: .float, shape: [2], bytes: [0, 0, 0, 0]) }),
            ("added twice", { try writer.add("a", dtype: .float, shape: [2], bytes: [UInt8](repeating: 0, count: 8)) }),
            ("shard 2 of 2", { try writer.add("c", dtype: .float, shape: [], bytes: [0, 0, 0, 0], shard: 2) }),
            ("the header's", { try writer.add("", dtype: .float, shape: [], bytes: [0, 0, 0, 0]) }),
            ("not stored as raw", { try writer.add("d", dtype: .variant, shape: [], bytes: []) }),
            ("shape [-1]", { try writer.add("e", dtype: .float, shape: [-1], bytes: []) }),
            ("1 strings for shape [2]", { try writer.addStrings("f", shape: [2], strings: [[1]]) }),
        ]
        expectCannotWrite(refused)
        // Nothing is in place before commit, and a released writer leaves nothing behind.
        writer.discard()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), [])
        XCTAssertThrowsError(try TensorBundleWriter(prefix: prefix, numShards: 0))
    }

    /// A sliced tensor is written with every slice its entry lists, or not at all.
    func testASlicedTensorMissingASliceIsRefused() throws {
        let source = try TensorBundle(prefix: FixtureTests.folder.appendingPathComponent("net_dw_sliced/ckpt").path)
        let whole = try XCTUnwrap(source.entries.first(where: \.isSliced))
        let slices = source.slices(of: whole)
        let folder = try PackageTestSupport.temporaryDirectory(self)
        let writer = try TensorBundleWriter(prefix: folder.appendingPathComponent("w").path, numShards: source.header.numShards)
        try writer.addSlicedTensor(whole)
        for slice in slices.dropLast() {
            let stored = try source.tensorBytes(of: slice)
            try withExtendedLifetime(stored.owner) { try writer.addSlice(slice, bytes: stored.bytes) }
        }
        let refused: [(String, () throws -> Void)] = [
            ("lists \(whole.slices.count) slices but \(slices.count - 1) were added", { try writer.commit() }),
            ("lists no slices", { try writer.addSlicedTensor(BundleEntry(key: Array("x".utf8), dtype: .float, shape: [2], shardID: 0, offset: 0, size: 0, maskedCRC32C: 0)) }),
            ("not a slice's key", { try [UInt8](repeating: 0, count: 8).withUnsafeBytes { try writer.addSlice(whole, bytes: $0) } }),
        ]
        expectCannotWrite(refused)
        writer.discard()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), [])
    }

    func testWrittenStringsAndEmptyTensorsReadBack() throws {
        let folder = try PackageTestSupport.temporaryDirectory(self)
        let prefix = folder.appendingPathComponent("s").path
        let writer = try TensorBundleWriter(prefix: prefix, numShards: 3)
        let strings: [[UInt8]] = [[], Array("doconv".utf8), [UInt8](repeating: 0xFF, count: 300), [0]]
        try writer.addStrings("names", shape: [2, 2], strings: strings, shard: 2)
        try writer.addStrings("none", shape: [0], strings: [])
        try writer.add("empty", dtype: .double, shape: [3, 0], bytes: [])
        try writer.add("h", dtype: .half, shape: [1], bytes: [0x00, 0x3C], shard: 1)
        try writer.commit()
        let bundle = try TensorBundle(prefix: prefix)
        XCTAssertEqual(try bundle.strings("names"), strings)
        XCTAssertEqual(try bundle.strings("none"), [])
        XCTAssertEqual(try bundle.tensorBytes("empty").array, [])
        XCTAssertEqual(try bundle.tensor("h").values, [1])
        XCTAssertEqual(try bundle.entry("names").shardID, 2)
    }

    /// TensorFlow itself reads what the writer wrote: every tensor of a checkpoint copied
    /// into three shards, one with a tensor replaced; the unchanged copy loads into the
    /// Keras model and predicts the fixture's output.
    func testTensorFlowReadsWrittenBundles() throws {
        let python = try Self.tensorFlowPython()
        let source = FixtureTests.folder.appendingPathComponent("net_a_weights/ckpt").path
        let bundle = try TensorBundle(prefix: source)
        let folder = try PackageTestSupport.temporaryDirectory(self)
        let keys = bundle.entries.map(\.key).sorted()
        let roundRobin: (BundleEntry) -> Int = { entry in (keys.firstIndex(of: entry.key) ?? 0) % 3 }
        let resharded = folder.appendingPathComponent("resharded").path
        try copy(bundle, to: resharded, numShards: 3, shard: roundRobin)
        // do_stem's D doubled.
        let dKey = "layer_with_weights-0/D/.ATTRIBUTES/VARIABLE_VALUE"
        let d = try bundle.tensor(dKey).values.map { $0 * 2 }
        let doubled = folder.appendingPathComponent("doubled").path
        try copy(bundle, to: doubled, replace: [dKey: d.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }])

        let script = """
        import json, os, sys
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import numpy as np
        import tensorflow as tf
        fixtures, source, resharded, doubled, d_key = sys.argv[1:6]
        original = tf.train.load_checkpoint(source)
        keys = original.get_variable_to_shape_map()
        for written, factor in ((resharded, None), (doubled, d_key)):
            reader = tf.train.load_checkpoint(written)
            assert set(reader.get_variable_to_shape_map()) == set(keys), written
            assert reader.get_variable_to_dtype_map() == original.get_variable_to_dtype_map(), written
            for key in keys:
                want = original.get_tensor(key)
                if key == factor:
                    want = want * 2
                got = reader.get_tensor(key)
                assert np.array_equal(got, want), (written, key)
        sys.path.insert(0, fixtures)
        import make_keras_h5_fixtures as kh
        layer = kh.define_keras2_layer(tf)
        tf_folder = os.path.join(fixtures, "tf")
        model = tf.keras.models.model_from_json(open(os.path.join(tf_folder, "net_a.json")).read(), custom_objects={"DOConv2D": layer})
        model.load_weights(resharded).expect_partial()
        expected = np.load(os.path.join(tf_folder, "net_a.expected.npz"))
        got = model.predict(expected["input"], batch_size=1, verbose=0)
        assert np.array_equal(got, expected["output"]), np.abs(got - expected["output"]).max()
        print("TF read", len(keys), "tensors of each bundle; the model predicts the fixture's output")
        """
        let run = try Self.run(python, ["-c", script, PackageTestSupport.fixtures.path, source, resharded, doubled, dKey])
        XCTAssertEqual(run.status, 0, run.stderr.split(separator: "\n").suffix(15).joined(separator: "\n"))
        XCTAssertTrue(run.stdout.contains("TF read"), run.stdout)
    }

    /// The Python of a virtualenv with TensorFlow 2.21 and tf_keras: $DOCONV_TF_PYTHON, or
    /// /work/venv-tf/bin/python (fixtures/make_tf_fixtures.py says how to make it); the test
    /// is skipped without one.
    static func tensorFlowPython() throws -> String {
        let candidates = [ProcessInfo.processInfo.environment["DOCONV_TF_PYTHON"], "/work/venv-tf/bin/python"].compactMap { $0 }
        guard let python = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("no TensorFlow virtualenv (set DOCONV_TF_PYTHON)")
        }
        return python
    }

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program with TensorFlow's logging quiet; stderr goes to a file, so a full pipe
    /// cannot stall it.
    static func run(_ executable: String, _ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["TF_CPP_MIN_LOG_LEVEL"] = "3"
        environment["CUDA_VISIBLE_DEVICES"] = ""
        process.environment = environment
        let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent("doconv-tf-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errorFile) }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = try FileHandle(forWritingTo: errorFile)
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errors = (try? Data(contentsOf: errorFile)) ?? Data()
        return Run(status: process.terminationStatus, stdout: String(decoding: output, as: UTF8.self), stderr: String(decoding: errors, as: UTF8.self))
    }
}
