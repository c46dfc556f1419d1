import DOConvJSON
import DOConvGraph
import DOConvKeras
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import DOConvVerify

/// Why a Keras model could not be turned into a graph.
enum KerasGraphError: Error, CustomStringConvertible {
    /// A layer (or a setting of one) the converter does not implement: the end-to-end step
    /// is skipped, which is not an error of the files.
    case unsupported(layer: String, className: String, reason: String)
    /// The config or the weights do not fit together.
    case invalid(String)

    var description: String {
        switch self {
        case .unsupported(let layer, let className, let reason): return "layer '\(layer)' (\(className)): \(reason)"
        case .invalid(let message): return message
        }
    }
}

/// Turns a Keras model config (Sequential or functional) and the weights of its file into a
/// DOConvGraph `Graph` that the reference executor runs in float64.
///
/// Keras computes channels-last (NHWC); the graph computes channels-first (NCHW), as ONNX's
/// Conv and pools do. Each image input is transposed to NCHW once, and a tensor goes back to
/// NHWC only where the order of its elements matters to Keras: Flatten, Reshape, Dense and
/// the model's outputs. DOConv2D kernels are composed in the graph itself (Add of the identity,
/// Reshape, Einsum 'msi,sio->mio', Reshape, Transpose), following the Keras layer's own
/// arithmetic, so that none of the fold's code is involved.
struct KerasGraphBuilder {
    /// The model config, parsed by DOConvKeras (layer classes, inbound nodes, outputs) and
    /// as raw JSON (each layer's other settings: padding, pool sizes, shapes).
    let config: KerasModelConfig
    let rawLayers: [[String: Any]]
    let rawModel: [String: Any]
    /// The file's float datasets, by the layer they belong to.
    let weights: [String: [KerasEquivalence.Entry]]
    /// True when the config is not the weights' own (a weights-only FOLDED read with
    /// ORIGINAL's config): a BatchNormalization whose weights are gone was fused into the conv
    /// before it, and is then an identity.
    let adaptToWeights: Bool

    /// Names given to the graph outputs, in order (so that ORIGINAL's and FOLDED's match even
    /// when a fused BatchNormalization changed the layer that produces one); nil uses the
    /// producing layers' names.
    var outputNames: [String]?

    init(configJSON: String, source: String, entries: [KerasEquivalence.Entry], format: KerasFileFormat, adaptToWeights: Bool) throws(KerasGraphError) {
        do { config = try KerasModelConfig(json: configJSON, source: source) } catch { throw .invalid("\(error)") }
        guard let object = try? JSONTree.parse(configJSON) as? [String: Any],
              let model = object["config"] as? [String: Any], let list = model["layers"] as? [[String: Any]], list.count == config.layers.count else {
            throw .invalid("\(source): the model config has no layer list")
        }
        rawModel = model
        rawLayers = list
        self.adaptToWeights = adaptToWeights
        weights = Self.group(entries, format: format, config: config)
    }

    /// The file's float datasets grouped by layer name, as the file's layout names layers.
    static func group(_ entries: [KerasEquivalence.Entry], format: KerasFileFormat, config: KerasModelConfig) -> [String: [KerasEquivalence.Entry]] {
        let groupNames = KerasNaming.weightPaths(classNames: config.layers.map(\.className))
        var result: [String: [KerasEquivalence.Entry]] = [:]
        for entry in entries where !KerasEquivalence.isOptimizer(entry.path) {
            let parts = entry.key.split(separator: "/").map(String.init)
            let layer: String?
            switch format {
            case .legacyFullModel: layer = parts.count > 2 && parts[0] == "model_weights" ? parts[1] : nil
            case .legacyWeights: layer = parts.count > 1 ? parts[0] : nil
            case .weightsH5:
                if parts.count > 2, parts[0] == "layers" {
                    // Keras 3 records the user's layer name in vars/@name; without it the
                    // group name follows the classes in model order.
                    layer = parts[1].hasPrefix("@") ? String(parts[1].dropFirst()) : groupNames.firstIndex(of: parts[1]).map { config.layers[$0].name }
                } else {
                    layer = nil
                }
            }
            if let layer { result[layer, default: []].append(entry) }
        }
        // Keras' creation order: `vars/0..n` numerically, named datasets as listed.
        return result.mapValues { list in
            list.enumerated().sorted { a, b in
                let (x, y) = (Int(KerasWeightSet.baseName(a.element.key)), Int(KerasWeightSet.baseName(b.element.key)))
                if let x, let y { return x < y }
                return a.offset < b.offset
            }.map(\.element)
        }
    }

