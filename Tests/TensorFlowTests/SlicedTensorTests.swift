@testable import DOConvTensorFlow
import Foundation
import XCTest

/// Sliced tensors (net_dw_sliced, 13 shards cut by TensorFlow's MaxShardSizePolicy): read
/// whole, and a full entry whose slice list disagrees with the slices stored refused.
final class SlicedTensorTests: XCTestCase {
    func bundle() throws -> TensorBundle {
        try TensorBundle(prefix: FixtureTests.folder.appendingPathComponent("net_dw_sliced/ckpt").path)
    }

    /// The sliced entry of the most slices, and its slices as stored.
    func slicedEntry(_ bundle: TensorBundle) throws -> (entry: BundleEntry, stored: [BundleEntry]) {
        let entry = try XCTUnwrap(bundle.entries.filter(\.isSliced).max { $0.slices.count < $1.slices.count })
        XCTAssertGreaterThan(entry.slices.count, 2)
        return (entry, bundle.slices(of: entry))
    }

    func listing(_ slices: [TensorSlice], of entry: BundleEntry) -> BundleEntry {
        BundleEntry(key: entry.keyBytes, dtype: entry.dtype, shape: entry.shape, shardID: entry.shardID, offset: entry.offset,
                    size: entry.size, maskedCRC32C: entry.maskedCRC32C, slices: slices)
    }

    func expectRefused(_ bundle: TensorBundle, _ entry: BundleEntry, _ stored: [BundleEntry], _ phrase: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try bundle.assembled(entry, slices: stored), file: file, line: line) { error in
            guard case .corruptIndex = error as? TensorFlowError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue("\(error)".contains(phrase), "\(error)", file: file, line: line)
        }
    }

    func testTheSlicesPutTogetherAreTheTensor() throws {
        let bundle = try bundle()
        let (entry, stored) = try slicedEntry(bundle)
        let whole = try bundle.tensorBytes(of: entry)
        // Every slice's elements sit where its extents say.
        let width = try XCTUnwrap(entry.dtype.byteWidth)
        let strides = entry.shape.indices.map { d in entry.shape[(d + 1)...].reduce(1, *) }
        let sorted = entry.slices.sorted { a, b in
            a.extents.flatMap { [$0.start, $0.length ?? -1] }.lexicographicallyPrecedes(b.extents.flatMap { [$0.start, $0.length ?? -1] })
        }
        for (slice, part) in zip(sorted, stored) {
            let bytes = try bundle.tensorBytes(of: part).array
            let starts = slice.extents.map { Int($0.start) }
            // The slice's first element.
            let offset = zip(starts, strides).map(*).reduce(0, +) * width
            XCTAssertEqual(Array(whole.array[offset..<(offset + width)]), Array(bytes[0..<width]))
        }
    }

    func testASliceListedTooFewOrTooManyIsRefused() throws {
        let bundle = try bundle()
        let (entry, stored) = try slicedEntry(bundle)
        expectRefused(bundle, listing(Array(entry.slices.dropLast()), of: entry), stored, "slices")
        expectRefused(bundle, listing(entry.slices + [entry.slices[0]], of: entry), stored, "slices")
    }

    func testOverlappingOrMisshapenSlicesAreRefused() throws {
        let bundle = try bundle()
        let (entry, stored) = try slicedEntry(bundle)
        // The first slice made to start one row later: the slices no longer match their stored shapes or cover.
        var shifted = entry.slices
        shifted[0].extents[0].start += 1
        expectRefused(bundle, listing(shifted, of: entry), stored, "sliced tensor")
        // A slice past the tensor's end.
        var past = entry.slices
        past[0].extents[0].start = Int64(entry.shape[0])
        past[0].extents[0].length = 5
        expectRefused(bundle, listing(past, of: entry), stored, "does not fit")
        // The wrong rank.
        var rank = entry.slices
        rank[0].extents.append((0, nil))
        expectRefused(bundle, listing(rank, of: entry), stored, "rank")
    }
}
