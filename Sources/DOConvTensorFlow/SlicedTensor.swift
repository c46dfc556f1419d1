import DOConvCore

/// A tensor TensorFlow saved in slices (a partitioned variable, or a sharding policy that
/// cut it to fit its shards): the full entry lists each slice's extents and holds no bytes;
/// each slice has an entry of its own, keyed by the full key and its extents.
///
/// The slices' keys are matched to the extents without decoding them: the key encodes each
/// extent's start and length with an order-preserving code, so the slice entries, in key
/// order, are the extents sorted by (start, length) dim by dim (a whole dim's length, -1,
/// first). Each slice entry must then have the shape its extents say, the slices must not
/// overlap and must cover the tensor, and each one's bytes must pass their checksum.
extension TensorBundle {
    func assembled(_ entry: BundleEntry, slices stored: [BundleEntry]) throws(TensorFlowError) -> TensorBytes {
        let indexPath = Self.indexPath(prefix: prefix)
        let key = printable(entry.keyBytes)
        func corrupt(_ reason: String) -> TensorFlowError { .corruptIndex(path: indexPath, reason: "sliced tensor '\(key)': \(reason)") }
        guard let width = entry.dtype.byteWidth, let total = entry.rawByteCount else {
            throw .unsupported(path: indexPath, reason: "sliced tensor '\(key)' is \(entry.dtype.name), not stored as raw elements")
        }
        let shape = entry.shape
        // Each slice as (start, length) per dim, resolved against the full shape.
        var extents: [(sortKey: [Int64], ranges: [Range<Int>])] = []
        for slice in entry.slices {
            guard slice.extents.count == shape.count else { throw corrupt("a slice of rank \(slice.extents.count) for shape \(shape)") }
            var ranges: [Range<Int>] = []
            var sortKey: [Int64] = []
            for (d, extent) in slice.extents.enumerated() {
                let start = Int(clamping: extent.start)
                let length = extent.length.map { Int(clamping: $0) } ?? (shape[d] - start)
                guard start >= 0, length >= 0, start <= shape[d], length <= shape[d] - start else {
                    throw corrupt("extent \(extent.start), \(extent.length.map(String.init) ?? "all") does not fit dim \(d) of \(shape)")
                }
                ranges.append(start..<(start + length))
                sortKey += [extent.start, extent.length ?? -1]
            }
            extents.append((sortKey, ranges))
        }
        extents.sort { $0.sortKey.lexicographicallyPrecedes($1.sortKey) }
        guard extents.count == stored.count else { throw corrupt("\(entry.slices.count) slices listed, \(stored.count) stored") }
        var covered = 0
        for (_, ranges) in extents {
            // Each slice fits the tensor, so its count does; their sum may not.
            let (sum, overflow) = covered.addingReportingOverflow(ranges.reduce(1) { $0 * $1.count })
            guard !overflow, sum <= entry.elementCount else { throw corrupt("the slices hold more elements than the tensor's \(entry.elementCount)") }
            covered = sum
        }
        guard covered == entry.elementCount else { throw corrupt("the slices cover \(covered) of its \(entry.elementCount) elements") }
        // As many elements as the tensor and no element twice: every element once.
        var seen = [UInt64](repeating: 0, count: (entry.elementCount + 63) / 64)

        let buffer = AssembledBytes(count: total)
        // Row-major strides of the full tensor, in elements.
        var strides = [Int](repeating: 1, count: shape.count)
        for d in stride(from: shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
        for ((_, ranges), slice) in zip(extents, stored) {
            let lengths = ranges.map(\.count)
            guard slice.dtype == entry.dtype, slice.shape == lengths, !slice.isSliced else {
                throw corrupt("slice '\(printable(slice.keyBytes))' is \(slice.dtype.name) \(slice.shape), expected \(entry.dtype.name) \(lengths)")
            }
            let bytes = try tensorBytes(of: slice)
            try withExtendedLifetime(bytes.owner) { () throws(TensorFlowError) in
                guard let source = bytes.bytes.baseAddress, let target = buffer.bytes.baseAddress else { return }
                let run = (lengths.last ?? 1) * width
                let rows = lengths.dropLast().reduce(1, *)
                // Each row of the slice (all dims but the last) is one contiguous run.
                var index = [Int](repeating: 0, count: max(shape.count - 1, 0))
                let rowShape = Array(lengths.dropLast())
                for row in 0..<rows {
                    var offset = ranges.last?.lowerBound ?? 0
                    for d in index.indices { offset += (ranges[d].lowerBound + index[d]) * strides[d] }
                    for element in offset..<(offset + (lengths.last ?? 1)) {
                        let (word, bit) = (element / 64, UInt64(1) << UInt64(element % 64))
                        guard seen[word] & bit == 0 else { throw corrupt("two slices overlap") }
                        seen[word] |= bit
                    }
                    (target + offset * width).copyMemory(from: source + row * run, byteCount: run)
                    _ = Tensor.advance(&index, within: rowShape)
                }
            }
        }
        return TensorBytes(entry: entry, owner: buffer, path: indexPath, bytes: UnsafeRawBufferPointer(rebasing: buffer.bytes[0..<total]))
    }
}

/// The memory of a tensor put together from its slices.
final class AssembledBytes {
    let bytes: UnsafeMutableRawBufferPointer

    init(count: Int) {
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit { bytes.deallocate() }
}
