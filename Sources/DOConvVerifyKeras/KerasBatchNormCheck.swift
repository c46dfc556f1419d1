import DOConvCore
import DOConvKeras
import DOConvVerify

/// `--fuse-bn` on Keras files: a BatchNormalization of ORIGINAL whose weights FOLDED no
/// longer holds was fused into the layer that feeds it. Checked from ORIGINAL's config and
/// weights alone, not with the fold's fuser, so that a mistake there is not repeated here:
/// the conv's kernel scaled per output channel by s = gamma / sqrt(variance + epsilon), its
/// bias (b - mean) * s + beta, and random patches through ORIGINAL's conv then the
/// BatchNormalization against FOLDED's conv, all in float64.
extension KerasEquivalence {
    /// Why a fused pair cannot be checked, or is wrong before any number is compared.
    struct FusionProblem: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    /// ORIGINAL's layout and the config it stores (full-model files), read the way Keras
    /// tells its layouts apart.
    struct WeightFile {
        /// Nil for a file none of the layouts fits (detection has refused it already).
        var format: KerasFileFormat?
        var storedConfig: String?

        init(path: String) throws(HDF5Error) {
            let root = try HDF5File.openReadOnly(path: path).root()
            if root.hasAttribute("model_config"), root.hasChild("model_weights") {
                format = .legacyFullModel
                storedConfig = try root.string("model_config")
            } else if root.hasAttribute("layer_names") {
                format = .legacyWeights
            } else if root.hasChild("layers") {
                format = .weightsH5
            }
        }
    }

    /// A BatchNormalization's parameters in float64 (gamma 1 and beta 0 when the layer has
    /// none: `scale` / `center` false).
    struct BatchNormParameters {
        var gamma: [Double]
        var beta: [Double]
        var mean: [Double]
        var variance: [Double]
        var epsilon: Double

        /// s = gamma / sqrt(variance + epsilon), per channel.
        var scale: [Double] { gamma.indices.map { gamma[$0] / (variance[$0] + epsilon).squareRoot() } }

        /// The bias of the conv that absorbs the layer: (b - mean) * s + beta (b = 0 without one).
        func fusedBias(_ b: [Double]?) -> [Double] {
            let s = scale
            return gamma.indices.map { ((b?[$0] ?? 0) - mean[$0]) * s[$0] + beta[$0] }
        }

        /// The layer in inference mode on one output vector, as Keras defines it (not through
        /// s and the fused bias, so the probe does not share their derivation).
        func apply(_ z: [Double]) -> [Double] {
            z.indices.map { (z[$0] - mean[$0]) / (variance[$0] + epsilon).squareRoot() * gamma[$0] + beta[$0] }
        }
    }

    /// ORIGINAL's conv as a whole: its kernel in OIHW (Cout, Cin/g, M, N) and float64, and a
    /// route that computes it on one patch its own way (D then W, depthwise then pointwise).
    struct ConvReference {
        var kernel: [Double]
        var shape: [Int]
        /// Groups the probe's patches span: each is `groups` slices of Cin/g * M * N values.
        var groups: Int
        var route: ([Double]) -> [Double]
        var description: String
        var elementType: ElementType?
    }

    /// A BatchNormalization fused into the conv before it, as found in the pair of files.
    struct BatchNormFusion {
        /// The layer that took the BatchNormalization, and where its weights are.
        enum Target {
            case conv2D(kernel: Entry)
            case doConv(kernelKey: String, layer: KerasOriginalLayer)
            case separable(SeparablePair)
        }

        var batchNorm: KerasModelConfig.Layer
        var conv: KerasModelConfig.Layer
        var target: Target
        /// Nil when they could not be read (a problem says why).
        var parameters: BatchNormParameters?
        /// ORIGINAL's bias of the conv, if it had one.
        var originalBias: Entry?
        var foldedKernel: Entry?
        var foldedBias: Entry?
        /// What makes the fusion wrong whatever the numbers (an activation in between, ...).
        var problems: [String] = []
        /// Datasets this check accounts for, which the structure check then leaves alone.
        var originalKeys: Set<String> = []
        var foldedKeys: Set<String> = []
    }

