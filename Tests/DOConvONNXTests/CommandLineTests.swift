import Foundation
import XCTest
import DOConvTestSupport

/// `doconv-fold` as a user runs it: exit codes, one-line errors, nothing written on failure.
final class CommandLineTests: XCTestCase {
    func fold(_ arguments: [String]) throws -> PackageTestSupport.Run { try PackageTestSupport.run("doconv-fold", arguments) }

    func testFoldPrintsTheSummary() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let output = dir.appendingPathComponent("out.onnx").path
        let run = try fold([TestSupport.fixture("grouped.ts_nofold.onnx"), output])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("folded 3 layers: 2 DO-DConv, 1 DO-GConv"), run.stdout)
        XCTAssertTrue(run.stdout.contains("verified: worst relative error"), run.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: output))
    }

    func testBadInputsFailCleanlyAndWriteNothing() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let valid = try Data(contentsOf: URL(fileURLWithPath: TestSupport.fixture("g1_basic.ts_nofold.onnx")))
        var random = [UInt8](repeating: 0, count: 4096)
        for k in random.indices { random[k] = UInt8(truncatingIfNeeded: k &* 2_654_435_761 >> 7) }
        let cases: [(String, Data, String)] = [
            ("empty.onnx", Data(), "empty"),
            ("random.onnx", Data(random), "not an ONNX model"),
            ("text.onnx", Data("this is not a model\n".utf8), "not an ONNX model"),
            ("truncated.onnx", valid.prefix(valid.count / 2), "not an ONNX model"),
        ]
        for (name, bytes, message) in cases {
            let input = dir.appendingPathComponent(name)
            try bytes.write(to: input)
            let output = dir.appendingPathComponent("out-" + name).path
            let run = try fold([input.path, output])
            XCTAssertEqual(run.status, 2, name)
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, "\(name): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains(input.path) && run.stderr.contains(message), "\(name): \(run.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: output), name)
            XCTAssertEqual(try Data(contentsOf: input), bytes, name)
        }
        let missing = try fold([dir.appendingPathComponent("missing.onnx").path, dir.appendingPathComponent("x.onnx").path])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("cannot open"), missing.stderr)
    }

    func testVerificationFailureWritesNothing() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let output = dir.appendingPathComponent("out.onnx").path
        let run = try fold([TestSupport.fixture("wide_dmul.ts.onnx"), output, "--tolerance", "0"])
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("verification failed"), run.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "no temporary file is left behind")
    }

    func testOutputMayBeTheInput() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        for name in ["g1_basic.ts_nofold.onnx", "grouped.dynamo.onnx"] {
            let path = try TestSupport.copyFixture(name, to: dir)
            let run = try fold([path, path])
            XCTAssertEqual(run.status, 0, run.stderr)
            let again = try fold([path, path])
            XCTAssertEqual(again.status, 0, again.stderr)
            XCTAssertTrue(again.stdout.contains("no DO-Conv layer found"), again.stdout)
        }
    }

    func testManyInputsIntoAFolder() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let inputs = ["g1_basic.ts.onnx", "wide_dmul.ts.onnx", "plain_cnn.onnx"].map(TestSupport.fixture)
        let run = try fold(inputs + ["-o", dir.path])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("[3/3]"), run.stdout)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)), ["g1_basic.ts.onnx", "wide_dmul.ts.onnx", "plain_cnn.onnx"])
    }

    func testUsageErrorsAndUnwritableOutputExitWith2() throws {
        XCTAssertEqual(try fold([TestSupport.fixture("g1_basic.ts.onnx")]).status, 2)
        XCTAssertEqual(try fold(["a", "b", "c"]).status, 2)
        XCTAssertEqual(try fold(["--tolerance", "x", "a", "b"]).status, 2)
        let run = try fold([TestSupport.fixture("g1_basic.ts.onnx"), "/nonexistent-folder/out.onnx"])
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.stderr.contains("cannot write"), run.stderr)
        XCTAssertEqual(try fold(["--help"]).status, 0)
    }
}
