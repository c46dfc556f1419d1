/// The Keras weight-file layouts doconv reads.
public enum KerasFileFormat: String, Sendable {
    /// Keras 2 or 3 `model.save("x.h5")`: root `model_config`, weights under `model_weights/`.
    case legacyFullModel = "Keras legacy HDF5 model"
    /// Keras 2 or 3 `save_weights("x.h5")`: the per-layer groups at the root.
    case legacyWeights = "Keras legacy HDF5 weights"
    /// Keras 3 `save_weights("x.weights.h5")`: `layers/<snake_case_class>[_k]/vars/<n>`.
    case weightsH5 = "Keras 3 .weights.h5"
}

/// One weight dataset of a layer.
public struct KerasWeight: Equatable, Sendable {
    /// What the weight is to a DOConv2D layer, by its name ("kernel", "bias", "D").
    public enum Role: Sendable { case kernel, bias, d, other }

    /// The name Keras lists (`weight_names` entry, or `vars/<n>`).
    public var name: String
    /// The dataset's absolute path.
    public var path: String
    public var shape: [Int]
    public var role: Role
    /// Bytes per stored element.
    public var elementSize: Int
}

/// A layer's group in the file and its weights, in Keras' order.
public struct KerasLayerWeights: Equatable, Sendable {
    /// The layer's name (legacy formats) or its `layers/...` group name (`.weights.h5`).
    public var name: String
    /// The user's layer name when the file records it (`vars/@name` in `.weights.h5`).
    public var recordedName: String?
    /// Absolute path of the layer's group.
    public var groupPath: String
    public var weights: [KerasWeight]
}

/// Reads which layers a Keras HDF5 file holds and where their weights are. Every weight
/// dataset's claimed size is checked here, before anything reads one.
struct KerasWeightsLayout {
    let format: KerasFileFormat
    /// The group holding the per-layer groups (`/model_weights`, `/`, or `/layers`).
    let weightsRoot: String
    let layers: [KerasLayerWeights]
    /// The config stored in the file (full-model files only).
    let storedConfig: String?

    init(file: HDF5File) throws(KerasError) {
        do {
            let root = try file.root()
            if root.hasAttribute("model_config"), root.hasChild("model_weights") {
                format = .legacyFullModel
                weightsRoot = "/model_weights"
                storedConfig = try root.string("model_config")
                layers = try Self.legacyLayers(try root.group("model_weights"), file: file)
            } else if root.hasAttribute("layer_names") {
                format = .legacyWeights
                weightsRoot = "/"
                storedConfig = nil
                layers = try Self.legacyLayers(root, file: file)
            } else if root.hasChild("layers"), try root.kind(of: "layers") == .group {
                format = .weightsH5
                weightsRoot = "/layers"
                storedConfig = nil
                layers = try Self.weightsH5Layers(try root.group("layers"), file: file)
            } else {
                throw KerasError.notKeras(path: file.path, reason: "no model_weights group, layer_names attribute or layers group")
            }
        } catch let error as KerasError {
            throw error
        } catch let error as HDF5Error {
            throw .hdf5(error)
        } catch {
            throw .notKeras(path: file.path, reason: "\(error)")
        }
    }

    /// Legacy layouts: `layer_names` lists the layer groups in order, each with
    /// `weight_names` giving its datasets (paths relative to the group) in Keras' order.
    private static func legacyLayers(_ group: HDF5Group, file: HDF5File) throws(HDF5Error) -> [KerasLayerWeights] {
        var layers: [KerasLayerWeights] = []
        for name in try group.strings("layer_names").values {
            let layerGroup = try group.group(name)
            let weightNames = layerGroup.hasAttribute("weight_names") ? try layerGroup.strings("weight_names").values : []
            var weights: [KerasWeight] = []
            for weightName in weightNames {
                let dataset = try layerGroup.dataset(weightName)
                try dataset.checkClaimedSize()
                weights.append(KerasWeight(name: weightName, path: dataset.path, shape: try dataset.shape(), role: role(of: weightName), elementSize: try dataset.elementSize()))
            }
            layers.append(KerasLayerWeights(name: name, recordedName: nil, groupPath: layerGroup.path, weights: weights))
        }
        return layers
    }

    /// Keras 3 `.weights.h5`: every group under `layers/` with a `vars` group is a layer;
    /// variables are `vars/0..n` in creation order (a DOConv2D: kernel, bias, D).
    private static func weightsH5Layers(_ group: HDF5Group, file: HDF5File) throws(HDF5Error) -> [KerasLayerWeights] {
        var layers: [KerasLayerWeights] = []
        for name in try group.childNames() where try group.kind(of: name) == .group {
            let layerGroup = try group.group(name)
            guard layerGroup.hasChild("vars") else { continue }
            let vars = try layerGroup.group("vars")
            let indices = try vars.childNames().compactMap { Int($0) }.sorted()
            var weights: [KerasWeight] = []
            for index in indices {
                let dataset = try vars.dataset(String(index))
                try dataset.checkClaimedSize()
                weights.append(KerasWeight(name: String(index), path: dataset.path, shape: try dataset.shape(), role: .other, elementSize: try dataset.elementSize()))
            }
            // Roles by position and rank: kernel first (rank 3 for DOConv2D), then an
            // optional rank-1 bias, then D (rank 3).
            if weights.count >= 1 { weights[0].role = .kernel }
            if weights.count >= 2 { weights[1].role = weights[1].shape.count == 1 ? .bias : .d }
            if weights.count >= 3, weights[1].role == .bias { weights[2].role = .d }
            let recorded = vars.hasAttribute("name") ? try? vars.string("name") : nil
            layers.append(KerasLayerWeights(name: name, recordedName: recorded, groupPath: layerGroup.path, weights: weights))
        }
        return layers
    }

    /// "conv/kernel:0" -> kernel, "conv/D" -> d.
    static func role(of weightName: String) -> KerasWeight.Role {
        switch baseName(of: weightName) {
        case "kernel": return .kernel
        case "bias": return .bias
        case "D": return .d
        default: return .other
        }
    }

    /// A weight's name without its folders and TensorFlow's ":N" suffix: "bn/gamma:0" -> "gamma".
    static func baseName(of weightName: String) -> String {
        var base = Substring(weightName.split(separator: "/").last ?? "")
        if let colon = base.lastIndex(of: ":") { base = base[..<colon] }
        return String(base)
    }
}
