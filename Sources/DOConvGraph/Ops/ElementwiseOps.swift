import DOConvGraphKernels
import Glibc
import FoundationEssentials

/// Elementwise ops: activations, arithmetic with numpy broadcasting, comparisons, casts,
/// Clip, Where and inference-mode BatchNormalization.
enum ElementwiseOps {
    static let kernels: [String: OpKernel] = {
        var table: [String: OpKernel] = [:]
        // Unary float functions.
        let unary: [String: @Sendable (Double) -> Double] = [
            "Sigmoid": { 1 / (1 + Glibc.exp(-$0)) },
            "Tanh": { Glibc.tanh($0) },
            "Exp": { Glibc.exp($0) },
            "Log": { Glibc.log($0) },
            "Sqrt": { $0.squareRoot() },
            "Reciprocal": { 1 / $0 },
            "Floor": { $0.rounded(.down) },
            "Ceil": { $0.rounded(.up) },
            "Round": { $0.rounded(.toNearestOrEven) },
            "Erf": { Glibc.erf($0) },
            "Softplus": { $0 > 30 ? $0 : Glibc.log1p(Glibc.exp($0)) },
            "Softsign": { $0 / (1 + abs($0)) },
            "Sin": { Glibc.sin($0) },
            "Cos": { Glibc.cos($0) },
            "HardSwish": { $0 * max(0, min(1, $0 / 6 + 0.5)) },
            "Mish": { $0 * Glibc.tanh($0 > 30 ? $0 : Glibc.log1p(Glibc.exp($0))) },
        ]
        for (op, f) in unary {
            table[op] = { ctx in
                let x = try ctx.floatInput(0)
                return [TensorValue(x.type, shape: x.shape, floats: TensorMath.stored(x.doubles.map(f), as: x.type))]
            }
        }
        // Unary ops defined on integers too.
        let signed: [String: @Sendable (Double) -> Double] = ["Neg": { -$0 }, "Abs": { abs($0) }, "Sign": { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }]
        for (op, f) in signed {
            table[op] = { ctx in
                let x = try ctx.input(0)
                switch x.storage {
                case .floats(let v): return [TensorValue(x.type, shape: x.shape, floats: v.map(f))]
                case .ints(let v): return [TensorValue(x.type, shape: x.shape, ints: v.map { TensorMath.wrapped(Int64(f(Double($0))), to: x.type) })]
                case .opaque: throw ctx.invalid("input is not numeric")
                }
            }
        }
        // Relu on every activation of a CNN: a plain loop rather than a closure per element.
        table["Relu"] = { ctx in
            let x = try ctx.input(0)
            switch x.storage {
            case .floats(let v):
                let out = [Double](unsafeUninitializedCapacity: v.count) { buffer, count in
                    v.withUnsafeBufferPointer { source in
                        ParallelLoop.run(ranges: source.count, threads: ctx.threads) { range in
                            for k in range { buffer[k] = max(source[k], 0) }
                        }
                    }
                    count = v.count
                }
                return [TensorValue(x.type, shape: x.shape, floats: out)]
            case .ints(let v): return [TensorValue(x.type, shape: x.shape, ints: v.map { max($0, 0) })]
            case .opaque: throw ctx.invalid("input is not numeric")
            }
        }
        table["LeakyRelu"] = { ctx in
            let alpha = try ctx.float("alpha", default: 0.01)
            return [try mapFloats(ctx) { $0 >= 0 ? $0 : alpha * $0 }]
        }
        table["Elu"] = { ctx in
            let alpha = try ctx.float("alpha", default: 1)
            return [try mapFloats(ctx) { $0 >= 0 ? $0 : alpha * (Glibc.exp($0) - 1) }]
        }
        table["Selu"] = { ctx in
            let alpha = try ctx.float("alpha", default: 1.67326319217681884765625)
            let gamma = try ctx.float("gamma", default: 1.05070102214813232421875)
            return [try mapFloats(ctx) { $0 > 0 ? gamma * $0 : gamma * (alpha * Glibc.exp($0) - alpha) }]
        }
        table["HardSigmoid"] = { ctx in
            let alpha = try ctx.float("alpha", default: 0.2)
            let beta = try ctx.float("beta", default: 0.5)
            return [try mapFloats(ctx) { max(0, min(1, alpha * $0 + beta)) }]
        }
        table["Gelu"] = { ctx in
            let tanhForm = try ctx.string("approximate", default: "none") == "tanh"
            return [try mapFloats(ctx) { x in
                tanhForm ? 0.5 * x * (1 + Glibc.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
                    : 0.5 * x * (1 + Glibc.erf(x / 2.0.squareRoot()))
            }]
        }
        table["Clip"] = clip
        table["Not"] = { ctx in
            let x = try ctx.input(0)
            return [TensorValue(.bool, shape: x.shape, ints: x.int64s.map { $0 == 0 ? 1 : 0 })]
        }

        // Binary arithmetic with broadcasting.
        table["Add"] = { ctx in [try binary(ctx, try ctx.input(0), try ctx.input(1), { $0 + $1 }, { $0 &+ $1 })] }
        table["Sub"] = { ctx in [try binary(ctx, try ctx.input(0), try ctx.input(1), { $0 - $1 }, { $0 &- $1 })] }
        table["Mul"] = { ctx in [try binary(ctx, try ctx.input(0), try ctx.input(1), { $0 * $1 }, { $0 &* $1 })] }
        table["Div"] = { ctx in
            [try binary(ctx, try ctx.input(0), try ctx.input(1), { $0 / $1 }, { a, b in
                guard b != 0 else { throw ctx.invalid("integer division by zero") }
                return a.dividedReportingOverflow(by: b).partialValue // C++ division: toward zero
            })]
        }
        table["Mod"] = { ctx in
            let fmod = try ctx.int("fmod", default: 0) != 0
            return [try binary(ctx, try ctx.input(0), try ctx.input(1), { a, b in
                let r = Glibc.fmod(a, b)
                return fmod || r == 0 || (r < 0) == (b < 0) ? r : r + b
            }, { a, b in
                guard b != 0 else { throw ctx.invalid("integer modulo by zero") }
                let r = a % b
                return fmod || r == 0 || (r < 0) == (b < 0) ? r : r + b
            })]
        }
        table["Pow"] = { ctx in
            let base = try ctx.input(0)
            let exponent = try ctx.input(1)
            let e = exponent.type.isFloat ? exponent : try TensorMath.cast(exponent, to: .double)
            let b = base.type.isFloat ? base : try TensorMath.cast(base, to: .double)
            var result = try binary(ctx, b, TensorValue(b.type, shape: e.shape, floats: e.doubles), { Glibc.pow($0, $1) }, nil)
            if !base.type.isFloat { result = try TensorMath.cast(result, to: base.type) }
            return [result]
        }
        table["PRelu"] = { ctx in
            [try binary(ctx, try ctx.input(0), try ctx.input(1), { $0 >= 0 ? $0 : $0 * $1 }, { $0 >= 0 ? $0 : $0 &* $1 })]
        }
        // Variadic.
        let variadic: [String: (@Sendable (Double, Double) -> Double, (@Sendable (Int64, Int64) throws -> Int64)?)] = [
            "Max": ({ ($0.isNaN || $1.isNaN) ? .nan : max($0, $1) }, { max($0, $1) }),
            "Min": ({ ($0.isNaN || $1.isNaN) ? .nan : min($0, $1) }, { min($0, $1) }),
            "Sum": ({ $0 + $1 }, { $0 &+ $1 }),
            "Mean": ({ $0 + $1 }, nil),
        ]
        for (op, (f, g)) in variadic {
            table[op] = { ctx in
                var result = try ctx.input(0)
                for k in 1..<max(ctx.inputs.count, 1) { result = try binary(ctx, result, try ctx.input(k), f, g) }
                if op == "Mean" {
                    let n = Double(ctx.inputs.count)
                    result = TensorValue(result.type, shape: result.shape, floats: TensorMath.stored(result.doubles.map { $0 / n }, as: result.type))
                }
                return [result]
            }
        }
        // Comparisons and logic: bool results.
        let comparisons: [String: @Sendable (Double, Double) -> Bool] = [
            "Equal": { $0 == $1 }, "Less": { $0 < $1 }, "Greater": { $0 > $1 },
            "LessOrEqual": { $0 <= $1 }, "GreaterOrEqual": { $0 >= $1 },
            "And": { $0 != 0 && $1 != 0 }, "Or": { $0 != 0 || $1 != 0 }, "Xor": { ($0 != 0) != ($1 != 0) },
        ]
        for (op, f) in comparisons {
            table[op] = { ctx in
                let a = try ctx.input(0)
                let b = try ctx.input(1)
                guard let shape = TensorMath.broadcast(a.shape, b.shape) else { throw ctx.invalid("shapes \(a.shape) and \(b.shape) do not broadcast") }
                let ia = try TensorMath.broadcastIndices(from: a.shape, to: shape, op: ctx.nodeLabel)
                let ib = try TensorMath.broadcastIndices(from: b.shape, to: shape, op: ctx.nodeLabel)
                if case .ints(let x) = a.storage, case .ints(let y) = b.storage {
                    // Exact integer comparison (int64 values beyond 2^53 must not collapse).
                    let g: (Int64, Int64) -> Bool
                    switch op {
                    case "Equal": g = { $0 == $1 }
                    case "Less": g = { $0 < $1 }
                    case "Greater": g = { $0 > $1 }
                    case "LessOrEqual": g = { $0 <= $1 }
                    case "GreaterOrEqual": g = { $0 >= $1 }
                    default: g = { f(Double($0), Double($1)) }
                    }
                    return [TensorValue(.bool, shape: shape, ints: (0..<ia.count).map { g(x[ia[$0]], y[ib[$0]]) ? 1 : 0 })]
                }
                let x = a.doubles
                let y = b.doubles
                return [TensorValue(.bool, shape: shape, ints: (0..<ia.count).map { f(x[ia[$0]], y[ib[$0]]) ? 1 : 0 })]
            }
        }
        table["Where"] = { ctx in
            let condition = try ctx.input(0)
            let a = try ctx.input(1)
            let b = try ctx.input(2)
            guard a.type == b.type else { throw ctx.invalid("X and Y differ in type") }
            guard let ab = TensorMath.broadcast(a.shape, b.shape), let shape = TensorMath.broadcast(condition.shape, ab) else {
                throw ctx.invalid("shapes do not broadcast")
            }
            let ic = try TensorMath.broadcastIndices(from: condition.shape, to: shape, op: ctx.nodeLabel)
            let ia = try TensorMath.broadcastIndices(from: a.shape, to: shape, op: ctx.nodeLabel)
            let ib = try TensorMath.broadcastIndices(from: b.shape, to: shape, op: ctx.nodeLabel)
            let c = condition.int64s
            switch (a.storage, b.storage) {
            case (.floats(let x), .floats(let y)):
                return [TensorValue(a.type, shape: shape, floats: (0..<ic.count).map { c[ic[$0]] != 0 ? x[ia[$0]] : y[ib[$0]] })]
            case (.ints(let x), .ints(let y)):
                return [TensorValue(a.type, shape: shape, ints: (0..<ic.count).map { c[ic[$0]] != 0 ? x[ia[$0]] : y[ib[$0]] })]
            default: throw ctx.invalid("non-numeric inputs")
            }
        }

        table["Cast"] = { ctx in
            let to = try ctx.int("to", default: 0)
            guard let type = DataType(rawValue: Int32(truncatingIfNeeded: to)) else { throw ctx.unsupported("cast to data type \(to)") }
            return [try TensorMath.cast(try ctx.input(0), to: type)]
        }
        table["CastLike"] = { ctx in [try TensorMath.cast(try ctx.input(0), to: try ctx.input(1).type)] }
        table["BatchNormalization"] = batchNormalization
        return table
    }()

    static func mapFloats(_ ctx: OpContext, _ f: (Double) -> Double) throws -> TensorValue {
        let x = try ctx.floatInput(0)
        return TensorValue(x.type, shape: x.shape, floats: TensorMath.stored(x.doubles.map(f), as: x.type))
    }

    /// `f` (floats) or `g` (integers) over `a` and `b` broadcast together. Inlined, so that
    /// each op's `f` is compiled into its loop.
    @inline(__always)
    static func binary(_ ctx: OpContext, _ a: TensorValue, _ b: TensorValue, _ f: (Double, Double) -> Double,
                       _ g: ((Int64, Int64) throws -> Int64)?) throws -> TensorValue {
        guard a.type == b.type || (a.type.isFloat && b.type.isFloat) else {
            throw ctx.invalid("inputs have different types \(a.type) and \(b.type)")
        }
        guard let shape = TensorMath.broadcast(a.shape, b.shape) else { throw ctx.invalid("shapes \(a.shape) and \(b.shape) do not broadcast") }
        let same = a.shape == b.shape
        let ia = same ? [] : try TensorMath.broadcastIndices(from: a.shape, to: shape, op: ctx.nodeLabel)
        let ib = same ? [] : try TensorMath.broadcastIndices(from: b.shape, to: shape, op: ctx.nodeLabel)
        switch (a.storage, b.storage) {
        case (.floats(let x), .floats(let y)) where same:
            // Same shapes (a residual Add): element by element, no index arrays.
            let out = [Double](unsafeUninitializedCapacity: x.count) { buffer, count in
                x.withUnsafeBufferPointer { x in
                    y.withUnsafeBufferPointer { y in
                        ParallelLoop.run(ranges: x.count, threads: ctx.threads) { range in
                            for k in range { buffer[k] = f(x[k], y[k]) }
                        }
                    }
                }
                count = x.count
            }
            return TensorValue(a.type, shape: shape, floats: TensorMath.stored(out, as: a.type))
        case (.floats(let x), .floats(let y)):
            var out = [Double](repeating: 0, count: ia.count)
            for k in 0..<ia.count { out[k] = f(x[ia[k]], y[ib[k]]) }
            return TensorValue(a.type, shape: shape, floats: TensorMath.stored(out, as: a.type))
        case (.ints(let x), .ints(let y)):
            guard let g else { throw ctx.unsupported("integer inputs") }
            var out = [Int64](repeating: 0, count: same ? x.count : ia.count)
            for k in out.indices { out[k] = TensorMath.wrapped(try g(x[same ? k : ia[k]], y[same ? k : ib[k]]), to: a.type) }
            return TensorValue(a.type, shape: shape, ints: out)
        default:
            throw ctx.invalid("non-numeric inputs")
        }
    }

    /// Clip: bounds from attributes (opset < 11) or optional inputs.
    static func clip(_ ctx: OpContext) throws -> [TensorValue] {
        let x = try ctx.input(0)
        var low = -Double.infinity
        var high = Double.infinity
        if ctx.opset < 11 {
            low = try ctx.float("min", default: -.infinity)
            high = try ctx.float("max", default: .infinity)
        } else {
            if let m = ctx.optionalInput(1) { guard m.count == 1 else { throw ctx.invalid("min is not a scalar") }; low = m.doubles[0] }
            if let m = ctx.optionalInput(2) { guard m.count == 1 else { throw ctx.invalid("max is not a scalar") }; high = m.doubles[0] }
        }
        switch x.storage {
        case .floats(let v): return [TensorValue(x.type, shape: x.shape, floats: v.map { $0.isNaN ? $0 : min(max($0, low), high) })]
        case .ints(let v):
            let lo = ctx.optionalInput(1)?.int64s.first ?? Int64.min
            let hi = ctx.optionalInput(2)?.int64s.first ?? Int64.max
            return [TensorValue(x.type, shape: x.shape, ints: v.map { min(max($0, lo), hi) })]
        case .opaque: throw ctx.invalid("input is not numeric")
        }
    }

    /// Inference-mode BatchNormalization over axis 1: (x - mean) / sqrt(var + eps) * scale + B.
    static func batchNormalization(_ ctx: OpContext) throws -> [TensorValue] {
        if try ctx.int("training_mode", default: 0) != 0 { throw ctx.unsupported("training_mode=1") }
        if ctx.node.outputs.dropFirst().contains(where: { !$0.isEmpty }) && ctx.opset >= 14 {
            throw ctx.unsupported("running statistics outputs")
        }
        let x = try ctx.floatInput(0)
        let scale = try ctx.input(1).doubles
        let bias = try ctx.input(2).doubles
        let mean = try ctx.input(3).doubles
        let variance = try ctx.input(4).doubles
        let epsilon = try ctx.float("epsilon", default: 1e-5)
        guard x.rank >= 2 else { throw ctx.invalid("input rank \(x.rank) < 2") }
        let channels = x.shape[1]
        guard [scale, bias, mean, variance].allSatisfy({ $0.count == channels }) else {
            throw ctx.invalid("parameters do not have \(channels) elements")
        }
        let inner = try TensorMath.elementCount(x.shape.dropFirst(2), op: ctx.nodeLabel)
        let values = x.doubles
        // Plane by plane, each channel's square root once (the same arithmetic per element).
        let out = [Double](unsafeUninitializedCapacity: values.count) { buffer, count in
            values.withUnsafeBufferPointer { source in
                for plane in 0..<(inner == 0 ? 0 : source.count / inner) {
                    let c = plane % channels
                    let (m, d, s, b) = (mean[c], (variance[c] + epsilon).squareRoot(), scale[c], bias[c])
                    for k in (plane * inner)..<((plane + 1) * inner) { buffer[k] = (source[k] - m) / d * s + b }
                }
            }
            count = values.count
        }
        return [TensorValue(x.type, shape: x.shape, floats: TensorMath.stored(out, as: x.type))]
    }
}
