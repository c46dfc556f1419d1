import DOConvGraphKernels
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Resize (opsets 10 to 19) and Upsample (7, 9), from the ONNX operator spec: nearest (every
/// `nearest_mode`), linear (n-linear over any axes) and cubic (`cubic_coeff_a`,
/// `exclude_outside`) interpolation, every `coordinate_transformation_mode` (with `roi` and
/// `extrapolation_value` for tf_crop_and_resize), `antialias`, `axes` and
/// `keep_aspect_ratio_policy`, scales or sizes.
///
/// Each resized axis is a list of taps per output coordinate (input positions and weights),
/// applied one axis after another: n-linear and n-cubic interpolation are separable, so this
/// equals the spec's recursive definition.
enum ResizeOps {
    static let kernels: [String: OpKernel] = [
        "Resize": resize,
        "Upsample": resize,
    ]

    /// The interpolation: nearest with its rounding ("legacy" for onnxruntime's Resize-10 /
    /// Upsample rule), linear, or cubic with its coefficient.
    enum Mode: Equatable {
        case nearest(rounding: String)
        case linear
        case cubic(a: Double)
    }

    /// What one Resize node computes, attributes and inputs read.
    struct Plan {
        var mode: Mode
        var transform: String
        var antialias: Bool
        var excludeOutside: Bool
        var extrapolation: Double
        /// Per axis: output size, the scale its coordinates use, and the roi (start, end).
        var outputShape: [Int]
        var scales: [Double]
        var roi: [(start: Double, end: Double)]
        /// Opset 10 and Upsample round nearest positions as onnxruntime's legacy mode does.
        var legacy: Bool
    }

    /// One input position read for an output coordinate, with its weight.
    struct Tap {
        var index: Int
        var weight: Double
    }

    /// Resize and Upsample: the taps of every axis, then nearest selection or separable
    /// interpolation, then the extrapolation value where tf_crop_and_resize leaves the input.
    static func resize(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        let plan = try self.plan(ctx, x)
        try TensorMath.checkShape(plan.outputShape, op: ctx.nodeLabel)
        // An empty output reads nothing: no per-axis tables (whose size is each axis's).
        if plan.outputShape.contains(0) { return [ShapeOps.select(x, shape: plan.outputShape, indices: [])] }
        // Every output dim is positive now, so an empty input axis has nothing to resize from.
        // Refused before any axis's taps: only an input holding values bounds the filter reach
        // (1 / scale) of its other axes, whose dims an empty tensor may make anything.
        if let axis = x.shape.firstIndex(of: 0) { throw ctx.invalid("axis \(axis) of size 0 cannot resize to \(plan.outputShape[axis])") }
        // Per axis and output coordinate: the taps, or nil where tf_crop_and_resize extrapolates.
        var taps: [[[Tap]?]] = []
        for axis in 0..<x.rank {
            taps.append(try axisTaps(ctx, plan, axis: axis, inSize: x.shape[axis]))
        }
        if case .nearest = plan.mode { return [try nearest(x, plan, taps, op: ctx.nodeLabel)] }
        guard case .floats(let values) = x.storage else {
            throw ctx.unsupported("\(plan.mode == .linear ? "linear" : "cubic") interpolation of \(x.type) tensors")
        }
        var data = values
        var shape = x.shape
        for axis in 0..<x.rank where !isIdentity(taps[axis], inSize: x.shape[axis]) {
            (data, shape) = try apply(data, shape: shape, axis: axis, taps: taps[axis], op: ctx.nodeLabel, threads: ctx.threads)
        }
        // Any coordinate outside the roi's source range makes the output the extrapolation value.
        let outside = taps.map { $0.map { $0 == nil } }
        if outside.contains(where: { $0.contains(true) }) {
            for flat in data.indices where TensorValue.index(of: flat, in: shape).enumerated().contains(where: { outside[$0.offset][$0.element] }) {
                data[flat] = plan.extrapolation
            }
        }
        return [TensorValue(x.type, shape: shape, floats: TensorMath.stored(data, as: x.type))]
    }

    /// Reads mode, attributes and the roi / scales / sizes inputs as the node's opset defines them.
    static func plan(_ ctx: OpContext, _ x: TensorValue) throws -> Plan {
        let rank = x.rank
        let legacy = ctx.op == "Upsample" || ctx.opset < 11
        let modeName = try ctx.string("mode", default: "nearest")
        let mode: Mode
        switch modeName {
        case "nearest": mode = .nearest(rounding: legacy ? "legacy" : try ctx.string("nearest_mode", default: "round_prefer_floor"))
        case "linear", "bilinear": mode = .linear
        case "cubic" where !legacy: mode = .cubic(a: try ctx.float("cubic_coeff_a", default: -0.75))
        default: throw ctx.unsupported("mode '\(modeName)'")
        }
        let modern = ctx.op == "Resize" && ctx.opset >= 18
        var axes = Array(0..<rank)
        if modern, let given = try ctx.ints("axes") {
            axes = try given.map { try TensorMath.axis($0, rank: rank, op: ctx.nodeLabel) }
            guard Set(axes).count == axes.count else { throw ctx.invalid("axes \(given) repeat an axis") }
        }
        // Scales or sizes (empty tensors count as absent), and the roi.
        var scaleInput: TensorValue?
        var sizes: [Int]?
        var roiValues: [Double] = []
        if ctx.op == "Upsample" && ctx.opset < 9 {
            guard let given = try ctx.floats("scales") else { throw ctx.invalid("no scales attribute") }
            scaleInput = TensorValue(.float, shape: [given.count], floats: given)
        } else if legacy {
            scaleInput = try ctx.input(1)
        } else {
            if let s = ctx.optionalInput(2), s.count > 0 { scaleInput = s }
            if let s = ctx.optionalInput(3), s.count > 0 { sizes = s.int64s.map { Int(clamping: $0) } }
            if let r = ctx.optionalInput(1), r.count > 0 { roiValues = r.doubles }
        }
        if scaleInput != nil && sizes != nil { throw ctx.invalid("both scales and sizes are given") }

        var outputShape = x.shape
        var scales = [Double](repeating: 1, count: rank)
        if let sizes {
            guard sizes.count == axes.count else { throw ctx.invalid("sizes \(sizes) do not fit \(axes.count) axes") }
            guard sizes.allSatisfy({ $0 >= 0 }) else { throw ctx.invalid("negative sizes \(sizes)") }
            let policy = modern ? try ctx.string("keep_aspect_ratio_policy", default: "stretch") : "stretch"
            let ratios = zip(axes, sizes).map { axis, size in x.shape[axis] == 0 ? 1 : Double(size) / Double(x.shape[axis]) }
            switch policy {
            case "stretch":
                for (k, axis) in axes.enumerated() {
                    outputShape[axis] = sizes[k]
                    scales[axis] = ratios[k]
                }
            case "not_larger", "not_smaller":
                // One scale for every axis; sizes rounded half up (the spec's round_int).
                let scale = (policy == "not_larger" ? ratios.min() : ratios.max()) ?? 1
                for axis in axes {
                    scales[axis] = scale
                    outputShape[axis] = try TensorMath.checkedSize((scale * Double(x.shape[axis])).rounded(.toNearestOrAwayFromZero), op: ctx.nodeLabel)
                }
            default: throw ctx.unsupported("keep_aspect_ratio_policy '\(policy)'")
            }
        } else if let scaleInput {
            let given = scaleInput.doubles
            guard given.count == axes.count else { throw ctx.invalid("scales \(given) do not fit \(axes.count) axes") }
            for (k, axis) in axes.enumerated() {
                let scale = given[k]
                guard scale > 0, scale.isFinite else { throw ctx.invalid("scale \(scale) is not positive") }
                scales[axis] = scale
                // floor(input * scale), in float32 arithmetic when the scales are float32,
                // as onnxruntime computes it (a float32 scale such as 0.7 times 10 is 7, not
                // 6.99999988). The roi does not enter: onnxruntime and onnx's reference
                // implementation both leave it out, whatever the spec's formula says.
                let product = scaleInput.type == .float ? Double(Float(scale) * Float(x.shape[axis])) : scale * Double(x.shape[axis])
                outputShape[axis] = try TensorMath.checkedSize(product.rounded(.down), op: ctx.nodeLabel)
            }
        } else {
            throw ctx.invalid("neither scales nor sizes")
        }

        let transform = legacy ? "asymmetric" : try ctx.string("coordinate_transformation_mode", default: "half_pixel")
        guard transforms.contains(transform) else { throw ctx.unsupported("coordinate_transformation_mode '\(transform)'") }
        var roi = [(start: Double, end: Double)](repeating: (0, 1), count: rank)
        if transform == "tf_crop_and_resize" {
            guard roiValues.count == 2 * axes.count else { throw ctx.invalid("roi \(roiValues) does not fit \(axes.count) axes") }
            for (k, axis) in axes.enumerated() { roi[axis] = (roiValues[k], roiValues[axes.count + k]) }
        }
        let antialias = modern ? try ctx.int("antialias", default: 0) != 0 : false
        let excludeOutside = legacy ? false : try ctx.int("exclude_outside", default: 0) != 0
        return Plan(mode: mode, transform: transform, antialias: antialias, excludeOutside: excludeOutside,
                    extrapolation: try ctx.float("extrapolation_value", default: 0),
                    outputShape: outputShape, scales: scales, roi: roi, legacy: legacy)
    }

    static let transforms: Set<String> = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                                          "tf_half_pixel_for_nn", "tf_crop_and_resize"]

    /// The source coordinate of output coordinate `y` on one axis (the spec's
    /// coordinate_transformation_mode formulas), in the arithmetic of `T`.
    static func sourceCoordinate<T: BinaryFloatingPoint>(_ transform: String, y: T, scale: T, inSize: Int, outSize: Int,
                                                         roi: (start: T, end: T)) -> T {
        let (inLength, outLength) = (T(inSize), T(outSize))
        switch transform {
        case "half_pixel_symmetric":
            let adjustment = outLength / (scale * inLength)
            let offset = inLength / 2 * (1 - adjustment)
            return offset + (y + 0.5) / scale - 0.5
        case "pytorch_half_pixel": return outSize > 1 ? (y + 0.5) / scale - 0.5 : 0
        case "align_corners": return outSize > 1 ? y * (inLength - 1) / (outLength - 1) : 0
        case "asymmetric": return y / scale
        case "tf_half_pixel_for_nn": return (y + 0.5) / scale
        case "tf_crop_and_resize":
            return outSize > 1 ? roi.start * (inLength - 1) + y * (roi.end - roi.start) * (inLength - 1) / (outLength - 1)
                : 0.5 * (roi.start + roi.end) * (inLength - 1)
        default: return (y + 0.5) / scale - 0.5 // half_pixel
        }
    }

    /// The source coordinate nearest mode rounds. Nearest picks an index, so a last-bit
    /// difference can move it a whole pixel: this follows onnxruntime's arithmetic, float32
    /// from the float32 scales (1.5 / 0.6f is 2.5 in float32, 2.4999999 in float64), except
    /// half_pixel_symmetric, whose offset is float32 and the rest float64. The interpolating
    /// modes vary smoothly and use float64 throughout.
    static func nearestSourceCoordinate(_ transform: String, y: Int, scale: Double, inSize: Int, outSize: Int,
                                        roi: (start: Double, end: Double)) -> Double {
        let single = sourceCoordinate(transform, y: Float(y), scale: Float(scale), inSize: inSize, outSize: outSize,
                                      roi: (Float(roi.start), Float(roi.end)))
        guard transform == "half_pixel_symmetric" else { return Double(single) }
        let adjustment = Float(outSize) / (Float(scale) * Float(inSize))
        let offset = Float(inSize) / 2 * (1 - adjustment)
        return Double(Float(Double(offset) + (Double(y) + 0.5) / Double(Float(scale)) - 0.5))
    }

    /// The taps of every output coordinate of `axis` (nil where the coordinate falls outside
    /// the input under tf_crop_and_resize).
    static func axisTaps(_ ctx: OpContext, _ plan: Plan, axis: Int, inSize: Int) throws -> [[Tap]?] {
        let outSize = plan.outputShape[axis]
        let scale = plan.scales[axis]
        if inSize == 0 {
            guard outSize == 0 else { throw ctx.invalid("axis \(axis) of size 0 cannot resize to \(outSize)") }
            return []
        }
        let roi = plan.roi[axis]
        return try (0..<outSize).map { o -> [Tap]? in
            let source: Double
            if case .nearest = plan.mode {
                source = nearestSourceCoordinate(plan.transform, y: o, scale: scale, inSize: inSize, outSize: outSize, roi: roi)
            } else {
                source = sourceCoordinate(plan.transform, y: Double(o), scale: scale, inSize: inSize, outSize: outSize, roi: roi)
            }
            guard source.isFinite, abs(source) < 1e15 else { throw ctx.invalid("output coordinate \(o) of axis \(axis) maps to \(source)") }
            if plan.transform == "tf_crop_and_resize" && (source < 0 || source > Double(inSize - 1)) { return nil }
            switch plan.mode {
            case .nearest(let rounding):
                let i = try nearestIndex(ctx, source, rounding: rounding, downsampling: scale < 1)
                return [Tap(index: min(max(i, 0), inSize - 1), weight: 1)]
            case .linear:
                return filterTaps(source, inSize: inSize, plan: plan, scale: scale, support: 1) { max(0, 1 - abs($0)) }
            case .cubic(let a):
                return filterTaps(source, inSize: inSize, plan: plan, scale: scale, support: 2) { cubic($0, a: a) }
            }
        }
    }

    /// The input index nearest_mode picks for `source`. The legacy mode (Resize-10,
    /// Upsample) truncates when upsampling and rounds up when downsampling, as onnxruntime does.
    static func nearestIndex(_ ctx: OpContext, _ source: Double, rounding: String, downsampling: Bool) throws -> Int {
        let value: Double
        switch rounding {
        case "round_prefer_floor": value = source - source.rounded(.down) == 0.5 ? source.rounded(.down) : source.rounded(.toNearestOrAwayFromZero)
        case "round_prefer_ceil": value = source.rounded(.toNearestOrAwayFromZero)
        case "floor": value = source.rounded(.down)
        case "ceil": value = source.rounded(.up)
        case "legacy": value = downsampling ? source.rounded(.up) : source.rounded(.towardZero)
        default: throw ctx.unsupported("nearest_mode '\(rounding)'")
        }
        // A position, not a size (it may be negative, and is clamped after): axisTaps has
        // bounded the source coordinate below 1e15.
        return Int(value)
    }

    /// Keys' cubic convolution kernel with coefficient `a`.
    static func cubic(_ t: Double, a: Double) -> Double {
        let x = abs(t)
        if x <= 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return ((x - 5) * x + 8) * x * a - 4 * a }
        return 0
    }

    /// Taps of an interpolation filter of half-width `support` centred on `source`. With
    /// antialias and a downscale, the filter is stretched by 1 / scale. Positions outside the
    /// input read the nearest edge, or are dropped with exclude_outside; weights are
    /// normalized to sum 1.
    static func filterTaps(_ source: Double, inSize: Int, plan: Plan, scale: Double, support: Double,
                           _ filter: (Double) -> Double) -> [Tap] {
        let stretch = plan.antialias ? min(scale, 1) : 1
        let reach = support / stretch
        // Positions, not sizes, so not checkedSize's: the source is below 1e15 (axisTaps) and
        // the reach at most 4 x the axis's dim of an input holding values (resize), so both fit.
        let first = Int((source - reach).rounded(.down)) + 1
        let last = Int((source + reach).rounded(.down))
        var taps: [Tap] = []
        var total = 0.0
        for position in first...max(first, last) {
            let inside = position >= 0 && position < inSize
            if plan.excludeOutside && !inside { continue }
            let weight = filter((Double(position) - source) * stretch)
            if weight == 0 { continue }
            total += weight
            taps.append(Tap(index: min(max(position, 0), inSize - 1), weight: weight))
        }
        guard total != 0 else { return taps }
        return taps.map { Tap(index: $0.index, weight: $0.weight / total) }
    }

    /// True when the taps copy the axis unchanged.
    static func isIdentity(_ taps: [[Tap]?], inSize: Int) -> Bool {
        taps.count == inSize && taps.enumerated().allSatisfy { o, t in t.map { $0.count == 1 && $0[0].index == o && $0[0].weight == 1 } ?? false }
    }

    /// Interpolates `data` (of `shape`) along `axis` by `taps`, the outer slices spread over
    /// `threads` cores. Each output is 0 plus its taps' products in order, whatever the split.
    static func apply(_ data: [Double], shape: [Int], axis: Int, taps: [[Tap]?], op: String, threads: Int) throws -> ([Double], [Int]) {
        let outer = try TensorMath.elementCount(shape.prefix(axis), op: op)
        let inner = try TensorMath.elementCount(shape.dropFirst(axis + 1), op: op)
        let (n, m) = (shape[axis], taps.count)
        // Axis by axis, an intermediate (upsampled along one axis before another shrinks) may
        // be larger than both the input and the output: checked before allocating.
        let count = try TensorMath.allocationCount([outer, m, inner], op: op)
        // The taps flattened (output j's are first[j]..<first[j + 1]): the nested arrays cost
        // a retain and release per output along the last axis, most of an upsampling's time.
        var first = [0], flat: [Tap] = []
        for j in 0..<m {
            flat.append(contentsOf: taps[j] ?? [])
            first.append(flat.count)
        }
        var outShape = shape
        outShape[axis] = m
        var out = [Double](repeating: 0, count: count)
        guard count > 0 else { return (out, outShape) }
        let workers = ParallelLoop.workers(threads: threads, items: outer, work: count * max(1, flat.count / max(1, m)))
        data.withUnsafeBufferPointer { data in
            flat.withUnsafeBufferPointer { flat in
                first.withUnsafeBufferPointer { first in
                    out.withUnsafeMutableBufferPointer { out in
                        // Each outer slice writes its own outputs; data is only read.
                        ParallelLoop.run(outer, workers: workers) { o in
                            for j in 0..<m {
                                let target = out.baseAddress! + (o * m + j) * inner
                                for t in first[j]..<first[j + 1] {
                                    let (source, weight) = (data.baseAddress! + (o * n + flat[t].index) * inner, flat[t].weight)
                                    for i in 0..<inner { target[i] += weight * source[i] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (out, outShape)
    }

    /// Nearest: a selection of input elements (any element type), extrapolated positions filled.
    static func nearest(_ x: TensorValue, _ plan: Plan, _ taps: [[[Tap]?]], op: String) throws -> TensorValue {
        let shape = plan.outputShape
        let strides = try TensorMath.strides(of: x.shape, op: op)
        let total = try TensorMath.elementCount(shape, op: op)
        var indices = [Int](repeating: 0, count: total)
        for flat in 0..<total {
            var source = 0
            for (axis, o) in TensorValue.index(of: flat, in: shape).enumerated() {
                guard let tap = taps[axis][o]?.first else { source = -1; break }
                source += tap.index * strides[axis]
            }
            indices[flat] = source
        }
        return ShapeOps.select(x, shape: shape, indices: indices, fill: plan.extrapolation)
    }
}
