import Foundation
import XCTest

/// The committed protobuf-c code must be what schemas/generate.sh makes from the schemas:
/// schemas/onnx.proto (CONNXProto) and schemas/tensorflow_checkpoint.proto (CTFProto).
final class SchemaTests: XCTestCase {
    func testGeneratedCodeIsCurrent() throws {
        let out = try TestSupport.temporaryDirectory(self)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [TestSupport.packageRoot.appendingPathComponent("schemas/generate.sh").path, out.path]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "schemas/generate.sh failed (is protobuf-c-compiler installed?)")
        for (target, schema) in [("CONNXProto", "onnx"), ("CTFProto", "tensorflow_checkpoint")] {
            let committed = TestSupport.packageRoot.appendingPathComponent("Sources/\(target)")
            for file in ["\(schema).pb-c.c", "include/\(schema).pb-c.h"] {
                let fresh = try Data(contentsOf: out.appendingPathComponent(file))
                let current = try Data(contentsOf: committed.appendingPathComponent(file))
                XCTAssertEqual(fresh, current, "Sources/\(target)/\(file) is stale: run schemas/generate.sh")
            }
        }
    }
}
