import Foundation
import XCTest

/// What the Swift test targets share: the package's folders, fixture manifests (an empty
/// one fails the test rather than letting a loop over it test nothing), temporary folders,
/// and the built tools run as a user runs them.
public enum PackageTestSupport {
    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    public static let fixtures = packageRoot.appendingPathComponent("fixtures")

    /// The entries of `folder`/MANIFEST.json; throws when there are none.
    public static func manifest(_ folder: URL = fixtures) throws -> [[String: Any]] {
        let url = folder.appendingPathComponent("MANIFEST.json")
        let data = try Data(contentsOf: url)
        let entries = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[String: Any]], "\(url.path) is not a list")
        guard !entries.isEmpty else { throw EmptyManifest(path: url.path) }
        return entries
    }

    /// A manifest without entries: every test looping over it would pass on nothing.
    public struct EmptyManifest: Error, CustomStringConvertible {
        public let path: String
        public var description: String { "\(path) lists no fixture" }
    }

    /// A fresh empty folder, removed at the end of the test.
    public static func temporaryDirectory(_ test: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("doconv-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// What a tool run printed and how it ended.
    public struct Run {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// The subcommand of the `doconv` executable that each tool's name stands for.
    static let subcommands = ["doconv-fold": "fold", "doconv-inspect": "inspect", "verify-equivalence": "verify", "doconv-expand": "expand"]

    /// Runs tool `name` as `doconv SUBCOMMAND` (the executable sits next to the test bundle)
    /// from the package root.
    public static func run(_ name: String, _ arguments: [String]) throws -> Run {
        guard let subcommand = subcommands[name] else { throw CocoaError(.executableNotLoadable) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("doconv")
        process.arguments = [subcommand] + arguments
        process.currentDirectoryURL = packageRoot
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read stderr on another thread so a full pipe cannot stall the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let errors = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errors.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: output, as: UTF8.self), stderr: String(decoding: errors.data, as: UTF8.self))
    }
}
