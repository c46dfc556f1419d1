import DOConvJSON
import DOConvGraph
import DOConvKeras
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import DOConvVerify

/// A layer's float datasets, found by name (legacy files: `kernel:0`, `D`, `gamma`, ...) or,
/// in `.weights.h5` files that number them, by Keras' creation order.
struct KerasWeightSet {
    let layer: String
    let entries: [KerasEquivalence.Entry]

    /// A dataset's name without folders and TensorFlow's ":N": "conv/kernel:0" -> "kernel".
    static func baseName(_ key: String) -> String {
        var base = Substring(key.split(separator: "/").last ?? "")
        if let colon = base.lastIndex(of: ":") { base = base[..<colon] }
        return String(base)
    }

    /// True when the datasets are numbered (`vars/0..n`), not named.
    var numbered: Bool { entries.allSatisfy { Int(Self.baseName($0.key)) != nil } }

    func of(rank: Int) -> [KerasEquivalence.Entry] { entries.filter { $0.shape.count == rank } }

    /// The dataset called `name`, or else the `position`-th of those of rank `rank` in
    /// creation order (numbered files only).
    func named(_ name: String, rank: Int, position: Int) -> KerasEquivalence.Entry? {
        if let found = entries.first(where: { Self.baseName($0.key) == name }) { return found }
        guard numbered else { return nil }
        let candidates = of(rank: rank)
        return position < candidates.count ? candidates[position] : nil
    }

    /// The single dataset of rank `rank`, if there is exactly one.
    func only(rank: Int) -> KerasEquivalence.Entry? {
        let candidates = of(rank: rank)
        return candidates.count == 1 ? candidates[0] : nil
    }

    /// A dataset's values in float64, checked against the shape the layer expects.
    func values(_ entry: KerasEquivalence.Entry?, role: String, shape expected: [Int]? = nil) throws(KerasGraphError) -> (shape: [Int], values: [Double]) {
        guard let entry else { throw .invalid("layer '\(layer)' has no \(role) dataset") }
        guard let values = entry.values else { throw .invalid("\(role) of layer '\(layer)' ('\(entry.path)') is not a float dataset") }
        if let expected, expected != entry.shape {
            throw .invalid("\(role) of layer '\(layer)' ('\(entry.path)') has shape \(entry.shape), the config implies \(expected)")
        }
        return (entry.shape, values)
    }
}

/// The nodes of one Keras layer call.
struct KerasLayerOps {
    let layer: KerasModelConfig.Layer
    let raw: [String: Any]
    let weights: KerasWeightSet
    let adaptToWeights: Bool
    let call: Int

    /// Layer classes the converter implements.
    static let supportedClasses: Set<String> = [
        "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "DOConv2D", "BatchNormalization", "Dense",
        "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Activation", "ReLU", "Softmax",
        "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Flatten", "Reshape", "ZeroPadding2D",
        "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "MaxPool2D", "AvgPool2D",
    ]

    /// Activation names the converter implements.
    static let supportedActivations: Set<String> = ["linear", "relu", "relu6", "sigmoid", "softmax", "tanh", "swish", "silu", "hard_swish", "hard_silu", "softplus", "elu", "leaky_relu"]

    /// Throws `.unsupported` for a layer (or a setting of one) the converter does not implement.
    static func checkSupported(_ layer: KerasModelConfig.Layer, raw: [String: Any]) throws(KerasGraphError) {
        func unsupported(_ reason: String) -> KerasGraphError { .unsupported(layer: layer.name, className: layer.className, reason: reason) }
        guard supportedClasses.contains(layer.className) else { throw unsupported("not a layer class the converter implements") }
        if let format = raw["data_format"] as? String, format != "channels_last" { throw unsupported("data_format '\(format)'") }
        if let activation = layer.activation, !supportedActivations.contains(activation) { throw unsupported("activation '\(activation)'") }
        if layer.className == "Activation", layer.activation == nil { throw unsupported("no activation name") }
        if let padding = raw["padding"] as? String, !["valid", "same"].contains(padding) { throw unsupported("padding '\(padding)'") }
        if layer.className == "BatchNormalization", layer.renorm == true { throw unsupported("renorm") }
        if layer.callsInTrainingMode { throw unsupported("called with training=True") }
        if layer.className == "ReLU" {
            let threshold = JSONNumber.double(raw["threshold"]) ?? 0
            if threshold != 0 { throw unsupported("threshold \(threshold)") }
        }
    }

