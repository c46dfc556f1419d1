import CProtobufC
import CTFProto

/// The objects an object-based checkpoint was saved from (the TrackableObjectGraph proto
/// under the key `_CHECKPOINTABLE_OBJECT_GRAPH`): node 0 is the root (the Keras model for
/// `save_weights`, the `tf.train.Checkpoint` otherwise); edges are named by the attribute
/// that holds the child (`layer_with_weights-0`, `kernel`, `optimizer`); a node that is a
/// variable has an attribute naming its checkpoint key and its `full_name` (Keras:
/// `layer_name/weight_name`).
public struct TrackableObjectGraph: Sendable, Equatable {
    public struct Child: Sendable, Equatable {
        public var nodeID: Int
        public var localName: String
    }

    /// A tensor an object saves (a variable: name "VARIABLE_VALUE").
    public struct Attribute: Sendable, Equatable {
        public var name: String
        public var fullName: String
        public var checkpointKey: String
    }

    /// An optimizer's per-variable state (the legacy Keras optimizers' m and v), which the
    /// optimizer node lists instead of holding it as a child.
    public struct SlotVariable: Sendable, Equatable {
        public var originalVariableNodeID: Int
        public var slotName: String
        public var slotVariableNodeID: Int
    }

    /// A saver registered with `tf.saved_model.register_checkpoint_saver`.
    public struct RegisteredSaver: Sendable, Equatable {
        public var name: String
        public var objectName: String
    }

    public struct Node: Sendable, Equatable {
        public var children: [Child] = []
        public var attributes: [Attribute] = []
        public var slotVariables: [SlotVariable] = []
        /// The registered saver an object saves itself with, if any.
        public var registeredSaver: RegisteredSaver?
        /// Whether the object or its descendants hold saved values; nil when not recorded.
        public var hasCheckpointValues: Bool?
    }

    public var nodes: [Node]

    /// A graph of these nodes (ids are positions; node 0 is the root).
    public init(nodes: [Node]) {
        self.nodes = nodes
    }

    /// Decodes a serialized graph; every node id it names must be a node of it. `path` names
    /// the file in errors.
    public init(serialized: [UInt8], path: String) throws(TensorFlowError) {
        let nodes: [Node]? = serialized.withUnsafeBufferPointer { buffer in
            guard let message = tensorflow__trackable_object_graph__unpack(nil, buffer.count, buffer.baseAddress) else { return nil }
            defer { tensorflow__trackable_object_graph__free_unpacked(message, nil) }
            let graph = message.pointee
            return (0..<graph.n_nodes).map { k in
                guard let node = graph.nodes[k]?.pointee else { return Node() }
                var out = Node()
                out.children = (0..<node.n_children).compactMap { c in
                    node.children[c].map { Child(nodeID: Int($0.pointee.node_id), localName: text($0.pointee.local_name)) }
                }
                out.attributes = (0..<node.n_attributes).compactMap { a in
                    node.attributes[a].map { Attribute(name: text($0.pointee.name), fullName: text($0.pointee.full_name), checkpointKey: text($0.pointee.checkpoint_key)) }
                }
                out.slotVariables = (0..<node.n_slot_variables).compactMap { s in
                    node.slot_variables[s].map {
                        SlotVariable(originalVariableNodeID: Int($0.pointee.original_variable_node_id), slotName: text($0.pointee.slot_name), slotVariableNodeID: Int($0.pointee.slot_variable_node_id))
                    }
                }
                out.registeredSaver = node.registered_saver.map { RegisteredSaver(name: text($0.pointee.name), objectName: text($0.pointee.object_name)) }
                out.hasCheckpointValues = node.has_checkpoint_values.map { $0.pointee.value != 0 }
                return out
            }
        }
        guard let nodes else { throw .corruptObjectGraph(path: path, reason: "not a TrackableObjectGraph") }
        guard !nodes.isEmpty else { throw .corruptObjectGraph(path: path, reason: "no root object") }
        let range = 0..<nodes.count
        for (k, node) in nodes.enumerated() {
            for child in node.children where !range.contains(child.nodeID) {
                throw .corruptObjectGraph(path: path, reason: "node \(k)'s child '\(child.localName)' is node \(child.nodeID), of \(nodes.count)")
            }
            for slot in node.slotVariables where !range.contains(slot.originalVariableNodeID) || !range.contains(slot.slotVariableNodeID) {
                throw .corruptObjectGraph(path: path, reason: "node \(k)'s slot '\(slot.slotName)' names nodes \(slot.originalVariableNodeID) and \(slot.slotVariableNodeID), of \(nodes.count)")
            }
        }
        self.nodes = nodes
    }

