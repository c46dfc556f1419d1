/// A variable of an object-based checkpoint: its bundle entry joined with what the object
/// graph says of it.
public struct CheckpointVariable: Sendable, Equatable {
    /// Where an optimizer slot belongs (legacy Keras optimizers' m and v).
    public struct Slot: Sendable, Equatable {
        public var name: String
        /// The object path of the variable it is the slot of.
        public var variablePath: [String]
        /// The object path of the optimizer.
        public var optimizerPath: [String]
    }

    /// The bundle key, e.g. `layer_with_weights-0/D/.ATTRIBUTES/VARIABLE_VALUE`.
    public var key: String
    /// The variable's name in the program that saved it (Keras: `do_stem/D`; the new Keras
    /// optimizers: `Adam/m/do_stem/D`).
    public var fullName: String
    /// The attribute's name, "VARIABLE_VALUE" for a variable.
    public var attributeName: String
    public var nodeID: Int
    /// Local names from the root to the variable's object, e.g. `["layer_with_weights-0",
    /// "D"]` (see `TrackableObjectGraph.objectPaths()` for slots).
    public var objectPath: [String]
    public var dtype: TensorFlowDataType
    public var shape: [Int]
    /// Set when the object graph lists the variable as an optimizer's slot.
    public var slot: Slot?

    /// The object path as keys spell it: the key is this + "/.ATTRIBUTES/" + attribute name.
    public var keyPath: String { TrackableObjectGraph.keyPath(objectPath) }

    /// Optimizer state rather than a model weight: a slot, or a variable below an object
    /// named `optimizer` (what Keras and `tf.train.Checkpoint(optimizer=...)` call it; the
    /// new Keras optimizers hold m and v as children, `optimizer/_variables/N`).
    public var isOptimizerState: Bool { slot != nil || objectPath.contains("optimizer") }

    /// A compiled metric's running state (a SavedModel's `keras_api/metrics/N/total`).
    public var isMetricState: Bool { objectPath.starts(with: ["keras_api", "metrics"]) }

    /// Training state rather than the model: what a folded checkpoint leaves out. Set from
    /// the object graph (`TrackableObjectGraph.modelNodes`), the same objects the fold prunes.
    public var isTrainingState: Bool
}

extension TensorBundle {
    /// The object graph of an object-based checkpoint.
    public func objectGraph() throws(TensorFlowError) -> TrackableObjectGraph {
        let indexPath = Self.indexPath(prefix: prefix)
        guard contains(Self.objectGraphKey) else {
            throw .unsupported(path: indexPath, reason: "no \(Self.objectGraphKey): a name-based (TF1 Saver) checkpoint, which has no object graph")
        }
        let strings = try strings(Self.objectGraphKey)
        guard strings.count == 1, let serialized = strings.first else {
            throw .corruptObjectGraph(path: indexPath, reason: "\(Self.objectGraphKey) holds \(strings.count) strings, not one")
        }
        return try TrackableObjectGraph(serialized: serialized, path: indexPath)
    }

    /// Every variable the object graph names, in key order; the bundle's other keys (the
    /// graph itself, the entries of slices) are not variables. Every key the graph names
    /// must have an entry, and every variable a path from the root.
    public func variables() throws(TensorFlowError) -> [CheckpointVariable] {
        let indexPath = Self.indexPath(prefix: prefix)
        let graph = try objectGraph()
        let paths = graph.objectPaths()
        let model = graph.modelNodes()
        var slots: [Int: CheckpointVariable.Slot] = [:]
        for (owner, node) in graph.nodes.enumerated() {
            for slot in node.slotVariables {
                guard let variable = paths[slot.originalVariableNodeID], let optimizer = paths[owner] else { continue }
                slots[slot.slotVariableNodeID] = CheckpointVariable.Slot(name: slot.slotName, variablePath: variable, optimizerPath: optimizer)
            }
        }
        var byKey: [String: CheckpointVariable] = [:]
        for (nodeID, node) in graph.nodes.enumerated() {
            for attribute in node.attributes {
                guard let entry = entryIfPresent(attribute.checkpointKey) else {
                    throw .corruptObjectGraph(path: indexPath, reason: "node \(nodeID) saves '\(attribute.checkpointKey)', which has no entry in the bundle")
                }
                guard let path = paths[nodeID] else {
                    throw .corruptObjectGraph(path: indexPath, reason: "node \(nodeID) saves '\(attribute.checkpointKey)' but no path from the root reaches it")
                }
                let variable = CheckpointVariable(
                    key: attribute.checkpointKey, fullName: attribute.fullName, attributeName: attribute.name, nodeID: nodeID,
                    objectPath: path, dtype: entry.dtype, shape: entry.shape, slot: slots[nodeID], isTrainingState: !model.contains(nodeID))
                guard byKey.updateValue(variable, forKey: variable.key) == nil else {
                    throw .corruptObjectGraph(path: indexPath, reason: "two attributes save '\(attribute.checkpointKey)'")
                }
            }
        }
        return byKey.values.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
    }

    private func entryIfPresent(_ key: String) -> BundleEntry? {
        contains(key) ? try? entry(key) : nil
    }
}