    private func unsupported(_ reason: String) -> KerasGraphError { .unsupported(layer: layer.name, className: layer.className, reason: reason) }

    private func ints(_ key: String, default value: [Int]) -> [Int] {
        if let list = JSONNumber.ints(raw[key]) { return list }
        if let n = JSONNumber.int(raw[key]) { return [n, n] }
        return value
    }

    private var padding: String { raw["padding"] as? String ?? "valid" }

    /// Emits the layer's nodes and returns its output.
    func emit(inputs: [KerasTensor], into e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        let single = inputs.count == 1 ? inputs[0] : nil
        func one() throws(KerasGraphError) -> KerasTensor {
            guard let single else { throw .invalid("layer '\(layer.name)' expects one input, call \(call) reads \(inputs.count)") }
            return single
        }
        switch layer.className {
        case "InputLayer", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout":
            // Identities at inference.
            return try one()
        case "Conv2D": return try activate(try conv2D(try one(), &e), &e)
        case "DOConv2D": return try activate(try doConv2D(try one(), &e), &e)
        case "DepthwiseConv2D": return try activate(try depthwise(try one(), &e), &e)
        case "SeparableConv2D": return try activate(try separable(try one(), &e), &e)
        case "Dense": return try activate(try dense(try one(), &e), &e)
        case "BatchNormalization": return try batchNorm(try one(), &e)
        case "MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D": return try pool(try one(), &e)
        case "GlobalAveragePooling2D", "GlobalMaxPooling2D": return try globalPool(try one(), &e)
        case "Activation": return try activate(try one(), &e)
        case "ReLU": return try relu(try one(), &e)
        case "Softmax":
            let x = try one()
            let axis = JSONNumber.int(raw["axis"]) ?? JSONNumber.ints(raw["axis"]).flatMap { $0.count == 1 ? $0[0] : nil } ?? -1
            return try softmax(x, axis: axis, &e)
        case "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum": return try merge(inputs, &e)
        case "Concatenate": return try concatenate(inputs, &e)
        case "Flatten":
            let x = e.kerasLayout(try one())
            return KerasTensor(name: e.node("Flatten", [x.name], hint: layer.name, [("axis", .int(1))]), rank: 2, channelsFirst: false)
        case "Reshape":
            let x = e.kerasLayout(try one())
            guard let target = JSONNumber.ints(raw["target_shape"]) else { throw .invalid("Reshape layer '\(layer.name)' has no target_shape") }
            // 0 keeps the batch dim (ONNX Reshape copies a 0 from the input).
            let shape = e.constant("shape", ints: [0] + target)
            return KerasTensor(name: e.node("Reshape", [x.name, shape], hint: layer.name), rank: target.count + 1, channelsFirst: false)
        case "ZeroPadding2D": return try zeroPadding(try one(), &e)
        default:
            throw unsupported("not a layer class the converter implements")
        }
    }

    // MARK: Convolutions

    /// Conv attributes from the config: strides, dilations, groups, and TF's padding
    /// (ONNX SAME_UPPER is TF 'same': the odd pixel at the end).
    private func convAttributes(groups: Int, kernel: [Int]) -> [(name: String, value: Attribute)] {
        [("kernel_shape", .ints(kernel.map(Int64.init))),
         ("strides", .ints(ints("strides", default: [1, 1]).map(Int64.init))),
         ("dilations", .ints(ints("dilation_rate", default: [1, 1]).map(Int64.init))),
         ("group", .int(Int64(groups))),
         ("auto_pad", .string(padding == "same" ? "SAME_UPPER" : "VALID"))]
    }

    /// A Keras HWIO kernel constant as an OIHW value (a Transpose node the executor runs once).
    private func oihw(_ kernel: (shape: [Int], values: [Double]), _ e: inout GraphEmitter) -> String {
        let hwio = e.constant("\(layer.name).kernel", shape: kernel.shape, values: kernel.values)
        return e.node("Transpose", [hwio], hint: "\(layer.name).oihw", [("perm", .ints([3, 2, 0, 1]))])
    }

