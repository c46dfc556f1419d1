import DOConvCore
import DOConvFormats
import DOConvGraph
import DOConvVerify
import Foundation
import XCTest

/// A format added the way the seam promises: one type conforming to `ModelFormat` (and one
/// to `VerifiableFormat`), and one line in the registry's list (here, the list a lookup is
/// given). Nothing else of doconv knows it: recognition, option checks, folding, writing
/// and verification all reach it through the protocols alone.
///
/// The toy format: "DOCONV-TOY\n" and one float32 list "d0 d1 ...\n", a 1x1 layer's W.
struct ToyFormat: ModelFormat, VerifiableFormat {
    static let magic = Array("DOCONV-TOY\n".utf8)
    var name: String { "toy" }
    var displayName: String { "toy" }
    var options: Set<FormatOption> { [.kernelSize] }
    var runsInChildProcess: Bool { false }

    func recognizes(_ file: ModelFileSignature) -> Bool { file.head.starts(with: Self.magic) }
    func claimsBySuffix(_ file: ModelFileSignature) -> Bool { file.isPlainFile(endingWith: [".toy"]) }

    func values(_ path: String) throws -> [Float] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return text.split(separator: "\n").dropFirst().first.map { $0.split(separator: " ").compactMap { Float($0) } } ?? []
    }

    func detect(path: String, options: FormatOptions) throws -> Detection {
        let w = try values(path)
        let geometry = DOConvGeometry(inChannels: 1, outChannels: w.count, groups: 1, kernelHeight: 1, kernelWidth: 1, depthMultiplier: 1)
        let layer = try DOConvLayer(layout: .pytorch, geometry: geometry, d: nil, w: w)
        return Detection(layers: [DetectedLayer(name: "toy", form: .kernelComposition, layer: layer, elementType: .float32, stride: [1, 1], dilation: [1, 1])])
    }

    func fold(path: String, options: FormatOptions) throws -> FoldedModel {
        let detection = try detect(path: path, options: options)
        let kernel = detection.layers[0].layer.foldedKernel().values
        var summary = FoldSummary()
        summary.layers.append(FoldedLayer(name: "toy", layout: .pytorch, geometry: detection.layers[0].layer.geometry, elementType: .float32,
                                          stride: [1, 1], dilation: [1, 1], tolerance: 1e-5))
        return FoldedModel(summary: summary) { output in
            try Data((String(decoding: Self.magic, as: UTF8.self) + kernel.map { "\($0)" }.joined(separator: " ") + "\n").utf8)
                .write(to: URL(fileURLWithPath: output))
        }
    }

    func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        var report = VerificationReport(original: original, folded: folded, format: displayName)
        do {
            if try values(original) != values(folded) { report.structure.append("the kernel changed") }
        } catch {
            throw VerifyError("\(error)")
        }
        return report
    }
}

final class ToyFormatTests: XCTestCase {
    func testAFormatAddedThroughTheSeamAloneIsFoundFoldedAndVerified() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("doconv-toy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let input = folder.appendingPathComponent("model.bin").path
        try Data("DOCONV-TOY\n0.5 -1.25 2\n".utf8).write(to: URL(fileURLWithPath: input))

        // The registry with the one new line: found by content, whatever the suffix.
        let formats = FormatRegistry.formats.dropLast() + [ToyFormat()] + FormatRegistry.formats.suffix(1)
        let format = try FormatRegistry.format(of: input, among: Array(formats))
        XCTAssertEqual(format.name, "toy")

        // Its options are its own: the generic check refuses the others.
        var options = FormatOptions()
        options.kernelSizes = ["toy": [1, 1]]
        XCTAssertNoThrow(try options.check(appliesTo: format, path: input))
        options.keepNames = true
        XCTAssertThrowsError(try options.check(appliesTo: format, path: input))

        // Fold and write through the protocol, then verify through the verification protocol.
        let output = folder.appendingPathComponent("folded.bin").path
        let folded = try format.fold(path: input, options: FormatOptions())
        XCTAssertEqual(folded.summary.layers.count, 1)
        try folded.write(to: output)
        let verifiable = try XCTUnwrap(format as? any VerifiableFormat)
        XCTAssertTrue(try verifiable.verify(original: input, folded: output, options: VerifyOptions()).equivalent)
        try Data("DOCONV-TOY\n0.5 -1.25 3\n".utf8).write(to: URL(fileURLWithPath: output))
        XCTAssertFalse(try verifiable.verify(original: input, folded: output, options: VerifyOptions()).equivalent)
    }
}
