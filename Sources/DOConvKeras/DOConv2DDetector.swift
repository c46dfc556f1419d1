import DOConvCore

/// Tells DOConv2D layers from others and folds them: by the config's class name where
/// there is a config, otherwise by weight names and shapes (kernel (Dmul, Cin/g, Cout) with
/// D (MN, Dmul, Cin)).
struct DOConv2DDetector {
    let path: String
    let file: HDF5File
    let options: KerasFoldOptions

    /// A DOConv2D layer's weights and geometry.
    struct Found {
        var name: String
        var kernel: KerasWeight
        var d: KerasWeight?
        var geometry: DOConvGeometry
        var stride: [Int]
        var dilation: [Int]
    }

    func group(at groupPath: String) throws(KerasError) -> HDF5Group {
        do { return try file.group(at: groupPath) } catch { throw .hdf5(error) }
    }

    /// The layer's DOConv2D description, nil for other layers (a candidate that does not fit
    /// is added to `rejected`; a layer the config calls DOConv2D must fit, or this throws).
    func detect(_ layer: KerasLayerWeights, config: KerasModelConfig.Layer?, rejected: inout [RejectedCandidate]) throws(KerasError) -> Found? {
        let kernel = layer.weights.first { $0.role == .kernel }
        let d = layer.weights.first { $0.role == .d }
        // Without a config, an explicit 1x1 kernel size is what tells a 1x1 DOConv2D
        // (no D) from a Conv1D.
        let declared = (config?.isDOConv ?? false) || (config == nil && d == nil && options.kernelSizes[layer.name] == [1, 1])
        if config == nil, !declared, d == nil, let kernel, kernel.shape.count == 3, kernel.shape[0] == 1 {
            rejected.append(RejectedCandidate(name: layer.name, reason: "a 3-D kernel without D is a 1x1 DOConv2D or a Conv1D; pass --config MODEL.json or --kernel-size \(layer.name)=1x1 to tell"))
            return nil
        }
        guard declared || (kernel != nil && d != nil && config == nil) else { return nil }
        if let reason = options.fold.selection.refusal(of: layer.name) {
            rejected.append(RejectedCandidate(name: layer.name, reason: reason, isDOConvLayer: true))
            return nil
        }
        func inconsistent(_ reason: String) -> KerasError { .inconsistentLayer(path: path, layer: layer.name, reason: reason) }
        guard let kernel, kernel.shape.count == 3 else {
            if declared { throw inconsistent("a DOConv2D layer needs a kernel of shape (Dmul, Cin/g, Cout)") }
            return nil
        }
        let (dmul, inPerGroup, cout) = (kernel.shape[0], kernel.shape[1], kernel.shape[2])
        var groups = config?.groups ?? 1
        var inChannels = inPerGroup * groups
        var area = 1
        if let d {
            guard d.shape.count == 3, d.shape[1] == dmul, inPerGroup > 0, d.shape[2] % inPerGroup == 0 else {
                let reason = "D \(d.shape) does not fit kernel \(kernel.shape)"
                if declared { throw inconsistent(reason) }
                rejected.append(RejectedCandidate(name: layer.name, reason: reason))
                return nil
            }
            area = d.shape[0]
            inChannels = d.shape[2]
            groups = inChannels / inPerGroup
            if let declaredGroups = config?.groups, declaredGroups != groups {
                throw inconsistent("the config says \(declaredGroups) groups, the weights \(groups)")
            }
        } else if dmul != 1 {
            throw inconsistent("no D, so the kernel must be (1, Cin/g, Cout), not \(kernel.shape)")
        }
        if let filters = config?.filters, filters != cout { throw inconsistent("the config says \(filters) filters, the kernel \(cout)") }
        if let declared = config?.depthMultiplier, d != nil, declared != dmul {
            throw inconsistent("the config says D_mul \(declared), the weights \(dmul)")
        }
        let (m, n) = try kernelSize(layer: layer.name, config: config, area: area)
        let geometry = DOConvGeometry(inChannels: inChannels, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
        return Found(name: config?.name ?? layer.name, kernel: kernel, d: d, geometry: geometry,
                     stride: config?.strides ?? [1, 1], dilation: config?.dilation ?? [1, 1])
    }

    /// (M, N): the config's kernel_size, else --kernel-size, else the square root of MN.
    private func kernelSize(layer: String, config: KerasModelConfig.Layer?, area: Int) throws(KerasError) -> (Int, Int) {
        let candidates = [config?.kernelSize, config.flatMap { options.kernelSizes[$0.name] }, options.kernelSizes[layer]]
        for case let size? in candidates {
            guard size.count == 2, size[0].multipliedReportingOverflow(by: size[1]) == (area, false) else {
                throw .inconsistentLayer(path: path, layer: layer, reason: "kernel size \(size) does not match D's M x N = \(area)")
            }
            return (size[0], size[1])
        }
        var root = 1
        while (root + 1) * (root + 1) <= area { root += 1 }
        guard root * root == area else { throw .ambiguousKernelSize(path: path, layer: layer, area: area) }
        return (root, root)
    }

    /// Reads the layer's D (adding the identity offset the layer adds) and W.
    func load(_ found: Found) throws(KerasError) -> DetectedLayer {
        do {
            let kernelSet = try file.dataset(at: found.kernel.path)
            let type = try kernelSet.elementType() ?? .float32
            let w = try kernelSet.floats()
            var d = try found.d.map { (weight) throws(HDF5Error) in try file.dataset(at: weight.path).floats() }
            // The file holds the trained D; the layer composes with D + I.
            if var trained = d, trained.count == found.geometry.dCount {
                IdentityOffset.add(to: &trained, layout: .keras, geometry: found.geometry)
                d = trained
            }
            let layer: DOConvLayer
            do {
                layer = try DOConvLayer(layout: .keras, geometry: found.geometry, d: d, w: w)
            } catch {
                throw KerasError.inconsistentLayer(path: path, layer: found.name, reason: "\(error)")
            }
            return DetectedLayer(name: found.name, form: .kernelComposition, layer: layer, elementType: type, stride: found.stride, dilation: found.dilation)
        } catch let error as KerasError {
            throw error
        } catch let error as HDF5Error {
            throw .hdf5(error)
        } catch {
            throw .inconsistentLayer(path: path, layer: found.name, reason: "\(error)")
        }
    }

    /// Folds one layer: the kernel as Keras stores it (M, N, Cin/g, Cout), and the report.
    /// A float64 layer folds and is probed in float64, from its datasets read exactly.
    func fold(_ found: Found, options: FoldOptions) throws(KerasError) -> (kernel: (shape: [Int], values: [Double]), record: FoldedLayer) {
        let detected = try load(found)
        let (layer, type) = (detected.layer, detected.elementType)
        do {
            let g = found.geometry
            var record = FoldedLayer(name: found.name, layout: .keras, geometry: g, elementType: type,
                                     stride: found.stride, dilation: found.dilation,
                                     tolerance: options.tolerance ?? type.defaultTolerance)
            let shape = [g.kernelHeight, g.kernelWidth, g.inChannelsPerGroup, g.outChannels]
            if type == .float64 {
                let exactLayer = try float64Layer(found)
                let exact = exactLayer.foldedKernel()
                if options.verify {
                    record.relativeError = exactLayer.probe(kernel: exact, patches: options.probePatches, seed: options.seed).relativeError
                }
                return ((shape, g.hwio(oihw: exact)), record)
            }
            // Verify what will be stored: the kernel rounded to the file's element type.
            var oihw = layer.foldedKernel()
            oihw.values = try ElementCodec.encode(oihw.values, as: type).withUnsafeBytes { (raw) throws(TensorError) in
                try ElementCodec.decode(raw, as: type, count: oihw.count)
            }
            if options.verify {
                record.relativeError = LayerProbe.compare(layer: layer, kernel: oihw.values, patches: options.probePatches, seed: options.seed).relativeError
            }
            return ((shape, try oihw.transposed([2, 3, 1, 0]).values.map(Double.init)), record)
        } catch let error as KerasError {
            throw error
        } catch {
            throw .inconsistentLayer(path: path, layer: found.name, reason: "\(error)")
        }
    }

    /// A float64 layer read exactly: W and D + I.
    private func float64Layer(_ found: Found) throws -> Float64Layer {
        let w = try file.dataset(at: found.kernel.path).doubles()
        var d = try found.d.map { (weight) throws(HDF5Error) in try file.dataset(at: weight.path).doubles() }
        if var trained = d {
            IdentityOffset.add(to: &trained, layout: .keras, geometry: found.geometry)
            d = trained
        }
        return try Float64Layer(layout: .keras, geometry: found.geometry, d: d, w: w)
    }
}