    /// The bias: the layer's rank-1 dataset. Its presence, not `use_bias`, decides, because a
    /// BatchNormalization fused into the conv gives the conv a bias the weights-only
    /// config does not declare.
    private func bias(count: Int, position: Int = 0) throws(KerasGraphError) -> (shape: [Int], values: [Double])? {
        let candidates = weights.of(rank: 1)
        if candidates.isEmpty {
            if layer.useBias == true, !adaptToWeights { throw .invalid("layer '\(layer.name)' has use_bias true and no bias dataset") }
            return nil
        }
        let entry = weights.named("bias", rank: 1, position: position) ?? candidates.first
        return try weights.values(entry, role: "bias", shape: [count])
    }

    private func conv(_ x: KerasTensor, kernel: String, bias: (shape: [Int], values: [Double])?, groups: Int, size: [Int], hint: String? = nil,
                      attributes: [(name: String, value: Attribute)]? = nil, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        guard x.rank == 4 else { throw .invalid("layer '\(layer.name)' expects a 4-D input, it reads rank \(x.rank)") }
        let input = e.channelsFirst(x)
        var inputs = [input.name, kernel]
        if let bias { inputs.append(e.constant("\(layer.name).bias", shape: bias.shape, values: bias.values)) }
        let output = e.node("Conv", inputs, hint: hint ?? layer.name, attributes ?? convAttributes(groups: groups, kernel: size))
        return KerasTensor(name: output, rank: 4, channelsFirst: true)
    }

    /// The kernel size from the config, else from the kernel's first two dims.
    private func kernelSize(_ shape: [Int]) -> [Int] { layer.kernelSize ?? Array(shape.prefix(2)) }

    private func conv2D(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        let kernel = try weights.values(weights.named("kernel", rank: 4, position: 0) ?? weights.only(rank: 4), role: "kernel")
        guard kernel.shape.count == 4 else { throw .invalid("kernel of Conv2D layer '\(layer.name)' has shape \(kernel.shape), not (M, N, Cin/g, Cout)") }
        return try conv(x, kernel: oihw(kernel, &e), bias: try bias(count: kernel.shape[3]), groups: layer.groups ?? 1, size: Array(kernel.shape.prefix(2)), &e)
    }