    /// Finds, in ORIGINAL's config, each BatchNormalization whose datasets are all missing
    /// from FOLDED, and the conv it must have gone into.
    struct FusionFinder {
        let config: KerasModelConfig
        let format: KerasFileFormat
        let original: [Entry]
        let folded: [Entry]
        /// ORIGINAL key of each DOConv2D's W -> the layer (those the fold folds).
        let doKernels: [String: KerasOriginalLayer]
        let separable: [SeparablePair]
        /// ORIGINAL's D datasets, which FOLDED no longer holds.
        let dropped: Set<String>

        /// The fusions; structural differences for BatchNormalization layers that are gone
        /// with nothing to take them; and the ORIGINAL datasets those lines account for.
        func find() -> (fusions: [BatchNormFusion], structure: [String], handled: Set<String>) {
            let foldedKeys = Set(folded.map(\.key))
            let naming = KerasLayerNaming(format: format, config: config)
            let byLayer = Dictionary(grouping: original.filter { !isOptimizer($0.path) }, by: { naming.layerName(ofKey: $0.key) ?? "" })
            let readers = readerCounts()
            var fusions: [BatchNormFusion] = []
            var structure: [String] = []
            var handled = Set<String>()
            for (k, batchNorm) in config.layers.enumerated() where batchNorm.className == "BatchNormalization" {
                let own = byLayer[batchNorm.name] ?? []
                guard !own.isEmpty, own.allSatisfy({ !foldedKeys.contains($0.key) }) else { continue }
                guard let conv = input(of: batchNorm, at: k) else {
                    structure.append("BatchNormalization '\(batchNorm.name)' is missing from FOLDED, but it reads no single layer it could have been fused into")
                    handled.formUnion(own.map(\.key))
                    continue
                }
                do {
                    var fusion = try fusionInto(conv, of: batchNorm, layers: byLayer)
                    fusion.problems = obstacles(batchNorm, after: conv, readers: readers)
                    do {
                        fusion.parameters = try parameters(of: batchNorm, entries: own, channels: channels(of: fusion.target))
                    } catch {
                        fusion.problems.append(error.message)
                    }
                    fusion.originalKeys.formUnion(own.map(\.key))
                    fusions.append(fusion)
                } catch {
                    structure.append("BatchNormalization '\(batchNorm.name)' is missing from FOLDED, but \(error.message)")
                    handled.formUnion(own.map(\.key))
                }
            }
            return (fusions, structure, handled)
        }

        /// The layer whose output the BatchNormalization at position `k` reads: the one before
        /// it in a Sequential model, else the one its first call's single input comes from.
        private func input(of batchNorm: KerasModelConfig.Layer, at k: Int) -> KerasModelConfig.Layer? {
            if config.isSequential { return k > 0 ? config.layers[k - 1] : nil }
            guard let first = batchNorm.inboundNodes.first, first.count == 1 else { return nil }
            return config.layer(named: first[0].layer)
        }

        /// The fusion of `batchNorm` into `conv`, with the weights of both sides located; a
        /// problem when `conv` is no layer FOLDED can hold as a Conv2D with the scaled kernel.
        private func fusionInto(_ conv: KerasModelConfig.Layer, of batchNorm: KerasModelConfig.Layer,
                                layers: [String: [Entry]]) throws(FusionProblem) -> BatchNormFusion {
            let target: BatchNormFusion.Target
            let originalKernelKey: String
            if conv.className == "Conv2D" {
                let kernels = (layers[conv.name] ?? []).filter { $0.shape.count == 4 && $0.values != nil }
                guard kernels.count == 1 else {
                    throw FusionProblem("the Conv2D '\(conv.name)' before it has \(kernels.count) float 4-D kernels in ORIGINAL, not one")
                }
                target = .conv2D(kernel: kernels[0])
                originalKernelKey = kernels[0].key
            } else if conv.isDOConv {
                guard let (key, layer) = doKernels.first(where: { $0.value.name == conv.name }) else {
                    throw FusionProblem("the DOConv2D '\(conv.name)' before it is not folded into a Conv2D, the only layer that takes a fused BatchNormalization")
                }
                target = .doConv(kernelKey: key, layer: layer)
                originalKernelKey = key
            } else if conv.className == "SeparableConv2D" {
                guard let pair = separable.first(where: { $0.layerName == conv.name }) else {
                    throw FusionProblem("the SeparableConv2D '\(conv.name)' before it is not folded into a Conv2D, the only layer that takes a fused BatchNormalization")
                }
                target = .separable(pair)
                originalKernelKey = pair.depthwise.key
            } else {
                throw FusionProblem("the layer before it, '\(conv.name)', is a \(conv.className), which does not take a fused BatchNormalization")
            }
            var fusion = BatchNormFusion(batchNorm: batchNorm, conv: conv, target: target)
            let cout = channels(of: target)
            let originalByKey = Dictionary(original.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })

