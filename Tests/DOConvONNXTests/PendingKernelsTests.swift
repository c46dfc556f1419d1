import Foundation
import DOConvCore
import XCTest
@testable import DOConvONNX

/// Kernels computed while the model is written: the writer must wait for each one where it
/// writes it, and the probes' verdicts must decide the commit.
final class PendingKernelsTests: XCTestCase {
    /// A job still running when the writer reaches its bytes is waited for: the bytes written
    /// are the job's, not what the buffer held before.
    func testWriterWaitsForAJobStillRunning() throws {
        let pending = PendingKernels()
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
        defer { bytes.deallocate() }
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
        let other = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 16)
        defer { other.deallocate() }
        pending.add(filling: bytes) {
            usleep(100_000)
            bytes.initializeMemory(as: UInt8.self, repeating: 7)
            return 0.25
        }
        pending.add(filling: other) { 0.5 }
        pending.waitForBytes(at: UnsafeRawPointer(bytes.baseAddress))
        XCTAssertEqual(Array(bytes), [UInt8](repeating: 7, count: 64))
        pending.waitForBytes(at: UnsafeRawPointer(bytes.baseAddress)) // a second wait returns at once
        pending.waitForBytes(at: nil)
        XCTAssertEqual(pending.finish(), [0.25, 0.5])
    }

    /// Every fixture folded with its kernels deferred gives the bytes and probe errors of the
    /// fold that computes them before writing.
    func testDeferredFoldWritesWhatTheImmediateFoldWrites() throws {
        // One name in two folders: a model with external data names its data file.
        let plainDir = try TestSupport.temporaryDirectory(self), deferredDir = try TestSupport.temporaryDirectory(self)
        var deferredLayers = 0
        for entry in try TestSupport.manifest() {
            let name = try XCTUnwrap(entry["file"] as? String)
            let immediate = try ONNXModel.load(path: TestSupport.fixture(name))
            let summary = try ONNXFolder.fold(immediate)
            let plainPath = plainDir.appendingPathComponent(name).path
            try immediate.save(to: plainPath)

            let model = try ONNXModel.load(path: TestSupport.fixture(name))
            let pending = PendingKernels()
            let fold = try ONNXFolder.foldDeferringKernels(model, options: FoldOptions(), pending: pending)
            deferredLayers += fold.deferredLayers.count
            let deferredPath = deferredDir.appendingPathComponent(name).path
            var complete: FoldSummary?
            let committed = try ModelWriter.save(model, to: deferredPath, pending: pending) {
                complete = fold.finished(pending)
                return true
            }
            XCTAssertTrue(committed, name)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: deferredPath)), try Data(contentsOf: URL(fileURLWithPath: plainPath)), name)
            XCTAssertEqual(complete?.layers.map(\.relativeError), summary.layers.map(\.relativeError), name)
        }
        XCTAssertGreaterThan(deferredLayers, 10, "the deferred path was not taken")
    }

    /// A summary refused once everything is written commits nothing: the existing output
    /// stays, and no temporary file is left.
    func testRefusedSummaryCommitsNothing() throws {
        let dir = try TestSupport.temporaryDirectory(self)
        let output = dir.appendingPathComponent("out.onnx")
        try Data("old".utf8).write(to: output)
        let model = try ONNXModel.load(path: TestSupport.fixture("grouped.ts.onnx"))
        let pending = PendingKernels()
        let fold = try ONNXFolder.foldDeferringKernels(model, options: FoldOptions(), pending: pending)
        XCTAssertFalse(fold.deferredLayers.isEmpty)
        var seen: FoldSummary?
        let committed = try ModelWriter.save(model, to: output.path, pending: pending) {
            seen = fold.finished(pending)
            return false
        }
        XCTAssertFalse(committed)
        XCTAssertTrue(seen?.layers.allSatisfy { $0.relativeError != nil } ?? false)
        XCTAssertEqual(try Data(contentsOf: output), Data("old".utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.onnx"])
    }
}
