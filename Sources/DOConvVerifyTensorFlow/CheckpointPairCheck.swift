import DOConvCore
import DOConvKeras
import DOConvTensorFlow
import DOConvVerify
import DOConvVerifyKeras

/// TensorFlow checkpoint pairs of a tf.keras model (ORIGINAL with DOConv2D variables, FOLDED
/// with plain kernels): structure (FOLDED holds ORIGINAL's model variables under the same
/// keys and object paths, except each layer's D; every other tensor equal bit for bit; the
/// optimizer's state only where the fold folded something) and each folded kernel against
/// the float64 recomputation of the DOConv2D arithmetic. Which variables form a layer, and
/// its kernel size, come from ORIGINAL, its config and the user's flags, never from the
/// fold's detector or from FOLDED. Weights only, so no end-to-end check.
public enum TensorFlowCheckpointEquivalence {
    public static func verify(original originalPath: String, folded foldedPath: String, options: VerifyOptions, format: String) throws(VerifyError) -> VerificationReport {
        var report = VerificationReport(original: originalPath, folded: foldedPath, format: format)
        report.endToEndSkipped = "checkpoints hold no graph to run; the verdict rests on the structure and per-layer checks"
        let original: CheckpointTensors
        let folded: CheckpointTensors
        do {
            original = try CheckpointTensors(path: originalPath)
            folded = try CheckpointTensors(path: foldedPath)
        } catch {
            throw VerifyError("\(error)")
        }
        let layers = try originalLayers(original, options: options)
        let removed = Set(layers.compactMap(\.d))
        let kernels = Dictionary(layers.map { ($0.kernel, $0) }, uniquingKeysWith: { a, _ in a })

        var compared = 0
        var depthwiseKeys = Set<String>()
        for variable in original.model where !removed.contains(variable.key) {
            if let layer = kernels[variable.key] {
                let (after, problem) = foldedKernel(of: layer, variable, in: folded)
                if let problem { report.structure.append(problem) }
                if let after, after.key != variable.key { depthwiseKeys.insert(after.key) }
                report.layers.append(KerasEquivalence.checkFoldedKernel(of: layer.reading, folded: try after.map { (v) throws(VerifyError) in try folded.entry(v) },
                                                                        conv: variable.key, key: after?.key ?? variable.key, options: options))
                continue
            }
            guard let after = folded.byKey[variable.key] else {
                report.structure.append("'\(variable.key)' is missing from FOLDED")
                continue
            }
            if after.objectPath != variable.objectPath {
                report.structure.append("'\(variable.key)' sits at \(after.objectPath.joined(separator: "/")) in FOLDED, \(variable.objectPath.joined(separator: "/")) in ORIGINAL")
            }
            compared += 1
            if let difference = try difference(variable, original, after, folded) { report.structure.append(difference) }
        }
        for key in removed where folded.byKey[key] != nil {
            report.structure.append("'\(key)' (a DOConv2D's D) is still in FOLDED")
        }
        let kept = Set(original.model.map(\.key))
        for variable in folded.model where !kept.contains(variable.key) && !depthwiseKeys.contains(variable.key) {
            report.structure.append("FOLDED holds '\(variable.key)', which ORIGINAL does not")
        }
        let droppedState = original.trainingState.filter { folded.byKey[$0.key] == nil }
        if !droppedState.isEmpty {
            if layers.isEmpty {
                report.structure.append("\(droppedState.count) optimizer or metric variables are missing from FOLDED, though ORIGINAL has no DO-Conv layer to fold")
            } else {
                report.notes.append("optimizer and metric state is not in FOLDED (the fold drops it: the optimizer's slots were shaped for D and W)")
            }
        }
        report.structureSummary = "\(compared) tensors equal, \(layers.count) kernel\(layers.count == 1 ? "" : "s") folded, \(removed.count) D tensors removed"
        return report
    }

