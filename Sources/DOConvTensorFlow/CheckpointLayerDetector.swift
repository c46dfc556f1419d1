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
        for variable in variables where !variable.isTrainingState {
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
        let rules = DOConv2DWeightRules(kernelSizes: options.kernelSizes, selection: options.fold.selection, allowPartial: options.allowPartial)
        let found: (geometry: DOConvGeometry, stride: [Int], dilation: [Int])?
        do {
            found = try rules.doConvLayer(name: name, kernel: kernel.shape, d: d?.shape, config: config?.layers.first { $0.name == name }, rejected: &rejected)
        } catch {
            if case .undecidable = error { throw .undecidableLayer(path: path, layer: name, reason: error.reason) }
            throw .inconsistentLayer(path: path, layer: name, reason: error.reason)
        }
        guard let found else { return nil }
        guard kernel.dtype.elementType != nil, d.map({ $0.dtype == kernel.dtype }) ?? true else {
            throw .inconsistentLayer(path: path, layer: name, reason: "kernel \(kernel.dtype.name) and D \(d?.dtype.name ?? "-"): not one floating-point type")
        }
        return CheckpointLayer(name: name, kernel: kernel, d: d, geometry: found.geometry, stride: found.stride, dilation: found.dilation)
    }
}
