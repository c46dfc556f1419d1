import DOConvCore

/// A Conv2D's weights as this run will store them: the kernel dataset of the input (whose
/// values the plan replaces when the layer was folded) and its bias, if it has one.
struct KerasConvWeights {
    /// The layer's group.
    var layer: KerasLayerWeights
    /// The kernel's dataset in the input.
    var kernel: KerasWeight
    /// (M, N, Cin/g, Cout), as stored.
    var kernelShape: [Int]
    var bias: KerasWeight?

    init(layer: KerasLayerWeights, kernel: KerasWeight, kernelShape: [Int], bias: KerasWeight?) {
        self.layer = layer
        self.kernel = kernel
        self.kernelShape = kernelShape
        self.bias = bias
    }

    /// A plain Conv2D's: one 4-D kernel and at most one bias, nothing else (nil otherwise).
    init?(plain layer: KerasLayerWeights) {
        let kernels = layer.weights.filter { $0.role == .kernel && $0.shape.count == 4 }
        let biases = layer.weights.filter { $0.role == .bias && $0.shape.count == 1 }
        guard kernels.count == 1, biases.count <= 1, kernels.count + biases.count == layer.weights.count else { return nil }
        self.init(layer: layer, kernel: kernels[0], kernelShape: kernels[0].shape, bias: biases.first)
    }
}

/// Folds a BatchNormalization into the Conv2D before it: reads its parameters, folds them
/// into the kernel (output channel last, as Keras stores it) and bias with
/// `BatchNormFolding`, probes the result as stored, and records the changes in the plan.
struct KerasBatchNormFuser {
    let path: String
    let file: HDF5File
    let format: KerasFileFormat
    let options: FoldOptions

    /// What one fusion did.
    struct Fusion {
        var record: FusedBatchNorm
        /// Parameters and bytes gained (a new bias) minus those removed (the BatchNormalization's).
        var parameterChange: Int
        var byteChange: Int
    }

    /// Fuses `pair`, whose layers hold the weights `conv` and `batchNorm`; adds the new
    /// kernel and bias to `plan` and drops the BatchNormalization's group.
    func fuse(_ pair: BatchNormPair, conv: KerasConvWeights, batchNorm: KerasLayerWeights, plan: inout KerasRewritePlan) throws(KerasError) -> Fusion {
        func inconsistent(_ reason: String) -> KerasError { .inconsistentLayer(path: path, layer: pair.batchNorm.name, reason: reason) }
        guard conv.kernelShape.count == 4, let channels = conv.kernelShape.last, channels > 0 else {
            throw inconsistent("'\(pair.conv.name)' has no (M, N, Cin/g, Cout) kernel")
        }
        do {
            let kernelSet = try file.dataset(at: conv.kernel.path)
            let kernelType = try kernelSet.elementType() ?? .float32
            // A folded layer's kernel is in the plan already (rounded to its type); a plain one is read.
            let kernel = try plan.replacedDatasets[conv.kernel.path]?.values.doubles ?? kernelSet.doubles()
            guard kernel.count == Tensor.elementCount(of: conv.kernelShape) else {
                throw inconsistent("the kernel of '\(pair.conv.name)' does not hold \(conv.kernelShape)")
            }
            var bias: [Double]?
            var biasType = kernelType
            if let weight = conv.bias {
                let biasSet = try file.dataset(at: weight.path)
                biasType = try biasSet.elementType() ?? kernelType
                bias = try plan.replacedDatasets[weight.path]?.values.doubles ?? biasSet.doubles()
            }
            let folding = try parameters(of: batchNorm, config: pair.batchNorm, channels: channels)
            let fused: (kernel: [Double], bias: [Double])
            do {
                let exact = try folding.fold(kernel: kernel, bias: bias, outputAxis: .last)
                // Verify what will be stored: both rounded to their datasets' element types.
                fused = (try Self.rounded(exact.kernel, to: kernelType), try Self.rounded(exact.bias, to: biasType))
            } catch {
                throw inconsistent("\(error)")
            }
            let relativeError = options.verify
                ? folding.probe(kernel: kernel, bias: bias, fused: fused, outputAxis: .last, patches: options.probePatches, seed: options.seed)
                : nil
            let tolerance = options.tolerance ?? max(kernelType.defaultTolerance, biasType.defaultTolerance)

            plan.replacedDatasets[conv.kernel.path] = (conv.kernelShape, .float64(fused.kernel))
            var parameterChange = 0
            var byteChange = 0
            if let weight = conv.bias {
                plan.replacedDatasets[weight.path] = ([channels], .float64(fused.bias))
            } else {
                try addBias(fused.bias, to: conv, plan: &plan)
                parameterChange += channels
                byteChange += channels * conv.kernel.elementSize
            }
            plan.dropped.insert(batchNorm.groupPath)
            for weight in batchNorm.weights {
                let count = Tensor.elementCount(of: weight.shape) ?? 0
                parameterChange -= count
                byteChange -= count * weight.elementSize
            }
            return Fusion(record: FusedBatchNorm(name: pair.batchNorm.name, relativeError: relativeError, tolerance: tolerance),
                          parameterChange: parameterChange, byteChange: byteChange)
        } catch let error as KerasError {
            throw error
        } catch let error as HDF5Error {
            throw .hdf5(error)
        } catch {
            throw inconsistent("\(error)")
        }
    }