    /// Builds the graph: every layer is checked first, so an unsupported one is reported
    /// before anything else is built.
    func build() throws(KerasGraphError) -> Graph {
        for (k, layer) in config.layers.enumerated() {
            try KerasLayerOps.checkSupported(layer, raw: rawLayers[k]["config"] as? [String: Any] ?? [:])
        }
        var emitter = GraphEmitter()
        var values: [String: KerasTensor] = [:] // "layer|node|tensor" -> value
        func key(_ r: KerasModelConfig.TensorReference) -> String { key(r.layer, r.node, r.tensor) }
        func key(_ layer: String, _ node: Int, _ tensor: Int) -> String { "\(layer)|\(node)|\(tensor)" }

        let inputRefs = try inputReferences()
        for (k, layer) in config.layers.enumerated() where layer.className == "InputLayer" || (config.isSequential && k == 0) {
            let raw = rawLayers[k]["config"] as? [String: Any] ?? [:]
            let shape = try inputShape(raw, layer: layer)
            let name = layer.className == "InputLayer" ? layer.name : "\(layer.name)_input"
            let tensor = emitter.input(name: name, shape: shape, dtype: raw["dtype"] as? String)
            if layer.className == "InputLayer" {
                values[key(layer.name, 0, 0)] = tensor
            } else {
                // A Sequential model whose first layer declares the input shape itself.
                values["#sequential-input"] = tensor
            }
        }
        if config.isSequential {
            var current: KerasTensor?
            for (k, layer) in config.layers.enumerated() {
                if layer.className == "InputLayer" {
                    current = values[key(layer.name, 0, 0)]
                    continue
                }
                if current == nil, let seeded = values["#sequential-input"] { current = seeded }
                guard let input = current else { throw .invalid("the Sequential model declares no input shape") }
                current = try apply(layer, index: k, inputs: [input], call: 0, emitter: &emitter)
            }
            guard let output = current else { throw .invalid("the model has no layers") }
            emitter.output(output, name: outputNames?.first ?? config.layers.last?.name ?? "output")
        } else {
            // Functional: run the layer calls whose inputs exist until none is left (the
            // config lists layers in an order Keras can rebuild, but not necessarily calls).
            var pending: [(index: Int, call: Int)] = []
            for (k, layer) in config.layers.enumerated() where layer.className != "InputLayer" {
                for call in layer.inboundNodes.indices { pending.append((k, call)) }
            }
            while !pending.isEmpty {
                var progressed = false
                var rest: [(index: Int, call: Int)] = []
                for item in pending {
                    let layer = config.layers[item.index]
                    let refs = layer.inboundNodes[item.call]
                    let inputs = refs.compactMap { values[key($0)] }
                    guard inputs.count == refs.count, !refs.isEmpty else { rest.append(item); continue }
                    let output = try apply(layer, index: item.index, inputs: inputs, call: item.call, emitter: &emitter)
                    values[key(layer.name, item.call, 0)] = output
                    progressed = true
                }
                if !progressed {
                    let names = rest.prefix(3).map { config.layers[$0.index].name }.joined(separator: ", ")
                    throw .invalid("the inputs of layer calls \(names) are never computed")
                }
                pending = rest
            }
            let outputs = config.outputs
            guard !outputs.isEmpty, !inputRefs.isEmpty else { throw .invalid("the functional model lists no inputs or outputs") }
            for (k, reference) in outputs.enumerated() {
                guard let value = values[key(reference)] else { throw .invalid("model output '\(reference.layer)' is never computed") }
                let name = outputNames.flatMap { k < $0.count ? $0[k] : nil } ?? (outputs.count == 1 ? reference.layer : "\(reference.layer):\(reference.node):\(reference.tensor)")
                emitter.output(value, name: name)
            }
        }
        return emitter.graph
    }

    /// The functional model's `input_layers` (Keras 2: a list of `[name, node, tensor]`;
    /// Keras 3: one such list for a single input).
    private func inputReferences() throws(KerasGraphError) -> [String] {
        guard !config.isSequential else { return [] }
        guard let list = rawModel["input_layers"] as? [Any] else { return [] }
        if let name = list.first as? String { return [name] }
        return list.compactMap { ($0 as? [Any])?.first as? String }
    }

    /// An input's shape without the batch dim (None dims are symbolic, sized with --dim).
    private func inputShape(_ raw: [String: Any], layer: KerasModelConfig.Layer) throws(KerasGraphError) -> [DOConvGraph.Dimension] {
        if let shape = (raw["batch_input_shape"] ?? raw["batch_shape"]) as? [Any] { return try Self.dims(shape, layer: layer.name) }
        if config.isSequential, layer.className != "InputLayer", let shape = rawModel["build_input_shape"] as? [Any] {
            return try Self.dims(shape, layer: layer.name)
        }
        throw .invalid("layer '\(layer.name)' declares no input shape (batch_input_shape or batch_shape)")
    }

