import DOConvCore
import DOConvInspect
import DOConvKeras
import DOConvONNX
import Foundation
import XCTest
import DOConvTestSupport

/// Paths, manifests and the built `doconv-inspect` for the inspect tests.
enum InspectTestSupport {
    static let packageRoot = PackageTestSupport.packageRoot
    static let fixtures = PackageTestSupport.fixtures
    static let kerasFixtures = fixtures.appendingPathComponent("keras_h5")

    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }
    static func kerasFixture(_ name: String) -> String { kerasFixtures.appendingPathComponent(name).path }

    static func manifest(_ url: URL) throws -> [[String: Any]] { try PackageTestSupport.manifest(url) }

    static func onnxReport(_ name: String) throws -> InspectReport {
        let path = fixture(name)
        return InspectReport(model: path, format: "onnx", detection: try ONNXFolder.detect(try ONNXModel.load(path: path)))
    }

    static func kerasReport(_ name: String, config: String?) throws -> InspectReport {
        var options = KerasFoldOptions()
        if let config { options.configJSON = try String(contentsOfFile: kerasFixture(config), encoding: .utf8) }
        let path = kerasFixture(name)
        return InspectReport(model: path, format: "keras-h5", detection: try KerasFolder.detect(path: path, options: options))
    }

    static func temporaryDirectory(_ test: XCTestCase) throws -> URL { try PackageTestSupport.temporaryDirectory(test) }

    typealias Run = PackageTestSupport.Run

    static func inspect(_ arguments: [String]) throws -> Run { try PackageTestSupport.run("doconv-inspect", arguments) }

    /// Random values in [-1, 1).
    static func randomValues(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Double(state >> 40) / Double(1 << 24)) * 2 - 1
        }
    }

    /// Trainable parameters of a manifest layer: D (none for 1x1) and W.
    static func expectedTrainedParameters(inChannels: Int, outChannels: Int, kernel: [Int], groups: Int, dMul: Int) -> Int {
        let area = kernel[0] * kernel[1]
        return (area == 1 ? 0 : inChannels * area * dMul) + outChannels * (inChannels / groups) * dMul
    }
}