    /// DOConv2D, as the Keras layer computes its kernel (FORMATS.md): Dt = D + I_tiled
    /// (MN, Dmul, Cin), Wr = reshape(W, (Dmul, Cin, Cout/g)), K = reshape(einsum('msi,sio->mio',
    /// Dt, Wr), (M, N, Cin/g, Cout)); a layer with M*N = 1 has no D and K = reshape(W).
    /// A layer whose file holds a 4-D kernel instead is a Conv2D already (a weights-only
    /// FOLDED read with ORIGINAL's config), or a DepthwiseConv2D: a DO-DConv folded so, its
    /// kernel (M, N, Cin, Cout/Cin) with Cin = groups. The last dim tells them apart: a
    /// Conv2D's is Cout, a depthwise kernel's Cout/Cin (a grouped kernel with Cin/g = g has
    /// groups in its third dim too).
    private func doConv2D(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        if let kernel = weights.of(rank: 4).first {
            if let groups = layer.groups, let filters = layer.filters, groups > 1, kernel.shape[2] == groups,
               kernel.shape[3] != filters, kernel.shape[2] * kernel.shape[3] == filters {
                return try depthwise(x, &e)
            }
            return try conv2D(x, e: &e)
        }
        guard let size = layer.kernelSize, size.count == 2 else { throw .invalid("DOConv2D layer '\(layer.name)' has no kernel_size") }
        let (m, n) = (size[0], size[1])
        // Bounded before any product of them is formed (a hostile config must not overflow).
        guard (1...4096).contains(m), (1...4096).contains(n) else { throw .invalid("DOConv2D layer '\(layer.name)' has kernel_size \(size)") }
        let mn = m * n
        let w = try weights.values(weights.named("kernel", rank: 3, position: 0), role: "kernel (W)")
        guard w.shape.count == 3 else { throw .invalid("W of DOConv2D layer '\(layer.name)' has shape \(w.shape), not (Dmul, Cin/g, Cout)") }
        let (dmul, cinPerGroup, cout) = (w.shape[0], w.shape[1], w.shape[2])
        let groups = layer.groups ?? 1
        guard groups > 0, groups <= cout, cout % groups == 0 else { throw .invalid("DOConv2D layer '\(layer.name)': \(cout) filters do not split into \(groups) groups") }
        let cin = cinPerGroup * groups
        let hwioShape: [Int64] = [Int64(m), Int64(n), Int64(cinPerGroup), Int64(cout)]
        let wName = e.constant("\(layer.name).W", shape: w.shape, values: w.values)
        let composed: String
        if mn == 1 {
            guard dmul == 1 else { throw .invalid("DOConv2D layer '\(layer.name)' is 1x1 with D_mul \(dmul): expected 1") }
            composed = e.node("Reshape", [wName, e.constant("shape", ints: hwioShape.map(Int.init))], hint: "\(layer.name).K")
        } else {
            let d = try weights.values(weights.named("D", rank: 3, position: 1), role: "D", shape: [mn, dmul, cin])
            // The fixed identity offset the layer adds to D.
            var identity = [Double](repeating: 0, count: mn * dmul * cin)
            let tiled = mn * (dmul / mn)
            for mm in 0..<mn { for s in 0..<dmul where s < tiled && s % mn == mm { for i in 0..<cin { identity[(mm * dmul + s) * cin + i] = 1 } } }
            let dt = e.node("Add", [e.constant("\(layer.name).D", shape: d.shape, values: d.values),
                                    e.constant("\(layer.name).I", shape: [mn, dmul, cin], values: identity)], hint: "\(layer.name).Dt")
            let wr = e.node("Reshape", [wName, e.constant("shape", ints: [dmul, cin, cout / groups])], hint: "\(layer.name).Wr")
            let einsum = e.node("Einsum", [dt, wr], hint: "\(layer.name).einsum", [("equation", .string("msi,sio->mio"))])
            composed = e.node("Reshape", [einsum, e.constant("shape", ints: hwioShape.map(Int.init))], hint: "\(layer.name).K")
        }
        let kernel = e.node("Transpose", [composed], hint: "\(layer.name).oihw", [("perm", .ints([3, 2, 0, 1]))])
        return try conv(x, kernel: kernel, bias: try bias(count: cout), groups: groups, size: size, &e)
    }