            // ORIGINAL's bias: the conv group's one float vector of Cout values.
            let group = parentPath(originalKernelKey)
            if conv.useBias != false {
                let biases = original.filter { parentPath($0.key) == group && $0.shape == [cout] && $0.values != nil }
                if let named = biases.first(where: { baseName($0.key) == "bias" }) {
                    fusion.originalBias = named
                } else if biases.count == 1 {
                    fusion.originalBias = biases[0]
                } else if biases.count > 1 {
                    fusion.problems.append("cannot tell which of \(biases.count) vectors of '\(conv.name)' in ORIGINAL is its bias")
                }
            }
            if let bias = fusion.originalBias { fusion.originalKeys.insert(bias.key) }

            // FOLDED's kernel keeps ORIGINAL's key (plain and DO-Conv kernels) or is the pair's.
            switch target {
            case .conv2D(let kernel):
                fusion.foldedKernel = folded.first { $0.key == kernel.key }
                fusion.originalKeys.insert(kernel.key)
            case .doConv(let key, _):
                fusion.foldedKernel = folded.first { $0.key == key }
            case .separable(let pair):
                fusion.foldedKernel = pair.kernel
            }
            guard let foldedKernel = fusion.foldedKernel else { return fusion }
            fusion.foldedKeys.insert(foldedKernel.key)

            // FOLDED's bias: a vector beside the kernel that is not one of ORIGINAL's datasets
            // kept as they were. It may sit at the key of ORIGINAL's bias, of a dropped D
            // (`.weights.h5` numbers variables by position) or of the pair's kernels.
            var replaceable = dropped
            if let bias = fusion.originalBias { replaceable.insert(bias.key) }
            if case .separable(let pair) = target { replaceable.formUnion(pair.originalKeys) }
            let foldedGroup = parentPath(foldedKernel.key)
            let candidates = folded.filter {
                parentPath($0.key) == foldedGroup && $0.key != foldedKernel.key && $0.shape.count == 1
                    && (originalByKey[$0.key] == nil || replaceable.contains($0.key))
            }
            fusion.foldedBias = candidates.first { $0.key == fusion.originalBias?.key }
                ?? candidates.first { baseName($0.key) == "bias" }
                ?? (candidates.count == 1 ? candidates[0] : nil)
            if let bias = fusion.foldedBias {
                fusion.foldedKeys.insert(bias.key)
                // A new bias at a dropped D's key: that D is accounted for here.
                if dropped.contains(bias.key) { fusion.originalKeys.insert(bias.key) }
            }
            return fusion
        }