    /// The path of local names from the root to every node, nil for a node no edge reaches.
    ///
    /// As TensorFlow names keys: breadth first from the root, children in order, the first
    /// path found wins. A slot variable's path is its variable's, then `.OPTIMIZER_SLOT`,
    /// the optimizer's path and the slot name (`kernel/.OPTIMIZER_SLOT/optimizer/m`).
    public func objectPaths() -> [[String]?] {
        var paths = [[String]?](repeating: nil, count: nodes.count)
        paths[0] = []
        var queue = [0]
        var next = 0
        while next < queue.count {
            let node = queue[next]
            next += 1
            let path = paths[node] ?? []
            for child in nodes[node].children where paths[child.nodeID] == nil {
                paths[child.nodeID] = path + [child.localName]
                queue.append(child.nodeID)
            }
        }
        for (owner, node) in nodes.enumerated() {
            for slot in node.slotVariables where paths[slot.slotVariableNodeID] == nil {
                guard let original = paths[slot.originalVariableNodeID], let optimizer = paths[owner] else { continue }
                paths[slot.slotVariableNodeID] = original + [Self.slotMarker] + optimizer + [slot.slotName]
            }
        }
        return paths
    }

    /// The objects that hold training state rather than the model: every child named
    /// `optimizer` (Keras models and `tf.train.Checkpoint(optimizer=...)`; its slots were
    /// shaped for the trained variables) and a SavedModel's compiled metrics
    /// (`keras_api/metrics`).
    public func trainingStateRoots() -> Set<Int> {
        var roots = Set<Int>()
        for node in nodes {
            for child in node.children where child.localName == "optimizer" { roots.insert(child.nodeID) }
        }
        for child in nodes[0].children where child.localName == "keras_api" {
            for metrics in nodes[child.nodeID].children where metrics.localName == "metrics" { roots.insert(metrics.nodeID) }
        }
        return roots
    }

    /// The model's objects: those the root reaches through children without passing a
    /// training-state root (slot variables hang off their optimizer, so they are not here).
    public func modelNodes() -> Set<Int> {
        let excluded = trainingStateRoots()
        var reached: Set<Int> = [0]
        var queue = [0]
        while let node = queue.popLast() {
            for child in nodes[node].children where !excluded.contains(child.nodeID) && reached.insert(child.nodeID).inserted {
                queue.append(child.nodeID)
            }
        }
        return reached
    }

    /// The path component that separates a slot variable's variable from its optimizer.
    public static let slotMarker = ".OPTIMIZER_SLOT"

    /// A path as it appears in checkpoint keys: components joined by "/", with "." doubled
    /// and "/" written ".S" inside a component (the slot marker is kept as is).
    public static func keyPath(_ path: [String]) -> String {
        path.map { $0 == slotMarker ? $0 : escape($0) }.joined(separator: "/")
    }

    /// One local name as TensorFlow escapes it in keys.
    public static func escape(_ localName: String) -> String {
        localName.replacing(".", with: "..").replacing("/", with: ".S")
    }
}

/// A protobuf-c string field (NUL-terminated; protobuf-c gives "" for an absent one).
private func text(_ field: UnsafeMutablePointer<CChar>?) -> String {
    field.map { String(cString: $0) } ?? ""
}