    /// `[None, 10, 10, 3]` -> [batch, 10, 10, 3].
    static func dims(_ shape: [Any], layer: String) throws(KerasGraphError) -> [DOConvGraph.Dimension] {
        var result: [DOConvGraph.Dimension] = []
        for (axis, dim) in shape.enumerated() {
            if let n = JSONNumber.int(dim) { result.append(.fixed(n)) } else if axis == 0 { result.append(.symbolic("batch")) } else {
                result.append(.symbolic("\(layer)_dim\(axis)"))
            }
        }
        guard !result.isEmpty else { throw .invalid("layer '\(layer)' declares an empty input shape") }
        return result
    }

    /// One call of a layer.
    private func apply(_ layer: KerasModelConfig.Layer, index: Int, inputs: [KerasTensor], call: Int, emitter: inout GraphEmitter) throws(KerasGraphError) -> KerasTensor {
        let raw = rawLayers[index]["config"] as? [String: Any] ?? [:]
        let set = KerasWeightSet(layer: layer.name, entries: weights[layer.name] ?? [])
        let ops = KerasLayerOps(layer: layer, raw: raw, weights: set, adaptToWeights: adaptToWeights, call: call)
        return try ops.emit(inputs: inputs, into: &emitter)
    }
}

/// A value of the graph being built, as Keras sees it: its rank, and whether a rank-4
/// tensor is held channels-first (the graph's layout) rather than as Keras holds it.
struct KerasTensor {
    var name: String
    var rank: Int
    var channelsFirst: Bool
}

/// Accumulates nodes, initializers, inputs and outputs with unique value names.
struct GraphEmitter {
    private(set) var graph = Graph(opsets: ["": 17])
    private var counter = 0

    /// A fresh value name.
    mutating func fresh(_ hint: String) -> String {
        counter += 1
        return "\(hint)#\(counter)"
    }

    /// Adds a float constant.
    mutating func constant(_ hint: String, shape: [Int], values: [Double]) -> String {
        let name = fresh(hint)
        graph.initializerOrder.append(name)
        graph.initializers[name] = TensorValue(.float, shape: shape, floats: values)
        return name
    }

    /// Adds an int64 constant (shapes, pads).
    mutating func constant(_ hint: String, ints: [Int]) -> String {
        let name = fresh(hint)
        graph.initializerOrder.append(name)
        graph.initializers[name] = TensorValue(.int64, shape: [ints.count], ints: ints.map(Int64.init))
        return name
    }

    /// Adds a node with one output and returns the output's name.
    mutating func node(_ op: String, _ inputs: [String], hint: String, _ attributes: [(name: String, value: Attribute)] = []) -> String {
        let output = fresh(hint)
        graph.nodes.append(Node(opType: op, name: output, inputs: inputs, outputs: [output], attributes: attributes))
        return output
    }

    /// A model input, declared channels-last as Keras is fed; a rank-4 input is transposed
    /// to channels-first at once.
    mutating func input(name: String, shape: [DOConvGraph.Dimension], dtype: String?) -> KerasTensor {
        let type: DataType = dtype.flatMap { DataType(name: $0) }.flatMap { $0.isFloat ? $0 : nil } ?? .float
        graph.inputs.append(ValueInfo(name: name, type: type, shape: shape))
        let tensor = KerasTensor(name: name, rank: shape.count, channelsFirst: false)
        return shape.count == 4 ? channelsFirst(tensor) : tensor
    }

    /// `tensor` held channels-first (rank 4 only).
    mutating func channelsFirst(_ tensor: KerasTensor) -> KerasTensor {
        guard tensor.rank == 4, !tensor.channelsFirst else { return tensor }
        let name = node("Transpose", [tensor.name], hint: "nchw", [("perm", .ints([0, 3, 1, 2]))])
        return KerasTensor(name: name, rank: 4, channelsFirst: true)
    }

    /// `tensor` held as Keras holds it (channels-last).
    mutating func kerasLayout(_ tensor: KerasTensor) -> KerasTensor {
        guard tensor.channelsFirst else { return tensor }
        let name = node("Transpose", [tensor.name], hint: "nhwc", [("perm", .ints([0, 2, 3, 1]))])
        return KerasTensor(name: name, rank: tensor.rank, channelsFirst: false)
    }

    /// Declares `tensor` (in Keras' layout) as the graph output `name`.
    mutating func output(_ tensor: KerasTensor, name: String) {
        let value = kerasLayout(tensor)
        graph.nodes.append(Node(opType: "Identity", name: name, inputs: [value.name], outputs: [name]))
        graph.outputs.append(ValueInfo(name: name, type: .float, shape: nil))
    }
}
