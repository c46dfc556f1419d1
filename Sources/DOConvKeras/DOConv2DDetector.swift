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
        let rules = DOConv2DWeightRules(kernelSizes: options.kernelSizes, selection: options.fold.selection, allowPartial: options.allowPartial)
        let found: (geometry: DOConvGeometry, stride: [Int], dilation: [Int])?
        do { found = try rules.doConvLayer(name: layer.name, kernel: kernel?.shape, d: d?.shape, config: config, rejected: &rejected) } catch {
            if case .undecidable = error { throw .undecidableLayer(path: path, layer: layer.name, reason: error.reason) }
            throw .inconsistentLayer(path: path, layer: layer.name, reason: error.reason)
        }
        guard let found, let kernel else { return nil } // judged a layer only with a kernel
        return Found(name: config?.name ?? layer.name, kernel: kernel, d: d, geometry: found.geometry, stride: found.stride, dilation: found.dilation)
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
    /// A float64 layer folds and is probed in float64, from its datasets read exactly; the
    /// others in float32, written as float32 (libhdf5 rounds to float16 or bfloat16 datasets).
    func fold(_ found: Found, options: FoldOptions) throws(KerasError) -> (kernel: (shape: [Int], values: KerasRewritePlan.Values), record: FoldedLayer) {
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
                return ((shape, .float64(g.hwio(oihw: exact))), record)
            }
            var oihw = layer.foldedKernel()
            if type != .float32 {
                // Verify what will be stored: the kernel rounded to the file's element type.
                oihw.values = try ElementCodec.encode(oihw.values, as: type).withUnsafeBytes { (raw) throws(TensorError) in
                    try ElementCodec.decode(raw, as: type, count: oihw.count)
                }
            }
            if options.verify {
                record.relativeError = LayerProbe.compare(layer: layer, kernel: oihw.values, patches: options.probePatches, seed: options.seed).relativeError
            }
            return ((shape, .float32(g.hwio(oihw: oihw.values))), record)
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