    /// FOLDED's kernel of a layer, with what is wrong with where it sits: under the
    /// kernel's own key and path as Conv2D (groups=Cin for a DO-DConv), or, for a DO-DConv,
    /// as a DepthwiseConv2D's `depthwise_kernel` beside it; the name must fit the shape,
    /// since each class loads only its own.
    static func foldedKernel(of layer: Layer, _ variable: CheckpointVariable, in folded: CheckpointTensors) -> (CheckpointVariable?, String?) {
        let grouped = layer.reading.foldedShape
        let depthwiseShape = layer.reading.depthwiseShape
        let path = variable.objectPath.dropLast() + [DepthwiseForm.kernelName]
        let depthwiseKey = TrackableObjectGraph.keyPath(Array(path)) + variable.key.dropFirst(variable.keyPath.count)
        if let after = folded.byKey[variable.key] {
            if after.objectPath != variable.objectPath {
                return (after, "'\(variable.key)' sits at \(after.objectPath.joined(separator: "/")) in FOLDED, \(variable.objectPath.joined(separator: "/")) in ORIGINAL")
            }
            if let depthwiseShape, after.shape == depthwiseShape, after.shape != grouped {
                return (after, "'\(variable.key)' holds a DepthwiseConv2D's kernel \(after.shape) under a Conv2D's name; DepthwiseConv2D loads it as '\(depthwiseKey)'")
            }
            return (after, nil)
        }
        guard let depthwiseShape, variable.key.hasPrefix(variable.keyPath + "/"), let after = folded.byKey[depthwiseKey] else {
            return (nil, "'\(variable.key)' is missing from FOLDED")
        }
        if after.objectPath != Array(path) {
            return (after, "'\(depthwiseKey)' sits at \(after.objectPath.joined(separator: "/")) in FOLDED, \(path.joined(separator: "/")) expected")
        }
        if after.shape != depthwiseShape {
            return (after, "'\(depthwiseKey)' is a DepthwiseConv2D's kernel but has shape \(after.shape), not (M, N, Cin, Cout/Cin) = \(depthwiseShape)")
        }
        return (after, nil)
    }

    /// A DOConv2D layer of ORIGINAL: its kernel's and D's keys, read as Keras weights.
    struct Layer {
        let kernel: String
        let d: String?
        let reading: KerasOriginalLayer
    }

    /// Every DOConv2D layer of ORIGINAL that `options` selects: a layer object holding a 3-D
    /// `kernel` and a 3-D `D`, one the config calls DOConv2D, or one `--kernel-size NAME=1x1`
    /// names. A layer whose variables disagree cannot have been folded: an error.
    static func originalLayers(_ original: CheckpointTensors, options: VerifyOptions) throws(VerifyError) -> [Layer] {
        var config: KerasModelConfig?
        if let json = options.kerasConfigJSON {
            do { config = try KerasModelConfig(json: json, source: "--config") } catch { throw VerifyError("\(error)") }
        }
        var owners: [[String]: [String: CheckpointVariable]] = [:]
        var order: [[String]] = []
        for variable in original.model {
            let owner = Array(variable.objectPath.dropLast())
            if owners[owner] == nil { order.append(owner) }
            owners[owner, default: [:]][variable.objectPath.last ?? ""] = variable
        }
        var layers: [Layer] = []
        for owner in order {
            guard let members = owners[owner], let kernel = members["kernel"], kernel.shape.count == 3 else { continue }
            let d = members["D"].flatMap { $0.shape.count == 3 ? $0 : nil }
            let name = kernel.fullName.split(separator: "/").dropLast().joined(separator: "/")
            let layerConfig = config?.layers.first { $0.name == name }
            if let layerConfig, !layerConfig.isDOConv { continue }
            guard d != nil || layerConfig != nil || options.kernelSizes[name] == [1, 1] else { continue }
            guard options.selection.refusal(of: name) == nil else { continue }
            do {
                let reading = try KerasLayerReading.layer(name: name, kernel: try original.entry(kernel), d: try d.map { (v) throws(VerifyError) in try original.entry(v) },
                                                          config: layerConfig, options: options)
                layers.append(Layer(kernel: kernel.key, d: d?.key, reading: reading))
            } catch let error as VerifyError {
                throw error
            } catch {
                throw VerifyError("\(error)")
            }
        }
        return layers
    }

    /// How an untouched variable changed, nil when it did not: type, shape or bytes.
    static func difference(_ a: CheckpointVariable, _ tensorsA: CheckpointTensors, _ b: CheckpointVariable, _ tensorsB: CheckpointTensors) throws(VerifyError) -> String? {
        guard a.dtype == b.dtype, a.shape == b.shape else {
            return "'\(a.key)' changed from \(a.dtype.name) \(a.shape) to \(b.dtype.name) \(b.shape)"
        }
        return try tensorsA.bytes(a) == tensorsB.bytes(b) ? nil : "'\(a.key)' changed values"
    }
}
