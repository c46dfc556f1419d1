import Dispatch
import DOConvGraphKernels
/// The ops object detectors hold beyond a CNN's: NonZero, TopK, RoiAlign and
/// NonMaxSuppression. Where the spec leaves an order open (ties), the result is
/// onnxruntime's: equal values keep the lower index first.
enum DetectionOps {
    static let kernels: [String: OpKernel] = [
        "NonZero": nonZero,
        "TopK": topK,
        "RoiAlign": roiAlign,
        "NonMaxSuppression": nonMaxSuppression,
    ]

    /// The indices of the non-zero elements, one column each, in row-major order: shape
    /// (rank, count). A scalar counts as a one-element vector (onnxruntime's shape (1, count)).
    static func nonZero(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        let shape = x.rank == 0 ? [1] : x.shape
        let flags: [Bool]
        switch x.storage {
        case .floats(let v): flags = v.map { $0 != 0 }
        case .ints(let v): flags = v.map { $0 != 0 }
        case .opaque: throw ctx.unsupported("non-numeric input")
        }
        let positions = flags.indices.filter { flags[$0] }
        var out = [Int64](repeating: 0, count: try TensorMath.elementCount([shape.count, positions.count], op: ctx.nodeLabel))
        for (column, flat) in positions.enumerated() {
            for (axis, i) in TensorValue.index(of: flat, in: shape).enumerated() { out[axis * positions.count + column] = Int64(i) }
        }
        return [TensorValue(.int64, shape: [shape.count, positions.count], ints: out)]
    }

    /// The k largest (or smallest) elements along `axis` and their indices, sorted; NaN
    /// counts as larger than any number, and equal values keep the lower index first. With
    /// sorted = 0 the order is left to the implementation: this one returns them sorted too.
    static func topK(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        guard x.rank >= 1 else { throw ctx.invalid("X must have rank 1 or more") }
        let axis = try TensorMath.axis(try ctx.int("axis", default: -1), rank: x.rank, op: ctx.nodeLabel)
        let k: Int64
        if ctx.opset < 10 {
            k = try ctx.int("k", default: -1)
        } else {
            let given = try ctx.input(1)
            guard given.count == 1, let value = given.int64s.first else { throw ctx.invalid("K must hold one element, not shape \(given.shape)") }
            k = value
        }
        let size = x.shape[axis]
        guard k >= 0, k <= Int64(size) else { throw ctx.invalid("k \(k) is outside [0, \(size)] on axis \(axis) of \(x.shape)") }
        let largest = try ctx.int("largest", default: 1) != 0
        let (outer, inner) = (try TensorMath.elementCount(x.shape.prefix(axis), op: ctx.nodeLabel),
                              try TensorMath.elementCount(x.shape.dropFirst(axis + 1), op: ctx.nodeLabel))
        let values = x.doubles
        guard values.count == x.count else { throw ctx.unsupported("non-numeric input") }
        var shape = x.shape
        shape[axis] = Int(k)
        var picks = [Int](repeating: 0, count: try TensorMath.allocationCount(shape, op: ctx.nodeLabel))
        var indices = [Int64](repeating: 0, count: picks.count)
        // An empty x has nothing to sort: no loop over an outer run that may be 2^40 long.
        for o in 0..<(values.isEmpty ? 0 : outer) {
            for i in 0..<inner {
                let position = { (j: Int) in (o * size + j) * inner + i }
                let order = (0..<size).sorted { a, b in
                    let (u, v) = (values[position(a)], values[position(b)])
                    if u.isNaN || v.isNaN { return u.isNaN && !v.isNaN ? largest : (!u.isNaN && v.isNaN ? !largest : a < b) }
                    if u != v { return largest ? u > v : u < v }
                    return a < b
                }
                for j in 0..<Int(k) {
                    let target = (o * Int(k) + j) * inner + i
                    picks[target] = position(order[j])
                    indices[target] = Int64(order[j])
                }
            }
        }
        return [ShapeOps.select(x, shape: shape, indices: picks), TensorValue(.int64, shape: shape, ints: indices)]
    }

