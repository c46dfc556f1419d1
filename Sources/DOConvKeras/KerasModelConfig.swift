import Foundation

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

        /// True for the DO-Conv layer class (its registered name may carry a package prefix).
        public var isDOConv: Bool { className == "DOConv2D" }

        /// True for a SeparableConv2D that is a DO-Conv in feature-composition form
        /// (depth_multiplier >= M*N), or any one when `separable` asks for all.
        public func isFoldableSeparable(foldSeparable separable: Bool) -> Bool {
            guard className == "SeparableConv2D", let multiplier = separableDepthMultiplier, let size = kernelSize, size.count == 2 else { return false }
            return separable || multiplier >= size[0] * size[1]
        }
    }

    private var root: [String: Any]
    public private(set) var layers: [Layer]

    /// Parses the config JSON; `source` names where it came from, for messages.
    public init(json: String, source: String) throws(KerasError) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed]),
              let root = object as? [String: Any] else {
            throw .config(path: source, reason: "not a JSON object")
        }
        guard let config = root["config"] as? [String: Any], let layerList = config["layers"] as? [[String: Any]] else {
            throw .config(path: source, reason: "no layer list (only Sequential and functional models are supported)")
        }
        self.root = root
        self.layers = layerList.map(Self.layer)
    }

    private static func layer(_ entry: [String: Any]) -> Layer {
        let config = entry["config"] as? [String: Any] ?? [:]
        // Registered custom classes appear as "package>Class" (Keras 3's legacy h5 writes it
        // as the class name, its JSON as registered_name).
        var className = entry["class_name"] as? String ?? ""
        if let registered = entry["registered_name"] as? String, registered.hasSuffix(">DOConv2D") { className = "DOConv2D" }
        if className.hasSuffix(">DOConv2D") { className = "DOConv2D" }
        func int(_ key: String) -> Int? { (config[key] as? NSNumber)?.intValue }
        return Layer(
            name: config["name"] as? String ?? entry["name"] as? String ?? "",
            className: className,
            kernelSize: (config["kernel_size"] as? [NSNumber])?.map(\.intValue) ?? int("kernel_size").map { [$0, $0] },
            groups: int("groups"),
            depthMultiplier: int("D_mul"),
            filters: int("filters"),
            strides: (config["strides"] as? [NSNumber])?.map(\.intValue),
            dilation: (config["dilation_rate"] as? [NSNumber])?.map(\.intValue),
            separableDepthMultiplier: className == "SeparableConv2D" ? int("depth_multiplier") : nil)
    }

    /// The layer called `name`.
    public func layer(named name: String) -> Layer? { layers.first { $0.name == name } }

    /// This config as JSON with the named DOConv2D layers turned into Conv2D: class name,
    /// module and registered name of the built-in layer, `D_mul` dropped, `groups` kept.
    public func foldedJSON(layers folded: Set<String>) -> String {
        var root = self.root
        if var config = root["config"] as? [String: Any], var list = config["layers"] as? [[String: Any]] {
            for k in list.indices {
                guard var layerConfig = list[k]["config"] as? [String: Any],
                      let name = layerConfig["name"] as? String ?? list[k]["name"] as? String, folded.contains(name) else { continue }
                layerConfig.removeValue(forKey: "D_mul")
                // A folded SeparableConv2D keeps only what Conv2D takes.
                for key in layerConfig.keys where key == "depth_multiplier" || key.hasPrefix("depthwise_") || key.hasPrefix("pointwise_") {
                    layerConfig.removeValue(forKey: key)
                }
                list[k]["config"] = layerConfig
                list[k]["class_name"] = "Conv2D"
                if list[k]["module"] != nil { list[k]["module"] = "keras.layers" }
                if list[k]["registered_name"] != nil { list[k]["registered_name"] = NSNull() }
            }
            config["layers"] = list
            root["config"] = config
        }
        guard let data = try? JSONSerialization.data(withJSONObject: root, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
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
