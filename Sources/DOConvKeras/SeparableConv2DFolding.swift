import DOConvCore

/// Folds a Keras SeparableConv2D whose depth_multiplier is at least M*N (a DO-Conv in
/// feature-composition form) into a Conv2D kernel:
/// K[m, n, c, o] = sum_s depthwise[m, n, c, s] * pointwise[0, 0, c * dm + s, o].
struct SeparableConv2DFolding {
    let path: String
    let file: HDF5File

    struct Result {
        var record: FoldedLayer
        var plan: KerasRewritePlan
        var removedParameters: Int
        /// The Conv2D it became, for a BatchNormalization fusion after it.
        var conv: KerasConvWeights
    }

    /// A foldable separable layer read from the file.
    struct Loaded {
        var detected: DetectedLayer
        var depthwise: KerasWeight
        var pointwise: KerasWeight
        var bias: KerasWeight?
    }

    /// The layer as a DO-Conv in feature-composition form, nil when it is not foldable
    /// (depth_multiplier < M*N without --fold-separable: reported in `rejected`).
    func load(_ weights: KerasLayerWeights, config: KerasModelConfig.Layer, options: FoldOptions,
              rejected: inout [RejectedCandidate]) throws(KerasError) -> Loaded? {
        guard let size = config.kernelSize, size.count == 2, let multiplier = config.separableDepthMultiplier else { return nil }
        let (m, n) = (size[0], size[1])
        guard config.isFoldableSeparable(foldSeparable: options.foldSeparable) else {
            rejected.append(RejectedCandidate(name: config.name, reason: "SeparableConv2D with depth_multiplier \(multiplier) < \(m)x\(n): "
                + "folding would raise its MACs (--fold-separable)"))
            return nil
        }
        if let reason = options.selection.refusal(of: config.name) {
            rejected.append(RejectedCandidate(name: config.name, reason: reason, isDOConvLayer: true))
            return nil
        }
        func inconsistent(_ reason: String) -> KerasError { .inconsistentLayer(path: path, layer: config.name, reason: reason) }
        // Legacy files name the weights; .weights.h5 keeps them in creation order.
        let depthwise = weights.weights.first { $0.name.contains("depthwise_kernel") } ?? weights.weights.first
        let pointwise = weights.weights.first { $0.name.contains("pointwise_kernel") } ?? (weights.weights.count > 1 ? weights.weights[1] : nil)
        let bias = weights.weights.first { $0.name.contains("bias") } ?? (weights.weights.count > 2 ? weights.weights[2] : nil)
        guard let depthwise, let pointwise, depthwise.shape.count == 4, pointwise.shape.count == 4,
              depthwise.shape[0] == m, depthwise.shape[1] == n, depthwise.shape[3] == multiplier,
              pointwise.shape[0] == 1, pointwise.shape[1] == 1, pointwise.shape[2] == depthwise.shape[2] * multiplier else {
            throw inconsistent("the depthwise and pointwise kernels do not fit a \(m)x\(n) SeparableConv2D with depth_multiplier \(multiplier)")
        }
        let (cin, cout) = (depthwise.shape[2], pointwise.shape[3])
        let geometry = DOConvGeometry(inChannels: cin, outChannels: cout, groups: 1, kernelHeight: m, kernelWidth: n, depthMultiplier: multiplier)
        do {
            let depthwiseSet = try file.dataset(at: depthwise.path)
            let type = try depthwiseSet.elementType() ?? .float32
            let dw = try depthwiseSet.doubles()
            let pw = try file.dataset(at: pointwise.path).doubles()
            let (d, w) = Self.operands(geometry: geometry, depthwise: dw, pointwise: pw)
            let layer = try DOConvLayer(layout: .pytorch, geometry: geometry, d: d.map(Float.init), w: w.map(Float.init))
            var detected = DetectedLayer(name: config.name, form: .featureComposition, layer: layer, elementType: type,
                                         stride: config.strides ?? [1, 1], dilation: config.dilation ?? [1, 1])
            // float64 layers fold in float64, from the values read exactly.
            if type == .float64 { detected.float64 = try Float64Layer(layout: .pytorch, geometry: geometry, d: d, w: w) }
            return Loaded(detected: detected, depthwise: depthwise, pointwise: pointwise, bias: bias)
        } catch let error as HDF5Error {
            throw .hdf5(error)
        } catch {
            throw inconsistent("\(error)")
        }
    }

