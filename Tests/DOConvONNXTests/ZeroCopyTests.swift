import CONNXProto
import CProtobufC
import Foundation
import DOConvFileIO
import XCTest
@testable import DOConvONNX

/// Loading without copying tensor data, the arena, and the sink's kernel copies: each must
/// give exactly what the plain paths give.
final class ZeroCopyTests: XCTestCase {
    /// Packs a message tree back to bytes with protobuf-c.
    func packed(_ proto: UnsafeMutablePointer<Onnx__ModelProto>) -> [UInt8] {
        let size = onnx__model_proto__get_packed_size(proto)
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = onnx__model_proto__pack(proto, buffer.baseAddress)
        }
    }

    /// Every fixture, with even small payloads left in the file, unpacks to the same tree:
    /// packing it gives the file back byte for byte.
    func testSkeletonUnpackGivesTheSameModel() throws {
        var borrowed = 0
        for entry in try TestSupport.manifest() {
            let name = try XCTUnwrap(entry["file"] as? String)
            let mapping = try MappedFile(path: TestSupport.fixture(name))
            let (proto, borrows) = try XCTUnwrap(ModelUnpacker.unpack(mapping, borrowedPayloadSize: 16), name)
            if borrows { borrowed += 1 }
            XCTAssertEqual(packed(proto), Array(mapping.bytes), name)
            Proto.free(proto) // must leave the mapped payloads alone
        }
        XCTAssertGreaterThan(borrowed, 5, "the skeleton path was not taken")
    }

    // MARK: the wire scan gives up on anything unusual

    func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var out: [UInt8] = []
        while value >= 0x80 { out.append(UInt8(value & 0x7F) | 0x80); value >>= 7 }
        return out + [UInt8(value)]
    }

    func field(_ number: UInt64, _ payload: [UInt8]) -> [UInt8] { varint(number << 3 | 2) + varint(UInt64(payload.count)) + payload }

    /// ModelProto { graph { initializer { <tensor fields> } } }.
    func model(tensor: [UInt8]) -> [UInt8] { field(7, field(5, tensor)) }

    func scan(_ bytes: [UInt8]) -> WireSkeleton? {
        bytes.withUnsafeBytes { WireSkeleton(model: $0, minimumPayload: 16) }
    }

    func testWireScanCutsLargePayloadsAndRewritesLengths() throws {
        let payload = [UInt8](repeating: 7, count: 100)
        let tensor = field(8, Array("w".utf8)) + field(9, payload)
        let bytes = model(tensor: tensor)
        let skeleton = try XCTUnwrap(scan(bytes))
        XCTAssertEqual(skeleton.payloads.count, 1)
        XCTAssertEqual(Array(bytes[skeleton.payloads[0]]), payload)
        let token = varint(WireSkeleton.tokenField << 3 | 2) + varint(8) + [0, 0, 0, 0, 0, 0, 0, 0]
        XCTAssertEqual(skeleton.bytes, model(tensor: field(8, Array("w".utf8)) + token))
    }

    func testWireScanGivesUpOnIrregularInput() {
        let payload = [UInt8](repeating: 1, count: 64)
        XCTAssertNil(scan(model(tensor: field(9, [1, 2]))), "nothing large enough to cut")
        XCTAssertNil(scan(model(tensor: field(9, payload) + field(9, payload))), "two raw_data fields")
        XCTAssertNil(scan(model(tensor: field(WireSkeleton.tokenField, [1]) + field(9, payload))), "the token's field number in use")
        XCTAssertNil(scan(Array(model(tensor: field(9, payload)).dropLast())), "truncated")
        XCTAssertNil(scan(varint(7 << 3 | 3) + model(tensor: field(9, payload))), "a group")
    }

    // MARK: memory ownership

    /// Freeing trees and tensor data skips the bytes of lent mappings and frees the rest.
    func testFreeingLeavesBorrowedBytesAlone() throws {
        let mapping = try MappedFile(path: TestSupport.fixture("wide_dmul.ts.onnx"))
        let base = try XCTUnwrap(mapping.bytes.baseAddress)
        BorrowedFiles.shared.add(mapping.bytes)
        defer { BorrowedFiles.shared.remove(mapping.bytes) }
        XCTAssertTrue(BorrowedFiles.shared.contains(base + 10))
        ProtoMemory.free(UnsafeMutableRawPointer(mutating: base + 10)) // would abort if it reached free()
        ProtoMemory.free(malloc(100))
        XCTAssertEqual(mapping.bytes.load(fromByteOffset: 10, as: UInt8.self), Array(mapping.bytes)[10])
    }

    // MARK: the sink

    func testSinkCopiesMappedBytesExactly() throws {
        let folder = try TestSupport.temporaryDirectory(self)
        let sourcePath = folder.appendingPathComponent("source.bin").path
        var generator = SystemRandomNumberGenerator()
        let content = (0..<(1 << 20) + 3).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try Data(content).write(to: URL(fileURLWithPath: sourcePath))
        let mapping = try MappedFile(path: sourcePath)
        let base = try XCTUnwrap(mapping.bytes.baseAddress)
        for sources in [[mapping], []] {
            let target = folder.appendingPathComponent("target-\(sources.count).bin").path
            let file = try AtomicFileWriter(destination: target, sources: sources)
            file.write([1, 2, 3])
            // Large and unaligned (kernel copy), then small (staged), then the rest.
            file.write(UnsafeRawBufferPointer(start: base + 5, count: 300_001))
            file.write(UnsafeRawBufferPointer(start: base + 7, count: 10))
            file.write(UnsafeRawBufferPointer(start: base + 300_006, count: content.count - 300_006))
            XCTAssertEqual(file.offset, 3 + 300_001 + 10 + content.count - 300_006)
            try file.commit()
            let expected = [1, 2, 3] + content[5..<300_006] + content[7..<17] + content[300_006...]
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)), Data(expected))
        }
    }

    /// Folding a model whose tensors stay in the mapped file, then saving over that very
    /// file, must read the old bytes, not the half-written new ones.
    func testFoldingInPlaceReadsTheOriginalBytes() throws {
        let folder = try TestSupport.temporaryDirectory(self)
        for name in ["wide_dmul.ts.onnx", "grouped.dynamo.onnx"] {
            let path = try TestSupport.copyFixture(name, to: folder)
            // Same file name elsewhere, so the external data location written is the same.
            let elsewhere = folder.appendingPathComponent("expected")
            try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
            let expected = elsewhere.appendingPathComponent(name).path
            let first = try ONNXModel.load(path: path)
            _ = try ONNXFolder.fold(first)
            try first.save(to: expected)
            let model = try ONNXModel.load(path: path)
            _ = try ONNXFolder.fold(model)
            try model.save(to: path)
            if FileManager.default.fileExists(atPath: expected + ".data") {
                // In place, the new data goes beside the old under a fresh name, which the
                // model's rename switches to (ModelWriter.save); the old data file is gone.
                let fresh = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(name + ".") && $0.hasSuffix(".data") }
                XCTAssertEqual(fresh.count, 1, name)
                XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".data"), name)
                if let data = fresh.first {
                    XCTAssertEqual(try Data(contentsOf: folder.appendingPathComponent(data)),
                                   try Data(contentsOf: URL(fileURLWithPath: expected + ".data")), name)
                }
            } else {
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), try Data(contentsOf: URL(fileURLWithPath: expected)), name)
            }
        }
    }
}