    private func conv2D(_ x: KerasTensor, e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor { try conv2D(x, &e) }

    /// A depthwise kernel (M, N, Cin, mult) as an OIHW Conv weight (Cin * mult, 1, M, N):
    /// output channel c * mult + j reads input channel c, as Keras orders them.
    private func depthwiseKernel(_ kernel: (shape: [Int], values: [Double]), _ e: inout GraphEmitter) -> String {
        let (m, n, cin, mult) = (kernel.shape[0], kernel.shape[1], kernel.shape[2], kernel.shape[3])
        let stored = e.constant("\(layer.name).depthwise", shape: kernel.shape, values: kernel.values)
        let reshaped = e.node("Reshape", [stored, e.constant("shape", ints: [m, n, 1, cin * mult])], hint: "\(layer.name).dw")
        return e.node("Transpose", [reshaped], hint: "\(layer.name).dw.oihw", [("perm", .ints([3, 2, 0, 1]))])
    }

    private func depthwise(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        let kernel = try weights.values(weights.named("depthwise_kernel", rank: 4, position: 0) ?? weights.only(rank: 4), role: "depthwise kernel")
        guard kernel.shape.count == 4 else { throw .invalid("depthwise kernel of layer '\(layer.name)' has shape \(kernel.shape)") }
        let channels = kernel.shape[2] * kernel.shape[3]
        return try conv(x, kernel: depthwiseKernel(kernel, &e), bias: try bias(count: channels), groups: kernel.shape[2],
                        size: Array(kernel.shape.prefix(2)), &e)
    }

    /// SeparableConv2D: the depthwise conv (strides, dilation, padding), then the 1x1
    /// pointwise conv with the bias. A layer whose file holds one 4-D kernel is a Conv2D
    /// already (a weights-only FOLDED with `--fold-separable`, read with ORIGINAL's config).
    private func separable(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        if weights.of(rank: 4).count == 1 { return try conv2D(x, &e) }
        let dw = try weights.values(weights.named("depthwise_kernel", rank: 4, position: 0), role: "depthwise kernel")
        let pw = try weights.values(weights.named("pointwise_kernel", rank: 4, position: 1), role: "pointwise kernel")
        guard dw.shape.count == 4, pw.shape.count == 4, pw.shape[0] == 1, pw.shape[1] == 1, pw.shape[2] == dw.shape[2] * dw.shape[3] else {
            throw .invalid("SeparableConv2D layer '\(layer.name)': kernels \(dw.shape) and \(pw.shape) do not fit together")
        }
        let depthwise = try conv(x, kernel: depthwiseKernel(dw, &e), bias: nil, groups: dw.shape[2], size: Array(dw.shape.prefix(2)),
                                 hint: "\(layer.name).depthwise", &e)
        let pointwise: [(name: String, value: Attribute)] = [("kernel_shape", .ints([1, 1])), ("group", .int(1))]
        return try conv(depthwise, kernel: oihw(pw, &e), bias: try bias(count: pw.shape[3]), groups: 1, size: [1, 1], attributes: pointwise, &e)
    }

    // MARK: Other layers with weights

    private func dense(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        let kernel = try weights.values(weights.named("kernel", rank: 2, position: 0) ?? weights.only(rank: 2), role: "kernel")
        guard kernel.shape.count == 2 else { throw .invalid("kernel of Dense layer '\(layer.name)' has shape \(kernel.shape)") }
        let input = e.kerasLayout(x)
        var output = e.node("MatMul", [input.name, e.constant("\(layer.name).kernel", shape: kernel.shape, values: kernel.values)], hint: layer.name)
        if let bias = try bias(count: kernel.shape[1]) {
            output = e.node("Add", [output, e.constant("\(layer.name).bias", shape: bias.shape, values: bias.values)], hint: "\(layer.name).bias")
        }
        return KerasTensor(name: output, rank: input.rank, channelsFirst: false)
    }

    /// Inference-mode BatchNormalization over the channel axis. Keras creates gamma (when
    /// `scale`), beta (when `center`), moving_mean and moving_variance, in that order.
    private func batchNorm(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        let axes = layer.axes ?? [-1]
        guard axes.count == 1, axes[0] == -1 || axes[0] == x.rank - 1 else { throw unsupported("axis \(axes) is not the channel axis") }
        if weights.entries.isEmpty && adaptToWeights {
            // Fused into the conv before it by the fold (the structure check covers that).
            return x
        }
        let roles = (layer.scale ?? true ? ["gamma"] : []) + (layer.center ?? true ? ["beta"] : []) + ["moving_mean", "moving_variance"]
        let present = weights.of(rank: 1)
        guard present.count == roles.count else {
            throw .invalid("BatchNormalization layer '\(layer.name)' should hold \(roles.count) datasets (\(roles.joined(separator: ", "))), it holds \(present.count)")
        }
        var values: [String: [Double]] = [:]
        var channels: Int?
        for (k, role) in roles.enumerated() {
            let read = try weights.values(weights.named(role, rank: 1, position: k), role: role, shape: channels.map { [$0] })
            channels = read.shape[0]
            values[role] = read.values
        }
        let c = channels ?? 0
        let input = x.rank == 4 ? e.channelsFirst(x) : x
        let inputs = [input.name,
                      e.constant("\(layer.name).gamma", shape: [c], values: values["gamma"] ?? [Double](repeating: 1, count: c)),
                      e.constant("\(layer.name).beta", shape: [c], values: values["beta"] ?? [Double](repeating: 0, count: c)),
                      e.constant("\(layer.name).mean", shape: [c], values: values["moving_mean"] ?? []),
                      e.constant("\(layer.name).variance", shape: [c], values: values["moving_variance"] ?? [])]
        if x.rank != 4 && x.rank != 2 { throw unsupported("input rank \(x.rank)") }
        let output = e.node("BatchNormalization", inputs, hint: layer.name, [("epsilon", .float(layer.epsilon ?? 1e-3))])
        return KerasTensor(name: output, rank: x.rank, channelsFirst: input.channelsFirst)
    }

    // MARK: Pools, shapes, merges

    private func pool(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        guard x.rank == 4 else { throw .invalid("layer '\(layer.name)' expects a 4-D input") }
        let input = e.channelsFirst(x)
        let size = ints("pool_size", default: [2, 2])
        // Keras: strides default to the pool size; 'same' average pools count only real pixels
        // (ONNX count_include_pad 0).
        let strides = raw["strides"] is JSONNull || raw["strides"] == nil ? size : ints("strides", default: size)
        let op = layer.className.hasPrefix("Max") ? "MaxPool" : "AveragePool"
        let output = e.node(op, [input.name], hint: layer.name, [
            ("kernel_shape", .ints(size.map(Int64.init))), ("strides", .ints(strides.map(Int64.init))),
            ("auto_pad", .string(padding == "same" ? "SAME_UPPER" : "VALID")),
        ])
        return KerasTensor(name: output, rank: 4, channelsFirst: true)
    }

    private func globalPool(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        guard x.rank == 4 else { throw .invalid("layer '\(layer.name)' expects a 4-D input") }
        let input = e.channelsFirst(x)
        let op = layer.className == "GlobalAveragePooling2D" ? "GlobalAveragePool" : "GlobalMaxPool"
        let pooled = e.node(op, [input.name], hint: layer.name)
        if JSONNumber.bool(raw["keepdims"]) == true { return KerasTensor(name: pooled, rank: 4, channelsFirst: true) }
        return KerasTensor(name: e.node("Flatten", [pooled], hint: "\(layer.name).flat", [("axis", .int(1))]), rank: 2, channelsFirst: false)
    }

    private func zeroPadding(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        guard x.rank == 4 else { throw .invalid("layer '\(layer.name)' expects a 4-D input") }
        // ((top, bottom), (left, right)), (rows, cols) or one int.
        var pads = [1, 1, 1, 1] // top, bottom, left, right
        if let n = JSONNumber.int(raw["padding"]) {
            pads = [Int](repeating: n, count: 4)
        } else if let pair = raw["padding"] as? [Any], pair.count == 2 {
            let nested = pair.compactMap(JSONNumber.ints)
            if nested.count == 2, nested.allSatisfy({ $0.count == 2 }) {
                pads = [nested[0][0], nested[0][1], nested[1][0], nested[1][1]]
            } else if let flat = JSONNumber.ints(pair) {
                pads = [flat[0], flat[0], flat[1], flat[1]]
            } else {
                throw .invalid("ZeroPadding2D layer '\(layer.name)' has padding \(pair)")
            }
        }
        let input = e.channelsFirst(x)
        let padValues = e.constant("pads", ints: [0, 0, pads[0], pads[2], 0, 0, pads[1], pads[3]])
        return KerasTensor(name: e.node("Pad", [input.name, padValues], hint: layer.name), rank: 4, channelsFirst: true)
    }

    /// The inputs of a merge in one layout: rank-4 ones channels-first; other ranks as
    /// Keras holds them (broadcasting between ranks would differ between layouts).
    private func sameLayout(_ inputs: [KerasTensor], _ e: inout GraphEmitter) throws(KerasGraphError) -> [KerasTensor] {
        guard let rank = inputs.first?.rank, inputs.allSatisfy({ $0.rank == rank }) else { throw unsupported("inputs of different ranks") }
        return inputs.map { rank == 4 ? e.channelsFirst($0) : $0 }
    }

    private func merge(_ inputs: [KerasTensor], _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        guard inputs.count >= 2 else { throw .invalid("layer '\(layer.name)' merges \(inputs.count) input(s)") }
        let aligned = try sameLayout(inputs, &e)
        let op: String
        switch layer.className {
        case "Subtract":
            guard aligned.count == 2 else { throw .invalid("Subtract layer '\(layer.name)' reads \(aligned.count) inputs") }
            op = "Sub"
        case "Multiply": op = "Mul"
        case "Maximum": op = "Max"
        case "Minimum": op = "Min"
        default: op = "Add"
        }
        var output = aligned[0].name
        for next in aligned.dropFirst() { output = e.node(op, [output, next.name], hint: layer.name) }
        if layer.className == "Average" {
            output = e.node("Mul", [output, e.constant("scale", shape: [], values: [1 / Double(aligned.count)])], hint: "\(layer.name).mean")
        }
        return KerasTensor(name: output, rank: aligned[0].rank, channelsFirst: aligned[0].channelsFirst)
    }

    private func concatenate(_ inputs: [KerasTensor], _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        let aligned = try sameLayout(inputs, &e)
        let rank = aligned[0].rank
        var axis = JSONNumber.int(raw["axis"]) ?? -1
        if axis < 0 { axis += rank }
        guard axis >= 0, axis < rank else { throw .invalid("Concatenate layer '\(layer.name)' has axis \(axis) for rank \(rank)") }
        // NHWC axis -> NCHW axis.
        if aligned[0].channelsFirst { axis = [0, 2, 3, 1][axis] }
        let output = e.node("Concat", aligned.map(\.name), hint: layer.name, [("axis", .int(Int64(axis)))])
        return KerasTensor(name: output, rank: rank, channelsFirst: aligned[0].channelsFirst)
    }

    // MARK: Activations

    private func relu(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        let maxValue = JSONNumber.double(raw["max_value"])
        let slope = JSONNumber.double(raw["negative_slope"]) ?? 0
        var output = x.name
        if slope != 0 {
            output = e.node("LeakyRelu", [output], hint: layer.name, [("alpha", .float(slope))])
        } else {
            output = e.node("Relu", [output], hint: layer.name)
        }
        if let maxValue {
            // Keras clips from above after the slope: min(f(x), max_value).
            output = e.node("Min", [output, e.constant("max", shape: [], values: [maxValue])], hint: "\(layer.name).max")
        }
        return KerasTensor(name: output, rank: x.rank, channelsFirst: x.channelsFirst)
    }

    private func softmax(_ x: KerasTensor, axis: Int, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        var a = axis < 0 ? axis + x.rank : axis
        guard a >= 0, a < x.rank else { throw .invalid("layer '\(layer.name)' has softmax axis \(axis) for rank \(x.rank)") }
        if x.channelsFirst { a = [0, 2, 3, 1][a] }
        return KerasTensor(name: e.node("Softmax", [x.name], hint: "\(layer.name).softmax", [("axis", .int(Int64(a)))]), rank: x.rank, channelsFirst: x.channelsFirst)
    }

    /// The layer's `activation` applied to `x` (elementwise, in any layout, except softmax).
    private func activate(_ x: KerasTensor, _ e: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        guard let name = layer.activation, name != "linear" else { return x }
        func unary(_ op: String, _ attributes: [(name: String, value: Attribute)] = []) -> KerasTensor {
            KerasTensor(name: e.node(op, [x.name], hint: "\(layer.name).\(name)", attributes), rank: x.rank, channelsFirst: x.channelsFirst)
        }
        switch name {
        case "relu": return unary("Relu")
        case "relu6":
            let clipped = e.node("Clip", [x.name, e.constant("min", shape: [], values: [0]), e.constant("max", shape: [], values: [6])], hint: "\(layer.name).relu6")
            return KerasTensor(name: clipped, rank: x.rank, channelsFirst: x.channelsFirst)
        case "sigmoid": return unary("Sigmoid")
        case "tanh": return unary("Tanh")
        case "softplus": return unary("Softplus")
        case "elu": return unary("Elu", [("alpha", .float(1))])
        case "leaky_relu": return unary("LeakyRelu", [("alpha", .float(0.2))])
        case "hard_swish", "hard_silu": return unary("HardSwish") // Keras 3 saves hard_swish as hard_silu
        case "swish", "silu":
            let sigmoid = e.node("Sigmoid", [x.name], hint: "\(layer.name).sigmoid")
            return KerasTensor(name: e.node("Mul", [x.name, sigmoid], hint: "\(layer.name).swish"), rank: x.rank, channelsFirst: x.channelsFirst)
        case "softmax": return try softmax(x, axis: -1, &e)
        default: throw unsupported("activation '\(name)'")
        }
    }
}