    func fold(_ weights: KerasLayerWeights, config: KerasModelConfig.Layer, options: FoldOptions, format: KerasFileFormat,
              rejected: inout [RejectedCandidate]) throws(KerasError) -> Result? {
        guard let loaded = try load(weights, config: config, options: options, rejected: &rejected) else { return nil }
        let (layer, type, geometry) = (loaded.detected.layer, loaded.detected.elementType, loaded.detected.layer.geometry)
        let (depthwise, pointwise) = (loaded.depthwise, loaded.pointwise)
        let (m, n, cin, cout) = (geometry.kernelHeight, geometry.kernelWidth, geometry.inChannels, geometry.outChannels)
        do {
            var oihw = layer.foldedKernel()
            let exact = loaded.detected.float64.map { ($0, $0.foldedKernel()) }
            if let exact {
                oihw.values = exact.1.map(Float.init)
            } else {
                oihw.values = try ElementCodec.encode(oihw.values, as: type).withUnsafeBytes { (raw) throws(TensorError) in
                    try ElementCodec.decode(raw, as: type, count: oihw.count)
                }
            }
            var record = FoldedLayer(name: config.name, layout: .pytorch, geometry: geometry, elementType: type,
                                     stride: loaded.detected.stride, dilation: loaded.detected.dilation,
                                     tolerance: options.tolerance ?? type.defaultTolerance)
            record.form = .featureComposition
            if options.verify, let (exactLayer, kernel) = exact {
                record.relativeError = exactLayer.probe(kernel: kernel, patches: options.probePatches, seed: options.seed).relativeError
            } else if options.verify {
                record.relativeError = LayerProbe.compare(layer: layer, kernel: oihw.values, patches: options.probePatches, seed: options.seed).relativeError
            }
            // The depthwise dataset becomes the kernel (M, N, Cin, Cout); the pointwise one goes.
            var plan = KerasRewritePlan()
            let hwio = try exact.map { geometry.hwio(oihw: $0.1) } ?? oihw.transposed([2, 3, 1, 0]).values.map(Double.init)
            plan.replacedDatasets[depthwise.path] = ([m, n, cin, cout], .float64(hwio))
            plan.dropped.insert(pointwise.path)
            if format == .weightsH5 {
                if let bias = loaded.bias { plan.renamedGroups[bias.path] = "1" }
            } else {
                plan.renamedGroups[depthwise.path] = Self.renamed(depthwise.path, from: "depthwise_kernel", to: "kernel")
                let names = weights.weights.filter { $0.path != pointwise.path }.map { $0.name.replacing("depthwise_kernel", with: "kernel") }
                let group = try file.group(at: weights.groupPath)
                let style = (try? group.strings("weight_names").style) ?? .utf8Scalar
                plan.stringAttributes[weights.groupPath, default: [:]]["weight_names"] = .init(values: names, style: style)
            }
            let removed = geometry.kernelArea * cin * geometry.depthMultiplier + cin * geometry.depthMultiplier * cout - geometry.kernelCount
            let conv = KerasConvWeights(layer: weights, kernel: depthwise, kernelShape: [m, n, cin, cout], bias: loaded.bias)
            return Result(record: record, plan: plan, removedParameters: removed, conv: conv)
        } catch let error as HDF5Error {
            throw .hdf5(error)
        } catch {
            throw .inconsistentLayer(path: path, layer: config.name, reason: "\(error)")
        }
    }

    /// The pair as a DO-Conv (PyTorch layout, one group): D[c, m, s] = dw[m, c, s],
    /// W[o, c, s] = pw[c * dm + s, o].
    static func operands(geometry g: DOConvGeometry, depthwise dw: [Double], pointwise pw: [Double]) -> (d: [Double], w: [Double]) {
        let (mn, cin, cout, multiplier) = (g.kernelArea, g.inChannels, g.outChannels, g.depthMultiplier)
        var d = [Double](repeating: 0, count: g.dCount)
        var w = [Double](repeating: 0, count: g.wCount)
        for position in 0..<mn {
            for c in 0..<cin {
                for s in 0..<multiplier { d[(c * mn + position) * multiplier + s] = dw[(position * cin + c) * multiplier + s] }
            }
        }
        for c in 0..<cin {
            for s in 0..<multiplier {
                for o in 0..<cout { w[(o * cin + c) * multiplier + s] = pw[(c * multiplier + s) * cout + o] }
            }
        }
        return (d, w)
    }

    /// The last component of `path` with `old` replaced by `new` ("depthwise_kernel:0" -> "kernel:0").
    static func renamed(_ path: String, from old: String, to new: String) -> String {
        let last = path.split(separator: "/").last.map(String.init) ?? path
        return last.replacing(old, with: new)
    }
}
