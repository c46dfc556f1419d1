import DOConvCore
import DOConvKeras

/// A DOConv2D layer among an object-based checkpoint's variables.
struct CheckpointLayer {
    /// The Keras layer name (the first part of its variables' `full_name`).
    var name: String
    /// W, (Dmul, Cin/g, Cout).
    var kernel: CheckpointVariable
    /// D, (M*N, Dmul, Cin); nil for a 1x1 layer, which has none.
    var d: CheckpointVariable?
    var geometry: DOConvGeometry
    var stride: [Int]
    var dilation: [Int]
}

/// Finds the DOConv2D layers of a tf.keras checkpoint: by the config's class name when
/// there is a config, otherwise by shapes (a 3-D `kernel` (Dmul, Cin/g, Cout) beside a 3-D
/// `D` (M*N, Dmul, Cin)), among the model's variables (optimizer state is not a layer).
struct CheckpointLayerDetector {
    /// The checkpoint's index, for messages.
    let path: String
    let config: KerasModelConfig?
    let options: TensorFlowFoldOptions

    func detect(_ variables: [CheckpointVariable]) throws(TensorFlowError) -> (layers: [CheckpointLayer], rejected: [RejectedCandidate]) {
        var layers: [CheckpointLayer] = []
        var rejected: [RejectedCandidate] = []
        for (_, weights) in Self.byLayer(variables) {
            if let layer = try detect(weights, rejected: &rejected) { layers.append(layer) }
        }
        return (layers, rejected)
    }

    /// The model's variables grouped by the object that holds them (a layer), in key order,
    /// each group by attribute name ("kernel", "D", "bias").
    static func byLayer(_ variables: [CheckpointVariable]) -> [(path: [String], weights: [String: CheckpointVariable])] {
        var groups: [(path: [String], weights: [String: CheckpointVariable])] = []
        var index: [[String]: Int] = [:]
        for variable in variables where !variable.isOptimizerState {
            guard let weight = variable.objectPath.last else { continue }
            let owner = Array(variable.objectPath.dropLast())
            if let k = index[owner] {
                groups[k].weights[weight] = variable
            } else {
                index[owner] = groups.count
                groups.append((owner, [weight: variable]))
            }
        }
        return groups
    }

    /// The Keras layer a variable belongs to: its full name without the weight's own name.
    static func layerName(of variable: CheckpointVariable) -> String {
        guard let slash = variable.fullName.lastIndex(of: "/") else { return variable.fullName }
        return String(variable.fullName[..<slash])
    }

    private func detect(_ weights: [String: CheckpointVariable], rejected: inout [RejectedCandidate]) throws(TensorFlowError) -> CheckpointLayer? {
        guard let kernel = weights["kernel"] else { return nil }
        let d = weights["D"]
        let name = Self.layerName(of: kernel)
        let declaredByConfig = config?.layers.first { $0.name == name }
        let layerConfig = declaredByConfig?.isDOConv == true ? declaredByConfig : nil
        if config != nil, layerConfig == nil { return nil }
        let declared = layerConfig != nil || (d == nil && options.kernelSizes[name] == [1, 1])
        func inconsistent(_ reason: String) -> TensorFlowError { .inconsistentLayer(path: path, layer: name, reason: reason) }
        if config == nil, !declared, d == nil {
            // A weights-only checkpoint cannot tell a 1x1 DOConv2D (no D) from a Conv1D:
            // leaving it unfolded would make a checkpoint no model loads.
            if kernel.shape.count == 3, kernel.shape[0] == 1 {
                throw .undecidableLayer(path: path, layer: name, reason: "a 3-D kernel \(kernel.shape) without D is a 1x1 DOConv2D or a Conv1D; pass --config MODEL.json (model.to_json()) or --kernel-size \(name)=1x1")
            }
            return nil
        }
        if let reason = options.fold.selection.refusal(of: name) {
            rejected.append(RejectedCandidate(name: name, reason: reason, isDOConvLayer: true))
            return nil
        }
        guard kernel.shape.count == 3 else {
            if declared { throw inconsistent("a DOConv2D layer needs a kernel of shape (Dmul, Cin/g, Cout), not \(kernel.shape)") }
            rejected.append(RejectedCandidate(name: name, reason: "kernel \(kernel.shape) beside a D is not (Dmul, Cin/g, Cout)"))
            return nil
        }
        let (dmul, inPerGroup, cout) = (kernel.shape[0], kernel.shape[1], kernel.shape[2])
        var groups = layerConfig?.groups ?? 1
        var inChannels = inPerGroup * groups
        var area = 1
        if let d {
            guard d.shape.count == 3, d.shape[1] == dmul, inPerGroup > 0, d.shape[2] % inPerGroup == 0, d.dtype == kernel.dtype else {
                let reason = "D \(d.dtype.name) \(d.shape) does not fit kernel \(kernel.dtype.name) \(kernel.shape)"
                if declared { throw inconsistent(reason) }
                rejected.append(RejectedCandidate(name: name, reason: reason))
                return nil
            }
            area = d.shape[0]
            inChannels = d.shape[2]
            groups = inChannels / inPerGroup
            if let declaredGroups = layerConfig?.groups, declaredGroups != groups {
                throw inconsistent("the config says \(declaredGroups) groups, the variables \(groups)")
            }
        } else if dmul != 1 {
            throw inconsistent("no D, so the kernel must be (1, Cin/g, Cout), not \(kernel.shape)")
        }
        guard kernel.dtype.elementType != nil else { throw inconsistent("its kernel is \(kernel.dtype.name), not a floating-point type") }
        if let filters = layerConfig?.filters, filters != cout { throw inconsistent("the config says \(filters) filters, the kernel \(cout)") }
        let (m, n) = try kernelSize(layer: name, config: layerConfig, area: area)
        let geometry = DOConvGeometry(inChannels: inChannels, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
        return CheckpointLayer(name: name, kernel: kernel, d: d, geometry: geometry,
                               stride: layerConfig?.strides ?? [1, 1], dilation: layerConfig?.dilation ?? [1, 1])
    }

    /// (M, N): the config's kernel_size, else --kernel-size, else the square root of M*N.
    private func kernelSize(layer: String, config: KerasModelConfig.Layer?, area: Int) throws(TensorFlowError) -> (Int, Int) {
        for case let size? in [config?.kernelSize, options.kernelSizes[layer]] {
            guard size.count == 2, size[0].multipliedReportingOverflow(by: size[1]) == (area, false) else {
                throw .inconsistentLayer(path: path, layer: layer, reason: "kernel size \(size) does not match D's M x N = \(area)")
            }
            return (size[0], size[1])
        }
        var root = 1
        while (root + 1) * (root + 1) <= area { root += 1 }
        guard root * root == area else {
            throw .undecidableLayer(path: path, layer: layer, reason: "kernel size unknown (M x N = \(area)); pass --config MODEL.json or --kernel-size \(layer)=MxN")
        }
        return (root, root)
    }
}
