import Foundation
import XCTest
import DOConvTestSupport
@testable import DOConvONNX
import CONNXProto

/// Paths and helpers shared by the ONNX tests.
enum TestSupport {
    static let packageRoot = PackageTestSupport.packageRoot
    static let fixtures = PackageTestSupport.fixtures

    /// The fixture manifest written by fixtures/make_fixtures.py.
    static func manifest() throws -> [[String: Any]] { try PackageTestSupport.manifest() }

    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    static func temporaryDirectory(_ test: XCTestCase) throws -> URL { try PackageTestSupport.temporaryDirectory(test) }

    /// Copies a fixture (and its external data file, if any) into `directory`.
    @discardableResult
    static func copyFixture(_ name: String, to directory: URL) throws -> String {
        for file in [name, name + ".data"] where FileManager.default.fileExists(atPath: fixture(file)) {
            try FileManager.default.copyItem(atPath: fixture(file), toPath: directory.appendingPathComponent(file).path)
        }
        return directory.appendingPathComponent(name).path
    }

    /// Op types of the main graph's nodes, in order.
    static func opTypes(_ model: ONNXModel) -> [String] { GraphIndex(graph: model.graph).nodes.map(\.opType) }

    static func initializerNames(_ model: ONNXModel) -> [String] {
        Proto.elements(model.graph.pointee.initializer, model.graph.pointee.n_initializer).map { TensorCodec.name($0!) }
    }

    static func graphInputNames(_ model: ONNXModel) -> [String] {
        Proto.elements(model.graph.pointee.input, model.graph.pointee.n_input).map { Proto.string($0!.pointee.name) }
    }

    static func metadata(_ model: ONNXModel) -> [String: String] {
        var result: [String: String] = [:]
        for entry in Proto.elements(model.proto.pointee.metadata_props, model.proto.pointee.n_metadata_props) {
            result[Proto.string(entry!.pointee.key)] = Proto.string(entry!.pointee.value)
        }
        return result
    }
}
