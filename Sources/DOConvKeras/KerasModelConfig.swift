import DOConvJSON
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A Keras model config (the JSON of `model.to_json()`, a full `.h5` file's `model_config`,
/// or a `.keras` archive's `config.json`): the layers in model order, and the same config
/// with every DOConv2D turned into a plain Conv2D.
public struct KerasModelConfig {
    /// One top-level layer of the model.
    public struct Layer: Equatable, Sendable {
        public var name: String
        public var className: String
        /// (M, N) when the config gives `kernel_size`.
        public var kernelSize: [Int]?
        public var groups: Int?
        public var depthMultiplier: Int?
        public var filters: Int?
        public var strides: [Int]?
        public var dilation: [Int]?
        /// A SeparableConv2D's `depth_multiplier`.
        public var separableDepthMultiplier: Int?
        /// The tensors each call of the layer reads, one list per call (functional models;
        /// empty for the layers of a Sequential model, which read the layer before them).
        public var inboundNodes: [[TensorReference]] = []
        /// True when a call passes `training=True`, which makes the layer ignore inference mode.
        public var callsInTrainingMode = false
        /// `activation` as the config names it (nil when it has none).
        public var activation: String?
        public var dataFormat: String?
        public var useBias: Bool?
        /// A BatchNormalization's `axis`, `epsilon`, `center`, `scale` and `renorm`.
        public var axes: [Int]?
        public var epsilon: Double?
        public var center: Bool?
        public var scale: Bool?
        public var renorm: Bool?

        /// True for the DO-Conv layer class (its registered name may carry a package prefix).
        public var isDOConv: Bool { className == "DOConv2D" }

        /// True for a SeparableConv2D that is a DO-Conv in feature-composition form
        /// (depth_multiplier >= M*N), or any one when `separable` asks for all.
        public func isFoldableSeparable(foldSeparable separable: Bool) -> Bool {
            guard className == "SeparableConv2D", let multiplier = separableDepthMultiplier, let size = kernelSize, size.count == 2 else { return false }
            return separable || multiplier >= size[0] * size[1]
        }

        /// True when the layer's output is what it computes, with no activation applied.
        public var hasLinearActivation: Bool { activation == nil || activation == "linear" }
    }

    /// One tensor a layer call reads: the output `tensor` of call `node` of `layer`
    /// (Keras 2 writes it as `[layer, node, tensor, kwargs]`, Keras 3 as a
    /// `__keras_tensor__` whose `keras_history` is `[layer, node, tensor]`).
    public struct TensorReference: Equatable, Sendable {
        public var layer: String
        public var node: Int
        public var tensor: Int
    }

    var root: [String: Any]
    public private(set) var layers: [Layer]
    /// True for a Sequential model, whose layers each read the one before.
    public private(set) var isSequential: Bool
    /// The model's outputs (functional models).
    public private(set) var outputs: [TensorReference]

    /// Parses the config JSON; `source` names where it came from, for messages.
    public init(json: String, source: String) throws(KerasError) {
        guard let root = try? JSONTree.parse(json) as? [String: Any] else {
            throw .config(path: source, reason: "not a JSON object")
        }
        guard let config = root["config"] as? [String: Any], let layerList = config["layers"] as? [[String: Any]] else {
            throw .config(path: source, reason: "no layer list (only Sequential and functional models are supported)")
        }
        self.root = root
        self.layers = layerList.map(Self.layer)
        isSequential = root["class_name"] as? String == "Sequential"
        outputs = config["output_layers"].map(Self.references) ?? []
    }

    private static func layer(_ entry: [String: Any]) -> Layer {
        let config = entry["config"] as? [String: Any] ?? [:]
        // Registered custom classes appear as "package>Class" (Keras 3's legacy h5 writes it
        // as the class name, its JSON as registered_name).
        var className = entry["class_name"] as? String ?? ""
        if let registered = entry["registered_name"] as? String, registered.hasSuffix(">DOConv2D") { className = "DOConv2D" }
        if className.hasSuffix(">DOConv2D") { className = "DOConv2D" }
        func int(_ key: String) -> Int? { JSONNumber.int(config[key]) }
        func bool(_ key: String) -> Bool? { JSONNumber.bool(config[key]) }
        var layer = Layer(
            name: config["name"] as? String ?? entry["name"] as? String ?? "",
            className: className,
            kernelSize: JSONNumber.ints(config["kernel_size"]) ?? int("kernel_size").map { [$0, $0] },
            groups: int("groups"),
            depthMultiplier: int("D_mul"),
            filters: int("filters"),
            strides: JSONNumber.ints(config["strides"]),
            dilation: JSONNumber.ints(config["dilation_rate"]),
            separableDepthMultiplier: className == "SeparableConv2D" ? int("depth_multiplier") : nil)
        let nodes = entry["inbound_nodes"] as? [Any] ?? []
        layer.inboundNodes = nodes.map(references)
        layer.callsInTrainingMode = nodes.contains(where: passesTrainingTrue)
        switch config["activation"] {
        case let name as String: layer.activation = name
        // A serialized activation object (a custom or parameterized one): never linear.
        case let object as [String: Any]: layer.activation = object["class_name"] as? String ?? "custom"
        default: layer.activation = nil
        }
        layer.dataFormat = config["data_format"] as? String
        layer.useBias = bool("use_bias")
        layer.axes = JSONNumber.ints(config["axis"]) ?? int("axis").map { [$0] }
        layer.epsilon = JSONNumber.double(config["epsilon"])
        layer.center = bool("center")
        layer.scale = bool("scale")
        layer.renorm = bool("renorm")
        return layer
    }

    /// Every tensor reference in a piece of an inbound node, in order.
    private static func references(_ value: Any) -> [TensorReference] {
        if let object = value as? [String: Any] {
            if object["class_name"] as? String == "__keras_tensor__", let config = object["config"] as? [String: Any],
               let history = config["keras_history"] as? [Any], let reference = reference(history) {
                return [reference]
            }
            return object.keys.sorted().compactMap { object[$0] }.flatMap(references)
        }
        guard let list = value as? [Any] else { return [] }
        if let reference = reference(list) { return [reference] + list.dropFirst(3).flatMap(references) }
        return list.flatMap(references)
    }

    /// `[name, node, tensor, ...]` as a reference.
    private static func reference(_ list: [Any]) -> TensorReference? {
        guard list.count >= 3, let name = list[0] as? String, let node = JSONNumber.int(list[1]), let tensor = JSONNumber.int(list[2]) else { return nil }
        return TensorReference(layer: name, node: node, tensor: tensor)
    }

    /// True when a call's keyword arguments hold `training: true` (Keras 3 `kwargs`, Keras 2
    /// the dict that ends each input reference).
    private static func passesTrainingTrue(_ value: Any) -> Bool {
        if let object = value as? [String: Any] {
            if JSONNumber.bool(object["training"]) == true { return true }
            return object.values.contains(where: passesTrainingTrue)
        }
        return (value as? [Any])?.contains(where: passesTrainingTrue) ?? false
    }

    /// The layer called `name`.
    public func layer(named name: String) -> Layer? { layers.first { $0.name == name } }

    /// This config as JSON with the named DOConv2D layers turned into Conv2D: class name,
    /// module and registered name of the built-in layer, `D_mul` dropped, `groups` kept.
    public func foldedJSON(layers folded: Set<String>) -> String {
        rewrittenJSON(KerasConfigEdit(folded: folded))
    }

    /// This config as JSON with `edit` applied: folded layers turned into Conv2D (as
    /// `foldedJSON`), and each fused BatchNormalization gone, its Conv2D given
    /// `use_bias: true`, and every reference to the BatchNormalization's output (inbound
    /// nodes, model outputs) pointing at the Conv2D's instead.
    public func rewrittenJSON(_ edit: KerasConfigEdit) -> String {
        var root = self.root
        if var config = root["config"] as? [String: Any], var list = config["layers"] as? [[String: Any]] {
            let biased = Set(edit.fusedBatchNorms.values)
            for k in list.indices {
                guard var layerConfig = list[k]["config"] as? [String: Any],
                      let name = layerConfig["name"] as? String ?? list[k]["name"] as? String else { continue }
                if biased.contains(name) {
                    layerConfig["use_bias"] = true
                    list[k]["config"] = layerConfig
                }
                guard edit.folded.contains(name) else { continue }
                if let multiplier = edit.depthwise[name] {
                    list[k]["config"] = Self.depthwiseConfig(layerConfig, depthMultiplier: multiplier)
                    list[k]["class_name"] = "DepthwiseConv2D"
                    if list[k]["module"] != nil { list[k]["module"] = "keras.layers" }
                    if list[k]["registered_name"] != nil { list[k]["registered_name"] = JSONNull() }
                    continue
                }
                layerConfig.removeValue(forKey: "D_mul")
                // A folded SeparableConv2D keeps only what Conv2D takes.
                for key in layerConfig.keys where key == "depth_multiplier" || key.hasPrefix("depthwise_") || key.hasPrefix("pointwise_") {
                    layerConfig.removeValue(forKey: key)
                }
                list[k]["config"] = layerConfig
                list[k]["class_name"] = "Conv2D"
                if list[k]["module"] != nil { list[k]["module"] = "keras.layers" }
                if list[k]["registered_name"] != nil { list[k]["registered_name"] = JSONNull() }
            }
            if !edit.fusedBatchNorms.isEmpty {
                list.removeAll { entry in
                    let name = (entry["config"] as? [String: Any])?["name"] as? String ?? entry["name"] as? String
                    return name.map { edit.fusedBatchNorms[$0] != nil } ?? false
                }
                for k in list.indices {
                    if let nodes = list[k]["inbound_nodes"] { list[k]["inbound_nodes"] = Self.renamingReferences(in: nodes, edit.fusedBatchNorms) }
                }
                for key in ["input_layers", "output_layers"] {
                    if let references = config[key] { config[key] = Self.renamingReferences(in: references, edit.fusedBatchNorms) }
                }
            }
            config["layers"] = list
            root["config"] = config
        }
        return (try? JSONTree.string(root)) ?? "{}"
    }

    /// A folded DO-DConv's config as a DepthwiseConv2D's: `depth_multiplier` for `filters`,
    /// `groups` and `D_mul`, and the kernel's initializer, regularizer and constraint under
    /// their depthwise names.
    static func depthwiseConfig(_ config: [String: Any], depthMultiplier: Int) -> [String: Any] {
        var depthwise = config
        for key in ["filters", "groups", "D_mul"] { depthwise.removeValue(forKey: key) }
        for part in ["initializer", "regularizer", "constraint"] {
            if let value = depthwise.removeValue(forKey: "kernel_" + part) { depthwise["depthwise_" + part] = value }
        }
        depthwise["depth_multiplier"] = depthMultiplier
        return depthwise
    }

    /// `value` (an inbound node or a list of model outputs) with every reference to a layer
    /// in `names` pointing at the layer it maps to; the node and tensor indices stay, since
    /// a fused layer and its Conv2D are each called once with one output.
    private static func renamingReferences(in value: Any, _ names: [String: String]) -> Any {
        if var object = value as? [String: Any] {
            if object["class_name"] as? String == "__keras_tensor__", var config = object["config"] as? [String: Any],
               var history = config["keras_history"] as? [Any], reference(history) != nil {
                if let name = history[0] as? String, let new = names[name] { history[0] = new }
                config["keras_history"] = history
                object["config"] = config
                return object
            }
            for (key, member) in object { object[key] = renamingReferences(in: member, names) }
            return object
        }
        guard var list = value as? [Any] else { return value }
        if reference(list) != nil, let name = list[0] as? String, let new = names[name] { list[0] = new }
        return list.map { renamingReferences(in: $0, names) }
    }
}

/// What a fold run changes in a model config.
public struct KerasConfigEdit: Sendable {
    /// DOConv2D and SeparableConv2D layers that became Conv2D.
    public var folded: Set<String>
    /// Each fused BatchNormalization's name -> the Conv2D it was folded into.
    public var fusedBatchNorms: [String: String]
    /// Folded DO-DConv layers (groups = Cin) that became DepthwiseConv2D, with their depth
    /// multiplier (Cout / Cin); the other folded layers become Conv2D.
    public var depthwise: [String: Int] = [:]

    public init(folded: Set<String> = [], fusedBatchNorms: [String: String] = [:]) {
        self.folded = folded
        self.fusedBatchNorms = fusedBatchNorms
    }
}

/// Keras 3 names weight groups in `.weights.h5` files after the layer's class, not the
/// user's layer name: snake_case(class) plus a counter per class, in model order.
public enum KerasNaming {
    /// Keras' `to_snake_case`: "DOConv2D" -> "do_conv2d", "BatchNormalization" -> "batch_normalization".
    public static func snakeCase(_ name: String) -> String {
        let chars = Array(name.filter { $0.isLetter || $0.isNumber || $0 == "_" })
        // (.)([A-Z][a-z]+) -> \1_\2
        var first: [Character] = []
        for (k, c) in chars.enumerated() {
            if k > 0, c.isUppercase, k + 1 < chars.count, chars[k + 1].isLowercase { first.append("_") }
            first.append(c)
        }
        // ([a-z])([A-Z]) -> \1_\2
        var second: [Character] = []
        for (k, c) in first.enumerated() {
            if k > 0, c.isUppercase, first[k - 1].isLowercase { second.append("_") }
            second.append(c)
        }
        return String(second).lowercased()
    }

    /// The `layers/...` group name of every layer, in order, for a model with these classes.
    public static func weightPaths(classNames: [String]) -> [String] {
        var used: [String: Int] = [:]
        return classNames.map { className in
            let base = snakeCase(className)
            if let n = used[base] {
                used[base] = n + 1
                return "\(base)_\(n + 1)"
            }
            used[base] = 0
            return base
        }
    }
}
