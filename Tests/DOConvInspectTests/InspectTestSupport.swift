import DOConvCore
import DOConvInspect
import DOConvKeras
import DOConvONNX
import Foundation
import XCTest

/// Paths, manifests and the built `doconv-inspect` for the inspect tests.
enum InspectTestSupport {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = packageRoot.appendingPathComponent("fixtures")
    static let kerasFixtures = fixtures.appendingPathComponent("keras_h5")

    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }
    static func kerasFixture(_ name: String) -> String { kerasFixtures.appendingPathComponent(name).path }

    static func manifest(_ url: URL) throws -> [[String: Any]] {
        let data = try Data(contentsOf: url.appendingPathComponent("MANIFEST.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[String: Any]])
    }

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

    /// A fresh empty folder, removed at the end of the test.
    static func temporaryDirectory(_ test: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("doconv-inspect-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The built executable sits next to the test bundle.
    static let executable: URL = {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundle.appendingPathComponent("doconv-inspect")
    }()

    static func inspect(_ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = packageRoot
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read stderr on another thread so a full pipe cannot stall the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errBox.data, as: UTF8.self))
    }

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