        /// Why `batchNorm` cannot have been fused into `conv` whatever the numbers: the
        /// fused conv computes conv-then-normalize only when the normalization acts on the
        /// conv's output channels alone, with the moving statistics, and nothing else reads
        /// the conv's own output.
        private func obstacles(_ batchNorm: KerasModelConfig.Layer, after conv: KerasModelConfig.Layer, readers: [String: Int]) -> [String] {
            var problems: [String] = []
            let bn = "BatchNormalization '\(batchNorm.name)'"
            if !conv.hasLinearActivation {
                problems.append("'\(conv.name)' applies its \(conv.activation ?? "") activation before \(bn), which no kernel scaling reproduces")
            }
            // Keras stores the kernel output channel last whatever the data format; the
            // normalization must act on that channel of the conv's output.
            let axes = batchNorm.axes ?? [-1]
            let channelAxes: Set<[Int]> = conv.dataFormat == "channels_first" ? [[1], [-3]] : [[3], [-1]]
            if !channelAxes.contains(axes) {
                problems.append("\(bn) normalizes axis \(axes), not the output channels of '\(conv.name)'")
            }
            if batchNorm.renorm == true { problems.append("\(bn) uses batch renormalization") }
            if batchNorm.callsInTrainingMode { problems.append("\(bn) is called with training=True (batch statistics, not the moving ones)") }
            if !config.isSequential {
                if batchNorm.inboundNodes.count > 1 { problems.append("\(bn) is called more than once") }
                if conv.inboundNodes.count > 1 { problems.append("'\(conv.name)' is called more than once") }
                if readers[conv.name, default: 0] > 1 {
                    problems.append("the output of '\(conv.name)' is also read by another layer or is a model output, which would then see \(bn)")
                }
            }
            return problems
        }

        /// How many times each layer's output is read, by layer calls and as a model output.
        private func readerCounts() -> [String: Int] {
            var counts: [String: Int] = [:]
            for layer in config.layers {
                for node in layer.inboundNodes {
                    for reference in node { counts[reference.layer, default: 0] += 1 }
                }
            }
            for reference in config.outputs { counts[reference.layer, default: 0] += 1 }
            return counts
        }

        /// The BatchNormalization's parameters. Keras creates gamma (when `scale`), beta (when
        /// `center`), moving_mean and moving_variance in that order: legacy files name them,
        /// `.weights.h5` numbers them.
        private func parameters(of batchNorm: KerasModelConfig.Layer, entries: [Entry], channels: Int) throws(FusionProblem) -> BatchNormParameters {
            let roles = (batchNorm.scale ?? true ? ["gamma"] : []) + (batchNorm.center ?? true ? ["beta"] : []) + ["moving_mean", "moving_variance"]
            guard entries.count == roles.count else {
                throw FusionProblem("BatchNormalization '\(batchNorm.name)' (center \(batchNorm.center ?? true), scale \(batchNorm.scale ?? true)) "
                    + "should hold \(roles.count) datasets, ORIGINAL holds \(entries.count)")
            }
            let named = roles.compactMap { role in entries.first { baseName($0.key) == role } }
            let ordered = named.count == roles.count
                ? named
                : entries.sorted { (Int(baseName($0.key)) ?? Int.max, $0.key) < (Int(baseName($1.key)) ?? Int.max, $1.key) }
            var values: [String: [Double]] = [:]
            for (role, entry) in zip(roles, ordered) {
                guard let read = entry.values, read.count == channels else {
                    throw FusionProblem("\(role) of BatchNormalization '\(batchNorm.name)' ('\(entry.path)') does not hold \(channels) float values, "
                        + "one per output channel of the conv before it")
                }
                values[role] = read
            }
            return BatchNormParameters(gamma: values["gamma"] ?? [Double](repeating: 1, count: channels),
                                       beta: values["beta"] ?? [Double](repeating: 0, count: channels),
                                       mean: values["moving_mean"] ?? [], variance: values["moving_variance"] ?? [],
                                       epsilon: batchNorm.epsilon ?? 1e-3)
        }

