import CProtobufC
import CTFProto
#if canImport(Glibc)
import Glibc
#endif

extension TrackableObjectGraph {
    /// The graph's wire bytes: protobuf-c packs the schema's TrackableObjectGraph built from
    /// these nodes (fields TensorFlow leaves empty are left out, as it does).
    public func serialized() -> [UInt8] {
        let arena = CArena()
        defer { arena.freeAll() }
        typealias Object = Tensorflow__TrackableObjectGraph__TrackableObject
        let objects = arena.pointers(to: Object.self, count: nodes.count)
        for (k, node) in nodes.enumerated() {
            let object = arena.message(Object.self) { tensorflow__trackable_object_graph__trackable_object__init($0) }
            object.pointee.n_children = node.children.count
            object.pointee.children = arena.pointers(node.children) { child, reference in
                tensorflow__trackable_object_graph__trackable_object__object_reference__init(reference)
                reference.pointee.node_id = Int32(clamping: child.nodeID)
                reference.pointee.local_name = arena.string(child.localName)
            }
            object.pointee.n_attributes = node.attributes.count
            object.pointee.attributes = arena.pointers(node.attributes) { attribute, tensor in
                tensorflow__trackable_object_graph__trackable_object__serialized_tensor__init(tensor)
                tensor.pointee.name = arena.string(attribute.name)
                tensor.pointee.full_name = arena.string(attribute.fullName)
                tensor.pointee.checkpoint_key = arena.string(attribute.checkpointKey)
            }
            object.pointee.n_slot_variables = node.slotVariables.count
            object.pointee.slot_variables = arena.pointers(node.slotVariables) { slot, reference in
                tensorflow__trackable_object_graph__trackable_object__slot_variable_reference__init(reference)
                reference.pointee.original_variable_node_id = Int32(clamping: slot.originalVariableNodeID)
                reference.pointee.slot_name = arena.string(slot.slotName)
                reference.pointee.slot_variable_node_id = Int32(clamping: slot.slotVariableNodeID)
            }
            if let saver = node.registeredSaver {
                object.pointee.registered_saver = arena.message(Tensorflow__RegisteredSaver.self) {
                    tensorflow__registered_saver__init($0)
                    $0.pointee.name = arena.string(saver.name)
                    $0.pointee.object_name = arena.string(saver.objectName)
                }
            }
            if let values = node.hasCheckpointValues {
                object.pointee.has_checkpoint_values = arena.message(Tensorflow__BoolValue.self) {
                    tensorflow__bool_value__init($0)
                    $0.pointee.value = values ? 1 : 0
                }
            }
            objects?[k] = object
        }
        var graph = Tensorflow__TrackableObjectGraph()
        tensorflow__trackable_object_graph__init(&graph)
        graph.n_nodes = nodes.count
        graph.nodes = objects
        return packedBytes(tensorflow__trackable_object_graph__get_packed_size(&graph)) { tensorflow__trackable_object_graph__pack(&graph, $0) }
    }

    /// The graph without `removed` and without every node no path from the root reaches
    /// once they are gone (a layer's D, an optimizer and its state), renumbered in order;
    /// slot variables that name a node left out go too. `kept[old]` is a node's new id.
    public func removing(_ removed: Set<Int>) -> (graph: TrackableObjectGraph, kept: [Int: Int]) {
        var reached = Set<Int>()
        var queue = removed.contains(0) ? [] : [0]
        reached.formUnion(queue)
        var next = 0
        func visit(_ id: Int) {
            guard !removed.contains(id), reached.insert(id).inserted else { return }
            queue.append(id)
        }
        while next < queue.count {
            let node = nodes[queue[next]]
            next += 1
            for child in node.children { visit(child.nodeID) }
            // A slot variable lives as long as its optimizer and its variable do.
            for slot in node.slotVariables where !removed.contains(slot.originalVariableNodeID) { visit(slot.slotVariableNodeID) }
        }
        let order = reached.sorted()
        var kept: [Int: Int] = [:]
        for (new, old) in order.enumerated() { kept[old] = new }
        let renumbered = order.map { old -> Node in
            var node = nodes[old]
            node.children = node.children.compactMap { child in kept[child.nodeID].map { Child(nodeID: $0, localName: child.localName) } }
            node.slotVariables = node.slotVariables.compactMap { slot in
                guard let original = kept[slot.originalVariableNodeID], let variable = kept[slot.slotVariableNodeID] else { return nil }
                return SlotVariable(originalVariableNodeID: original, slotName: slot.slotName, slotVariableNodeID: variable)
            }
            return node
        }
        return (TrackableObjectGraph(nodes: renumbered), kept)
    }
}
