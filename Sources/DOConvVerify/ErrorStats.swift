/// Where two tensors first disagree beyond the tolerance.
public struct Disagreement: Equatable, Sendable {
    /// Multi-index into the tensor.
    public var index: [Int]
    /// ORIGINAL's (reference) value.
    public var expected: Double
    /// FOLDED's value.
    public var actual: Double
    /// Which run it came from ("input 2 of 3"), when there are several.
    public var context: String?
}

/// Worst absolute and relative differences between a reference and a candidate tensor.
///
/// The relative error is normwise: the worst |actual - expected| divided by the largest
/// |expected| of the tensor (elementwise ratios explode near zero and mean nothing there).
public struct ErrorStats: Equatable, Sendable {
    public var worstAbsolute = 0.0
    /// Largest |expected|.
    public var scale = 0.0
    public var tolerance: Double
    /// The first element whose difference exceeds `tolerance * scale`.
    public var first: Disagreement?
    public var elementCount = 0

    public init(tolerance: Double) {
        self.tolerance = tolerance
    }

    public var worstRelative: Double {
        if worstAbsolute == 0 { return 0 }
        return scale > 0 ? worstAbsolute / scale : worstAbsolute // all-zero reference: absolute
    }

    public var passed: Bool { first == nil }

    /// Compares `actual` against `expected` (same element count, row-major `shape`).
    public static func compare(expected: [Double], actual: [Double], shape: [Int], tolerance: Double, context: String? = nil) -> ErrorStats {
        var stats = ErrorStats(tolerance: tolerance)
        stats.add(expected: expected, actual: actual, shape: shape, context: context)
        return stats
    }

    /// Folds another pair of tensors (another input, say) into the stats.
    public mutating func add(expected: [Double], actual: [Double], shape: [Int], context: String? = nil) {
        precondition(expected.count == actual.count)
        elementCount += expected.count
        var localScale = 0.0
        var firstHere: Int?
        var worst = worstAbsolute
        expected.withUnsafeBufferPointer { expected in
            actual.withUnsafeBufferPointer { actual in
                let count = expected.count
                // Eight values at a time where all sixteen are finite (max is exact, so the
                // result is what the value-by-value loop gives); value by value otherwise.
                typealias Lanes = SIMD8<Double>
                func lanes(_ values: UnsafeBufferPointer<Double>, _ k: Int) -> Lanes {
                    UnsafeRawPointer(values.baseAddress! + k).loadUnaligned(as: Lanes.self)
                }
                func magnitude(_ v: Lanes) -> Lanes {
                    unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt64>.self) & SIMD8(repeating: ~(1 << 63)), to: Lanes.self)
                }
                var k = 0
                var scales = Lanes()
                while k + 8 <= count {
                    let v = lanes(expected, k)
                    scales = pointwiseMax(scales, magnitude(v).replacing(with: 0, where: .!((v - v) .== 0)))
                    k += 8
                }
                localScale = scales.max()
                while k < count {
                    if expected[k].isFinite { localScale = max(localScale, abs(expected[k])) }
                    k += 1
                }
                let limit = tolerance * (localScale > 0 ? localScale : 1)
                func one(_ k: Int) {
                    let (e, a) = (expected[k], actual[k])
                    var delta = abs(a - e)
                    if !(e.isFinite && a.isFinite) {
                        if e.isNaN || a.isNaN {
                            delta = (e.isNaN && a.isNaN) ? 0 : .infinity
                        } else {
                            delta = e == a ? 0 : .infinity
                        }
                    }
                    worst = max(worst, delta)
                    if delta > limit, firstHere == nil { firstHere = k }
                }
                k = 0
                var worstLanes = Lanes(repeating: worst)
                while k + 8 <= count {
                    let (e, a) = (lanes(expected, k), lanes(actual, k))
                    let delta = magnitude(a - e)
                    if all((e - e) .== 0 .& (a - a) .== 0) && (firstHere != nil || !any(delta .> Lanes(repeating: limit))) {
                        worstLanes = pointwiseMax(worstLanes, delta)
                    } else {
                        for j in k..<(k + 8) { one(j) }
                    }
                    k += 8
                }
                worst = max(worst, worstLanes.max())
                while k < count {
                    one(k)
                    k += 1
                }
            }
        }
        worstAbsolute = worst
        scale = max(scale, localScale)
        if first == nil, let k = firstHere {
            first = Disagreement(index: TensorIndex.of(k, in: shape), expected: expected[k], actual: actual[k], context: context)
        }
    }
}

package enum TensorIndex {
    package static func of(_ flat: Int, in shape: [Int]) -> [Int] {
        var rest = flat
        var index = [Int](repeating: 0, count: shape.count)
        for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] > 0 {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
        }
        return index
    }
}