    /// The BatchNormalization's parameters. Keras creates gamma (when `scale`), beta (when
    /// `center`), moving_mean and moving_variance, in that order; a missing gamma is 1 and a
    /// missing beta 0. Legacy files name them; `.weights.h5` keeps only the order.
    private func parameters(of batchNorm: KerasLayerWeights, config: KerasModelConfig.Layer, channels: Int) throws -> BatchNormFolding {
        func inconsistent(_ reason: String) -> KerasError { .inconsistentLayer(path: path, layer: config.name, reason: reason) }
        let roles = (config.scale ?? true ? ["gamma"] : []) + (config.center ?? true ? ["beta"] : []) + ["moving_mean", "moving_variance"]
        guard batchNorm.weights.count == roles.count else {
            throw inconsistent("a BatchNormalization with center \(config.center ?? true) and scale \(config.scale ?? true) has \(roles.count) weights, "
                + "the file holds \(batchNorm.weights.count)")
        }
        let named = roles.map { role in batchNorm.weights.first { KerasWeightsLayout.baseName(of: $0.name) == role } }
        let ordered = named.allSatisfy { $0 != nil } ? named.compactMap { $0 } : batchNorm.weights
        var values: [String: [Double]] = [:]
        for (role, weight) in zip(roles, ordered) {
            let read = try file.dataset(at: weight.path).doubles()
            guard read.count == channels else {
                throw inconsistent("\(role) has \(read.count) values for the \(channels) output channels of the conv before it")
            }
            values[role] = read
        }
        return try BatchNormFolding(
            gamma: values["gamma"] ?? [Double](repeating: 1, count: channels),
            beta: values["beta"] ?? [Double](repeating: 0, count: channels),
            mean: values["moving_mean"] ?? [], variance: values["moving_variance"] ?? [],
            epsilon: config.epsilon ?? 1e-3)
    }

    /// Gives a Conv2D that had no bias one, where a plain Keras Conv2D with `use_bias`
    /// expects it: `vars/1` in `.weights.h5` (creation order: kernel, bias), else a dataset
    /// next to the kernel named like it, listed right after it in `weight_names`.
    private func addBias(_ values: [Double], to conv: KerasConvWeights, plan: inout KerasRewritePlan) throws {
        let parent = Self.parent(of: conv.kernel.path)
        guard format != .weightsH5 else {
            plan.addedDatasets[parent, default: []].append(.init(name: "1", shape: [values.count], values: values, template: conv.kernel.path))
            return
        }
        let groupPath = conv.layer.groupPath
        let current = plan.stringAttributes[groupPath]?["weight_names"]
        var names = current?.values ?? conv.layer.weights.map(\.name)
        guard let k = names.firstIndex(where: { KerasWeightsLayout.baseName(of: $0) == "kernel" }) else {
            throw KerasError.inconsistentLayer(path: path, layer: conv.layer.name, reason: "weight_names lists no kernel")
        }
        // "conv/kernel:0" -> "conv/bias:0": the same folder and suffix as the kernel.
        var components = names[k].split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let last = components.removeLast()
        let biasName = "bias" + last.dropFirst("kernel".count)
        components.append(biasName)
        names.insert(components.joined(separator: "/"), at: k + 1)
        let style = current?.style ?? (try? file.group(at: groupPath).strings("weight_names").style) ?? .utf8Scalar
        plan.stringAttributes[groupPath, default: [:]]["weight_names"] = .init(values: names, style: style)
        plan.addedDatasets[parent, default: []].append(.init(name: biasName, shape: [values.count], values: values, template: conv.kernel.path))
    }

    /// `values` as `type` stores them (float64 as they are; other types through float32,
    /// as libhdf5 then writes them exactly).
    private static func rounded(_ values: [Double], to type: ElementType) throws -> [Double] {
        guard type != .float64 else { return values }
        return try ElementCodec.encode(values.map(Float.init), as: type).withUnsafeBytes { (raw) throws(TensorError) in
            try ElementCodec.decode(raw, as: type, count: values.count)
        }.map(Double.init)
    }

    /// "/a/b/c" -> "/a/b"; "/c" -> "/".
    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
