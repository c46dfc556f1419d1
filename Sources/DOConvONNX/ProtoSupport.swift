#if canImport(Glibc)
import Glibc
#endif
import CONNXProto
import CProtobufC

/// The thin helper layer over the protobuf-c structs: strings, repeated fields, allocation.
///
/// Messages are malloc'd (protobuf-c unpacks with `ProtoMemory.allocator`, which is malloc),
/// so edits allocate with malloc too and `free` can free a mixed tree. Tree memory is freed
/// through `ProtoMemory`, never with plain free: raw_data may lie in a mapped file.
package enum Proto {
    /// A C string field as a Swift string ("" when unset).
    @inline(__always)
    package static func string(_ pointer: UnsafePointer<CChar>?) -> String {
        pointer.map { String(cString: $0) } ?? ""
    }

    /// A malloc'd copy of `string` for a message field.
    static func duplicate(_ string: String) -> UnsafeMutablePointer<CChar> {
        strdup(string)!
    }

    /// A repeated field as a buffer (empty when the array is unset).
    @inline(__always)
    package static func elements<T>(_ base: UnsafeMutablePointer<T>?, _ count: Int) -> UnsafeMutableBufferPointer<T> {
        guard let base, count > 0 else { return UnsafeMutableBufferPointer(start: nil, count: 0) }
        return UnsafeMutableBufferPointer(start: base, count: count)
    }

    /// Frees one unpacked message and everything under it.
    static func free<T>(_ message: UnsafeMutablePointer<T>) {
        protobuf_c_message_free_unpacked(UnsafeMutableRawPointer(message).assumingMemoryBound(to: ProtobufCMessage.self), ProtoMemory.allocator)
    }

    /// Removes (and frees) the messages of a repeated field for which `shouldRemove` is true,
    /// keeping the order of the rest. Returns the new count.
    static func removeMessages<T>(
        _ base: UnsafeMutablePointer<UnsafeMutablePointer<T>?>?, count: Int,
        where shouldRemove: (UnsafeMutablePointer<T>) -> Bool
    ) -> Int {
        var kept = 0
        for message in elements(base, count) {
            guard let message else { continue }
            if shouldRemove(message) { free(message) } else { base![kept] = message; kept += 1 }
        }
        return kept
    }

    /// Appends `element` to a repeated field, growing its malloc'd array. Returns the new array.
    static func appending<T>(_ element: T, to base: UnsafeMutablePointer<T>?, count: Int) -> UnsafeMutablePointer<T> {
        let grown = realloc(base, (count + 1) * MemoryLayout<T>.stride)!.assumingMemoryBound(to: T.self)
        (grown + count).initialize(to: element)
        return grown
    }

    /// Allocates a message with malloc and runs its protobuf-c initializer.
    static func make<T>(_ initialize: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let message = malloc(MemoryLayout<T>.stride)!.assumingMemoryBound(to: T.self)
        initialize(message)
        return message
    }

    /// A new `key: value` entry (metadata_props, external_data).
    static func makeEntry(key: String, value: String) -> UnsafeMutablePointer<Onnx__StringStringEntryProto> {
        make { (entry: UnsafeMutablePointer<Onnx__StringStringEntryProto>) in
            onnx__string_string_entry_proto__init(entry)
            entry.pointee.key = duplicate(key)
            entry.pointee.value = duplicate(value)
        }
    }

    /// Replaces a C string field's value, freeing the old one.
    static func replace(_ field: inout UnsafeMutablePointer<CChar>?, with value: String) {
        Glibc.free(field)
        field = duplicate(value)
    }
}

/// Read access to one node of a graph.
package struct NodeView {
    package let pointer: UnsafeMutablePointer<Onnx__NodeProto>

    package init(pointer: UnsafeMutablePointer<Onnx__NodeProto>) { self.pointer = pointer }

    package var opType: String { Proto.string(pointer.pointee.op_type) }
    package var name: String { Proto.string(pointer.pointee.name) }
    /// True for the default ONNX operator domain ("" or "ai.onnx").
    var isStandardDomain: Bool {
        let domain = Proto.string(pointer.pointee.domain)
        return domain.isEmpty || domain == "ai.onnx"
    }
    package var inputs: [String] { Proto.elements(pointer.pointee.input, pointer.pointee.n_input).map { Proto.string($0) } }
    package var outputs: [String] { Proto.elements(pointer.pointee.output, pointer.pointee.n_output).map { Proto.string($0) } }

    /// True when this is the standard-domain operator `op`.
    func isOp(_ op: String) -> Bool { isStandardDomain && opType == op }

    /// The graphs its attributes hold (If's branches, Loop's and Scan's bodies), each with
    /// the attribute's name.
    var subgraphs: [(attribute: String, graph: UnsafeMutablePointer<Onnx__GraphProto>)] {
        Proto.elements(pointer.pointee.attribute, pointer.pointee.n_attribute).compactMap { $0 }.flatMap { attribute in
            let graphs = [attribute.pointee.g].compactMap { $0 } + Proto.elements(attribute.pointee.graphs, attribute.pointee.n_graphs).compactMap { $0 }
            return graphs.map { (Proto.string(attribute.pointee.name), $0) }
        }
    }

    func attribute(_ name: String) -> UnsafeMutablePointer<Onnx__AttributeProto>? {
        for attribute in Proto.elements(pointer.pointee.attribute, pointer.pointee.n_attribute) {
            if let attribute, Proto.string(attribute.pointee.name) == name { return attribute }
        }
        return nil
    }

    func intAttribute(_ name: String) -> Int64? {
        guard let attribute = attribute(name), attribute.pointee.has_i != 0 || attribute.pointee.type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT else { return nil }
        return attribute.pointee.i
    }

    func floatAttribute(_ name: String) -> Float? {
        guard let attribute = attribute(name), attribute.pointee.has_f != 0 || attribute.pointee.type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT else { return nil }
        return attribute.pointee.f
    }

    func intsAttribute(_ name: String) -> [Int64]? {
        guard let attribute = attribute(name) else { return nil }
        return Array(Proto.elements(attribute.pointee.ints, attribute.pointee.n_ints))
    }

    func stringAttribute(_ name: String) -> String? {
        guard let attribute = attribute(name), attribute.pointee.has_s != 0 else { return nil }
        let s = attribute.pointee.s
        guard s.len > 0, let data = s.data else { return "" }
        return String(decoding: UnsafeBufferPointer(start: data, count: s.len), as: UTF8.self)
    }

    func tensorAttribute(_ name: String) -> UnsafeMutablePointer<Onnx__TensorProto>? {
        attribute(name)?.pointee.t
    }
}