    /// RoiAlign (opsets 10 and 16): each roi (x1, y1, x2, y2), scaled by spatial_scale, is
    /// cut into output_height x output_width bins; each bin averages (or, mode max, takes the
    /// largest weighted corner of) bilinear samples on a sampling_ratio grid (0: adaptive,
    /// ceil(roi size / bins)). half_pixel shifts by half a pixel; output_half_pixel (the only
    /// behavior before opset 16) does not, and stretches rois smaller than one pixel to one.
    static func roiAlign(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.floatInput(0)
        let rois = try ctx.floatInput(1)
        let batchIndices = try ctx.input(2).int64s
        guard x.rank == 4 else { throw ctx.invalid("X must be 4-D (N, C, H, W), not \(x.shape)") }
        guard rois.rank == 2, rois.shape[1] == 4, batchIndices.count == rois.shape[0] else {
            throw ctx.invalid("rois \(rois.shape) and batch_indices (\(batchIndices.count)) do not describe (num_rois, 4) rois")
        }
        let mode = try ctx.string("mode", default: "avg")
        guard mode == "avg" || mode == "max" else { throw ctx.unsupported("mode '\(mode)'") }
        let averaging = mode == "avg"
        let transform = ctx.opset >= 16 ? try ctx.string("coordinate_transformation_mode", default: "half_pixel") : "output_half_pixel"
        guard transform == "half_pixel" || transform == "output_half_pixel" else { throw ctx.unsupported("coordinate_transformation_mode '\(transform)'") }
        let (pooledH, pooledW) = (Int(try ctx.int("output_height", default: 1)), Int(try ctx.int("output_width", default: 1)))
        let samplingRatio = Int(try ctx.int("sampling_ratio", default: 0))
        let spatialScale = try ctx.float("spatial_scale", default: 1)
        guard pooledH > 0, pooledW > 0, samplingRatio >= 0, spatialScale.isFinite else {
            throw ctx.invalid("output size \(pooledH)x\(pooledW), sampling_ratio \(samplingRatio), spatial_scale \(spatialScale)")
        }
        let (batch, channels, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let count = rois.shape[0]
        let shape = [count, channels, pooledH, pooledW]
        try TensorMath.checkShape(shape, op: ctx.nodeLabel)
        let data = x.doubles
        let boxes = rois.doubles
        let offset = transform == "half_pixel" ? 0.5 : 0
        let total = try TensorMath.elementCount(shape, op: ctx.nodeLabel)
        // An empty X (a zero height or width) has nothing to sample: every bin is 0.
        if data.isEmpty { return [TensorValue(x.type, shape: shape, floats: TensorMath.stored([Double](repeating: 0, count: total), as: x.type))] }
        // Every roi is checked first (errors are thrown here, in roi order); the sampling then
        // runs on all cores, a roi at a time.
        var regions: [RoiRegion] = []
        regions.reserveCapacity(count)
        for r in 0..<count {
            let b = Int(clamping: batchIndices[r])
            guard b >= 0, b < batch else { throw ctx.invalid("batch index \(batchIndices[r]) of roi \(r) is outside [0, \(batch))") }
            // Finite rois of sane size: the sampling grid below is counted from them.
            guard boxes[(r * 4)..<(r * 4 + 4)].allSatisfy({ $0.isFinite && abs($0 * spatialScale) < 1e9 }) else {
                throw ctx.invalid("roi \(r) \(Array(boxes[(r * 4)..<(r * 4 + 4)])) is not finite or too large")
            }
            let startW = boxes[r * 4] * spatialScale - offset
            let startH = boxes[r * 4 + 1] * spatialScale - offset
            var roiW = boxes[r * 4 + 2] * spatialScale - offset - startW
            var roiH = boxes[r * 4 + 3] * spatialScale - offset - startH
            if transform == "output_half_pixel" {
                roiW = max(roiW, 1)
                roiH = max(roiH, 1)
            }
            // An inverted roi (possible with half_pixel) samples nothing: its bins are 0.
            let gridH = samplingRatio > 0 ? samplingRatio : try TensorMath.checkedSize(max(0, (roiH / Double(pooledH)).rounded(.up)), op: ctx.nodeLabel)
            let gridW = samplingRatio > 0 ? samplingRatio : try TensorMath.checkedSize(max(0, (roiW / Double(pooledW)).rounded(.up)), op: ctx.nodeLabel)
            // sampling_ratio is the model's: the grid's size is checked before it is compared.
            guard try TensorMath.checkedProduct(gridH, gridW, op: ctx.nodeLabel) <= 1 << 20 else {
                throw ctx.invalid("roi \(r) needs a \(gridH)x\(gridW) sampling grid")
            }
            regions.append(RoiRegion(batch: b, startH: startH, startW: startW, binH: roiH / Double(pooledH), binW: roiW / Double(pooledW),
                                     gridH: gridH, gridW: gridW))
        }
        let checked = regions
        let out = [Double](unsafeUninitializedCapacity: total) { out, initialized in
            data.withUnsafeBufferPointer { data in
                let workers = ParallelLoop.workers(threads: ctx.threads, items: count, work: total * 16)
                // Each worker writes its own rois' bins; X is only read.
                nonisolated(unsafe) let (data, out) = (data, out)
                DispatchQueue.concurrentPerform(iterations: workers) { worker in
                    var table = SampleTable()
                    var r = worker
                    while r < count {
                        let region = checked[r]
                        table.fill(region, pooledH: pooledH, pooledW: pooledW, height: height, width: width)
                        let samples = Double(max(region.gridH * region.gridW, 1))
                        let bins = pooledH * pooledW
                        for c in 0..<channels {
                            let plane = data.baseAddress! + (region.batch * channels + c) * height * width
                            let target = out.baseAddress! + (r * channels + c) * bins
                            for bin in 0..<bins {
                                let entries = table.range(of: bin)
                                var value = 0.0
                                if averaging {
                                    for k in entries { value += table.weights[k] * plane[table.indices[k]] }
                                    value /= samples
                                } else {
                                    // onnxruntime's max mode: the largest weighted corner value of each sample.
                                    for sample in stride(from: entries.lowerBound, to: entries.upperBound, by: 4) {
                                        var best = table.weights[sample] * plane[table.indices[sample]]
                                        for k in (sample + 1)..<(sample + 4) { best = max(best, table.weights[k] * plane[table.indices[k]]) }
                                        value = sample == entries.lowerBound ? best : max(value, best)
                                    }
                                }
                                target[bin] = value
                            }
                        }
                        r += workers
                    }
                }
            }
            initialized = total
        }
        return [TensorValue(x.type, shape: shape, floats: TensorMath.stored(out, as: x.type))]
    }

    /// Where one roi samples X: its batch image, its corner, its bins' size and its grid.
    struct RoiRegion: Sendable {
        let batch: Int
        let startH: Double, startW: Double
        let binH: Double, binW: Double
        let gridH: Int, gridW: Int
    }

    /// A roi's bilinear samples, four corners each, bin after bin (made once per roi and
    /// read for every channel): the offsets in a plane of X and their weights.
    struct SampleTable {
        var indices: [Int] = []
        var weights: [Double] = []
        private var perBin = 0

        mutating func fill(_ region: RoiRegion, pooledH: Int, pooledW: Int, height: Int, width: Int) {
            indices.removeAll(keepingCapacity: true)
            weights.removeAll(keepingCapacity: true)
            perBin = 4 * region.gridH * region.gridW
            for ph in 0..<pooledH {
                for pw in 0..<pooledW {
                    for iy in 0..<region.gridH {
                        let y = region.startH + Double(ph) * region.binH + (Double(iy) + 0.5) * region.binH / Double(region.gridH)
                        for ix in 0..<region.gridW {
                            let x = region.startW + Double(pw) * region.binW + (Double(ix) + 0.5) * region.binW / Double(region.gridW)
                            DetectionOps.appendBilinearCorners(y: y, x: x, height: height, width: width, indices: &indices, weights: &weights)
                        }
                    }
                }
            }
        }

        /// The entries of bin `bin` (row-major over the pooled output).
        func range(of bin: Int) -> Range<Int> { (bin * perBin)..<((bin + 1) * perBin) }
    }

    /// The four corners (flat index in one H x W plane) and weights of a bilinear sample at
    /// (y, x), appended to the two tables: zero weights when the point lies more than one
    /// pixel outside the map, the border pixel beyond the last row or column.
    static func appendBilinearCorners(y: Double, x: Double, height: Int, width: Int, indices: inout [Int], weights: inout [Double]) {
        if y < -1 || y > Double(height) || x < -1 || x > Double(width) || height == 0 || width == 0 {
            indices.append(contentsOf: [0, 0, 0, 0])
            weights.append(contentsOf: [0, 0, 0, 0])
            return
        }
        var (y, x) = (max(y, 0), max(x, 0))
        var (yLow, xLow) = (Int(y), Int(x))
        let yHigh: Int, xHigh: Int
        if yLow >= height - 1 { yLow = height - 1; yHigh = yLow; y = Double(yLow) } else { yHigh = yLow + 1 }
        if xLow >= width - 1 { xLow = width - 1; xHigh = xLow; x = Double(xLow) } else { xHigh = xLow + 1 }
        let (ly, lx) = (y - Double(yLow), x - Double(xLow))
        let (hy, hx) = (1 - ly, 1 - lx)
        indices.append(yLow * width + xLow); weights.append(hy * hx)
        indices.append(yLow * width + xHigh); weights.append(hy * lx)
        indices.append(yHigh * width + xLow); weights.append(ly * hx)
        indices.append(yHigh * width + xHigh); weights.append(ly * lx)
    }

    /// NonMaxSuppression: per batch and class, boxes by descending score (equal scores:
    /// lower index first), above score_threshold when given; a box is kept unless its IoU
    /// with a kept box exceeds iou_threshold; at most max_output_boxes_per_class (0: none).
    /// Output: (batch, class, box) triples in that order.
    static func nonMaxSuppression(_ ctx: OpContext) throws -> [TensorValue] {
        let boxes = try ctx.floatInput(0)
        let scores = try ctx.floatInput(1)
        guard boxes.rank == 3, boxes.shape[2] == 4, scores.rank == 3, scores.shape[0] == boxes.shape[0], scores.shape[2] == boxes.shape[1] else {
            throw ctx.invalid("boxes \(boxes.shape) and scores \(scores.shape) are not (batches, boxes, 4) and (batches, classes, boxes)")
        }
        func scalar(_ k: Int) throws -> TensorValue? {
            guard let t = ctx.optionalInput(k), t.count > 0 else { return nil }
            guard t.count == 1 else { throw ctx.invalid("input \(k) must hold one element, not shape \(t.shape)") }
            return t
        }
        let maxPerClass = try scalar(2)?.int64s.first ?? 0
        let iouThreshold = try scalar(3)?.doubles.first ?? 0
        let scoreThreshold = try scalar(4)?.doubles.first
        let centerPoint = try ctx.int("center_point_box", default: 0)
        guard centerPoint == 0 || centerPoint == 1 else { throw ctx.invalid("center_point_box \(centerPoint)") }
        guard (0...1).contains(iouThreshold) else { throw ctx.invalid("iou_threshold \(iouThreshold) is outside [0, 1]") }
        let (batches, classes, count) = (scores.shape[0], scores.shape[1], scores.shape[2])
        let b = boxes.doubles
        let s = scores.doubles
        var selected: [Int64] = []
        // No scores, no box to select: no loop over batches or classes that may be 2^40.
        guard maxPerClass > 0, !s.isEmpty else { return [TensorValue(.int64, shape: [0, 3], ints: [])] }
        for batch in 0..<batches {
            // Corners (x_min, y_min, x_max, y_max) of each box of this batch.
            let corners = (0..<count).map { i -> [Double] in
                let v = Array(b[((batch * count + i) * 4)..<((batch * count + i) * 4 + 4)])
                if centerPoint == 1 { return [v[0] - v[2] / 2, v[1] - v[3] / 2, v[0] + v[2] / 2, v[1] + v[3] / 2] }
                return [min(v[1], v[3]), min(v[0], v[2]), max(v[1], v[3]), max(v[0], v[2])]
            }
            for cls in 0..<classes {
                let base = (batch * classes + cls) * count
                let candidates = (0..<count).filter { i in scoreThreshold.map { s[base + i] > $0 } ?? true }
                    .sorted { s[base + $0] != s[base + $1] ? s[base + $0] > s[base + $1] : $0 < $1 }
                var kept: [Int] = []
                for i in candidates {
                    if kept.contains(where: { iou(corners[$0], corners[i]) > iouThreshold }) { continue }
                    if Int64(kept.count) >= maxPerClass { break }
                    kept.append(i)
                    selected += [Int64(batch), Int64(cls), Int64(i)]
                }
            }
        }
        return [TensorValue(.int64, shape: [selected.count / 3, 3], ints: selected)]
    }

    /// Intersection over union of two boxes given as (x_min, y_min, x_max, y_max); 0 when
    /// they do not overlap or either is empty.
    static func iou(_ a: [Double], _ b: [Double]) -> Double {
        let width = min(a[2], b[2]) - max(a[0], b[0])
        let height = min(a[3], b[3]) - max(a[1], b[1])
        guard width > 0, height > 0 else { return 0 }
        let intersection = width * height
        let areaA = (a[2] - a[0]) * (a[3] - a[1])
        let areaB = (b[2] - b[0]) * (b[3] - b[1])
        let union = areaA + areaB - intersection
        guard areaA > 0, areaB > 0, union > 0 else { return 0 }
        return intersection / union
    }
}
