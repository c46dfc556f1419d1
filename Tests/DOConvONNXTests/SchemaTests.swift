import Foundation
import XCTest

/// The committed protobuf-c code must be what schemas/generate.sh makes from schemas/onnx.proto.
final class SchemaTests: XCTestCase {
    func testGeneratedCodeIsCurrent() throws {
        let out = try TestSupport.temporaryDirectory(self)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [TestSupport.packageRoot.appendingPathComponent("schemas/generate.sh").path, out.path]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "schemas/generate.sh failed (is protobuf-c-compiler installed?)")
        let committed = TestSupport.packageRoot.appendingPathComponent("Sources/CONNXProto")
        for file in ["onnx.pb-c.c", "include/onnx.pb-c.h"] {
            let fresh = try Data(contentsOf: out.appendingPathComponent(file))
            let current = try Data(contentsOf: committed.appendingPathComponent(file))
            XCTAssertEqual(fresh, current, "Sources/CONNXProto/\(file) is stale: run schemas/generate.sh")
        }
    }
}
