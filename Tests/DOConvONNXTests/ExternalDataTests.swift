import Foundation
import XCTest
@testable import DOConvONNX

/// External data must resolve inside the model's folder and nowhere else.
final class ExternalDataTests: XCTestCase {
    let model = "g1_basic.dynamo.onnx"
    let location = "g1_basic.dynamo.onnx.data"

    /// Copies the dynamo fixture with every data location replaced by `replacement`
    /// (same length, so the protobuf stays well formed).
    func modelWithLocation(_ replacement: String, in directory: URL) throws -> String {
        precondition(replacement.utf8.count == location.utf8.count)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: TestSupport.fixture(model))))
        let needle = Array(location.utf8)
        var k = 0
        var replaced = 0
        while k + needle.count <= bytes.count {
            if Array(bytes[k..<(k + needle.count)]) == needle {
                bytes.replaceSubrange(k..<(k + needle.count), with: Array(replacement.utf8))
                replaced += 1
                k += needle.count
            } else {
                k += 1
            }
        }
        XCTAssertGreaterThan(replaced, 0)
        let path = directory.appendingPathComponent(model).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func assertRefused(_ path: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ONNXFolder.fold(try ONNXModel.load(path: path)), file: file, line: line) { error in
            guard case .externalData(_, let reason) = error as? ONNXError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(reason.contains(fragment), reason, file: file, line: line)
        }
    }

    func testParentDirectoryIsRefused() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        try FileManager.default.copyItem(atPath: TestSupport.fixture(location), toPath: dir.appendingPathComponent(location).path)
        assertRefused(try modelWithLocation("../g1_basic.dynamo.o.data", in: dir), "leaves the model's folder")
    }

    func testAbsolutePathIsRefused() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        assertRefused(try modelWithLocation("/tmp/g1_basic.dynamo.data", in: dir), "not a relative path")
    }

    func testSymlinkOutOfTheFolderIsRefused() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let outside = try TestSupport.temporaryDirectory(self)
        let target = outside.appendingPathComponent("weights.data")
        try FileManager.default.copyItem(atPath: TestSupport.fixture(location), toPath: target.path)
        try TestSupport.copyFixture(model, to: dir)
        try FileManager.default.removeItem(at: dir.appendingPathComponent(location))
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent(location).path, withDestinationPath: target.path)
        assertRefused(dir.appendingPathComponent(model).path, "outside the model's folder")
    }

    func testMissingAndShortDataFilesAreErrors() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let path = try TestSupport.copyFixture(model, to: dir)
        try FileManager.default.removeItem(atPath: path + ".data")
        assertRefused(path, "does not exist")
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path + ".data"))
        assertRefused(path, "beyond the end")
    }
}
