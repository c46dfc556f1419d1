import DOConvFileIO
import CONNXProto
import CProtobufC

/// Turns a mapped model file into protobuf-c's message tree without copying tensor data:
/// the small rest of the file (a `WireSkeleton`) is unpacked and large raw_data fields point
/// into the mapping, which then owns them (`ProtoMemory`). Falls back to unpacking the whole
/// file when the skeleton does not apply, so the result is the same message tree either way.
enum ModelUnpacker {
    /// raw_data payloads from this size up stay in the file; smaller ones are copied, which
    /// costs less than keeping track of them.
    static let borrowedPayloadSize = 16 << 10

    /// The unpacked model, and whether its raw_data points into `mapping` (which must then
    /// outlive it, and be given back with `BorrowedFiles.shared.remove` once the tree is
    /// freed); nil when the bytes are not a ModelProto. Free the tree with `Proto.free`.
    static func unpack(_ mapping: MappedFile, borrowedPayloadSize: Int = borrowedPayloadSize) -> (proto: UnsafeMutablePointer<Onnx__ModelProto>, borrows: Bool)? {
        let file = mapping.bytes
        if let skeleton = WireSkeleton(model: file, minimumPayload: borrowedPayloadSize) {
            let unpacked = skeleton.bytes.withUnsafeBufferPointer { onnx__model_proto__unpack(ProtoMemory.allocator, $0.count, $0.baseAddress) }
            if let proto = unpacked {
                BorrowedFiles.shared.add(file)
                if attach(skeleton.payloads, in: file, to: proto) { return (proto, true) }
                Proto.free(proto)
                BorrowedFiles.shared.remove(file)
            }
        }
        guard let base = file.baseAddress,
              let proto = onnx__model_proto__unpack(ProtoMemory.allocator, file.count, base.assumingMemoryBound(to: UInt8.self)) else { return nil }
        return (proto, false)
    }

    /// Points every token's tensor at its payload in `file` and drops the token. False when
    /// the tokens do not map one to one onto tensors without raw_data (protobuf-c merged
    /// repeated singular fields, for example): the caller then unpacks the original.
    private static func attach(_ payloads: [Range<Int>], in file: UnsafeRawBufferPointer, to proto: UnsafeMutablePointer<Onnx__ModelProto>) -> Bool {
        guard let base = file.baseAddress else { return false }
        var attached = [Bool](repeating: false, count: payloads.count)
        var consistent = true
        try? TensorWalk.forEachTensor(in: proto) { tensor in
            guard consistent else { return }
            let message = UnsafeMutableRawPointer(tensor).assumingMemoryBound(to: ProtobufCMessage.self)
            let fields = Proto.elements(message.pointee.unknown_fields, Int(message.pointee.n_unknown_fields))
            let tokens = fields.indices.filter { UInt64(fields[$0].tag) == WireSkeleton.tokenField }
            guard let slot = tokens.first else { return }
            guard tokens.count == 1, tensor.pointee.has_raw_data == 0, let index = tokenIndex(fields[slot]) else { consistent = false; return }
            guard index < UInt64(payloads.count), !attached[Int(index)] else { consistent = false; return }
            attached[Int(index)] = true
            // Drop the token, keeping any other unknown fields in order.
            ProtoMemory.free(fields[slot].data)
            for k in slot..<(fields.count - 1) { fields[k] = fields[k + 1] }
            message.pointee.n_unknown_fields -= 1
            let payload = payloads[Int(index)]
            tensor.pointee.raw_data = ProtobufCBinaryData(
                len: payload.count,
                data: UnsafeMutablePointer(mutating: (base + payload.lowerBound).assumingMemoryBound(to: UInt8.self)))
            tensor.pointee.has_raw_data = 1
        }
        return consistent && !attached.contains(false)
    }

    /// The payload index a token holds. protobuf-c keeps a length-delimited unknown field
    /// with its length prefix (here the single byte 8) in front of the value.
    private static func tokenIndex(_ field: ProtobufCMessageUnknownField) -> UInt64? {
        guard field.wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, let data = field.data else { return nil }
        let value: UnsafeRawPointer
        switch field.len {
        case 9 where data[0] == 8: value = UnsafeRawPointer(data + 1)
        case 8: value = UnsafeRawPointer(data)
        default: return nil
        }
        return UInt64(littleEndian: value.loadUnaligned(as: UInt64.self))
    }
}