        /// The conv's output channels.
        private func channels(of target: BatchNormFusion.Target) -> Int {
            switch target {
            case .conv2D(let kernel): return kernel.shape.last ?? 0
            case .doConv(_, let layer): return layer.outChannels
            case .separable(let pair): return pair.pointwise.shape.last ?? 0
            }
        }
    }

    /// A dataset's name without its folders and TensorFlow's ":N" suffix: "bn/gamma:0" -> "gamma".
    static func baseName(_ key: String) -> String {
        var base = Substring(key.split(separator: "/").last ?? "")
        if let colon = base.lastIndex(of: ":") { base = base[..<colon] }
        return String(base)
    }

    // MARK: - ORIGINAL's conv, three kinds

    /// A plain Conv2D: its stored kernel. The probe's patches cover one group's inputs, the
    /// same for every output channel.
    static func plainReference(_ kernel: Entry) -> ConvReference {
        let (h, w, ci, co) = (kernel.shape[0], kernel.shape[1], kernel.shape[2], kernel.shape[3])
        let stored = oihw(kernel.values ?? [], hwio: kernel.shape)
        let row = ci * h * w
        return ConvReference(kernel: stored, shape: [co, ci, h, w], groups: 1, route: { patch in
            (0..<co).map { o in (0..<row).reduce(0.0) { $0 + stored[o * row + $1] * patch[$1] } }
        }, description: "Conv2D \(h)x\(w)", elementType: kernel.elementType)
    }

    /// A DOConv2D: its kernel recomputed from ORIGINAL's D and W, and feature composition
    /// (each input channel's patch mapped by its D row to Dmul features, combined by W) as
    /// the route (KerasLayerReading.swift).
    static func doConvReference(_ layer: KerasOriginalLayer) -> ConvReference {
        ConvReference(kernel: KerasLayerReading.kernel(of: layer),
                      shape: [layer.outChannels, layer.inChannels / layer.groups, layer.kernelHeight, layer.kernelWidth],
                      groups: layer.groups, route: KerasLayerReading.route(layer), description: layer.description,
                      elementType: layer.kernel.elementType)
    }

    /// A SeparableConv2D folded into a Conv2D: the composed kernel, and depthwise features
    /// then their pointwise combination as the route.
    static func separableReference(_ pair: SeparablePair) -> ConvReference {
        let (h, w, cin, dmul) = (pair.depthwise.shape[0], pair.depthwise.shape[1], pair.depthwise.shape[2], pair.depthwise.shape[3])
        let cout = pair.pointwise.shape[3]
        let mn = h * w
        let dw = pair.depthwise.values ?? []
        let pw = pair.pointwise.values ?? []
        let route: ([Double]) -> [Double] = { patch in
            var features = [Double](repeating: 0, count: cin * dmul)
            for c in 0..<cin { for s in 0..<dmul { for m in 0..<mn { features[c * dmul + s] += dw[(m * cin + c) * dmul + s] * patch[c * mn + m] } } }
            return (0..<cout).map { o in (0..<(cin * dmul)).reduce(0.0) { $0 + pw[$1 * cout + o] * features[$1] } }
        }
        return ConvReference(kernel: separableComposition(pair), shape: [cout, cin, h, w], groups: 1, route: route,
                             description: separableDescription(pair), elementType: pair.depthwise.elementType)
    }

    /// Random patches (Cin, M, N) through ORIGINAL's layer as it computes (`reference.route`)
    /// and through FOLDED's kernel `actual` (OIHW) as a grouped conv.
    static func probe(_ reference: ConvReference, kernel actual: [Double], patches: Int, seed: UInt64, tolerance: Double) -> ErrorStats {
        let (cout, row) = (reference.shape[0], reference.shape.dropFirst().reduce(1, *))
        let outPerGroup = max(cout / max(reference.groups, 1), 1)
        var random = SeededGenerator(seed: seed)
        var stats = ErrorStats(tolerance: tolerance)
        for p in 0..<max(1, patches) {
            let patch = (0..<(reference.groups * row)).map { _ in Double.random(in: -1...1, using: &random) }
            let viaFolded = (0..<cout).map { o in
                let start = (o / outPerGroup) * row
                return (0..<row).reduce(0.0) { $0 + actual[o * row + $1] * patch[start + $1] }
            }
            stats.add(expected: reference.route(patch), actual: viaFolded, shape: [cout], context: "patch \(p + 1)")
        }
        return stats
    }

    // MARK: - The check

    /// FOLDED's kernel against `reference` scaled by s per output channel, its bias against
    /// (b - mean) * s + beta, and random patches through ORIGINAL's conv, its bias and the
    /// BatchNormalization against FOLDED's conv and bias.
    static func checkFusion(_ fusion: BatchNormFusion, reference: ConvReference, options: VerifyOptions) -> LayerResult {
        var result = LayerResult(name: fusion.conv.name, conv: fusion.foldedKernel?.path ?? fusion.conv.name,
                                 description: reference.description + " + BatchNormalization '\(fusion.batchNorm.name)' fused")
        result.problems = fusion.problems
        let (cout, ci, h, w) = (reference.shape[0], reference.shape[1], reference.shape[2], reference.shape[3])
        guard let foldedKernel = fusion.foldedKernel, let kernelValues = foldedKernel.values else {
            result.problems.append("FOLDED has no float kernel for '\(fusion.conv.name)'")
            return result
        }
        guard foldedKernel.shape == [h, w, ci, cout] else {
            result.problems.append("FOLDED's kernel has shape \(foldedKernel.shape), expected (M, N, Cin/g, Cout) = \([h, w, ci, cout])")
            return result
        }
        guard let parameters = fusion.parameters else { return result } // a problem says why
        // Half-precision storage rounds what the fold computed: the looser of the types involved.
        let types = [reference.elementType, foldedKernel.elementType, fusion.foldedBias?.elementType].compactMap { $0 }
        let tolerance = options.tolerance ?? types.map(\.defaultTolerance).max() ?? ElementType.float32.defaultTolerance

        let s = parameters.scale
        let row = ci * h * w
        let expected = reference.kernel.indices.map { reference.kernel[$0] * s[$0 / row] }
        let actual = oihw(kernelValues, hwio: foldedKernel.shape)
        guard expected.count == actual.count, !actual.isEmpty else {
            result.problems.append("ORIGINAL's conv does not hold the \(actual.count) kernel values of FOLDED's")
            return result
        }
        result.kernel = ErrorStats.compare(expected: expected, actual: actual, shape: reference.shape, tolerance: tolerance)

        var b: [Double]?
        if let bias = fusion.originalBias {
            guard let values = bias.values, values.count == cout else {
                result.problems.append("ORIGINAL's bias '\(bias.path)' of '\(fusion.conv.name)' does not hold \(cout) float values")
                return result
            }
            b = values
        }
        guard let foldedBias = fusion.foldedBias, let biasValues = foldedBias.values, biasValues.count == cout else {
            result.problems.append("FOLDED's '\(fusion.conv.name)' has no bias of \(cout) float values, which the fused BatchNormalization '\(fusion.batchNorm.name)' needs")
            return result
        }
        let newBias = biasValues
        result.bias = ErrorStats.compare(expected: parameters.fusedBias(b), actual: newBias, shape: [cout], tolerance: tolerance)

        var random = SeededGenerator(seed: options.seed)
        var probe = ErrorStats(tolerance: tolerance)
        let outPerGroup = max(cout / max(reference.groups, 1), 1)
        for p in 0..<max(1, options.probePatches) {
            let patch = (0..<(reference.groups * row)).map { _ in Double.random(in: -1...1, using: &random) }
            var z = reference.route(patch)
            if let b { for o in z.indices { z[o] += b[o] } }
            let viaOriginal = parameters.apply(z)
            let viaFolded = (0..<cout).map { o in
                let start = (o / outPerGroup) * row
                return (0..<row).reduce(newBias[o]) { $0 + actual[o * row + $1] * patch[start + $1] }
            }
            probe.add(expected: viaOriginal, actual: viaFolded, shape: [cout], context: "patch \(p + 1)")
        }
        result.probe = probe
        return result
    }

    /// A Keras kernel (M, N, Cin/g, Cout) in OIHW (Cout, Cin/g, M, N), float64.
    static func oihw(_ values: [Double], hwio shape: [Int]) -> [Double] {
        guard shape.count == 4, values.count == shape.reduce(1, *) else { return [] }
        let (h, w, ci, co) = (shape[0], shape[1], shape[2], shape[3])
        var result = [Double](repeating: 0, count: values.count)
        for a in 0..<h { for b in 0..<w { for c in 0..<ci { for o in 0..<co {
            result[((o * ci + c) * h + a) * w + b] = values[((a * w + b) * ci + c) * co + o]
        } } } }
        return result
    }
}
