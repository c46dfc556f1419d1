/// A model's protobuf bytes with every large `TensorProto.raw_data` payload cut out, so
/// protobuf-c unpacks (and copies) only the small part of the file; the tensor bytes stay
/// where they are, in the mapped file, and the unpacked tensors are pointed at them.
///
/// Each payload is replaced by a token, a field protobuf-c keeps as an unknown field of its
/// tensor: field number 2^29 - 1 (the largest protobuf allows, unused by ONNX), holding the
/// payload's index as 8 little-endian bytes. The lengths of the enclosing messages are
/// rewritten to match.
///
/// Only the messages that lead to tensors are walked (model, graphs, nodes, attributes,
/// sparse tensors, training info, functions: the places `TensorWalk` visits); everything
/// else is copied as it is. Anything unusual (a malformed or truncated field, a group, a
/// tensor that already uses the token's field number or has two raw_data fields, deep
/// nesting) makes the scan give up, and the caller unpacks the original bytes instead, so
/// protobuf-c alone decides what is valid.
struct WireSkeleton {
    /// The rewritten message.
    let bytes: [UInt8]
    /// payloads[k]: where the bytes token k stands for lie in the original buffer.
    let payloads: [Range<Int>]

    /// The token's field number.
    static let tokenField: UInt64 = (1 << 29) - 1
    /// Nesting deeper than this is not what exporters write; the scan gives up on it.
    static let maxDepth = 64

    /// Scans `model`; nil when no payload reaches `minimumPayload` bytes or the scan gave up.
    init?(model: UnsafeRawBufferPointer, minimumPayload: Int) {
        var scanner = Scanner(source: model, minimumPayload: max(minimumPayload, 16))
        guard let rewritten = try? scanner.rewrite(0..<model.count, kind: .model, depth: 0), !scanner.payloads.isEmpty else { return nil }
        bytes = rewritten
        payloads = scanner.payloads
    }

    /// The message types on the way to tensors.
    enum Kind {
        case model, graph, node, attribute, tensor, sparseTensor, trainingInfo, function

        /// The kind of field `field`'s submessages, when it leads to tensors.
        func child(_ field: UInt64) -> Kind? {
            switch (self, field) {
            case (.model, 7): return .graph            // ModelProto.graph
            case (.model, 20): return .trainingInfo    // ModelProto.training_info
            case (.model, 25): return .function        // ModelProto.functions
            case (.graph, 1): return .node             // GraphProto.node
            case (.graph, 5): return .tensor           // GraphProto.initializer
            case (.graph, 15): return .sparseTensor    // GraphProto.sparse_initializer
            case (.node, 5): return .attribute         // NodeProto.attribute
            case (.attribute, 5), (.attribute, 10): return .tensor       // t, tensors
            case (.attribute, 6), (.attribute, 11): return .graph        // g, graphs
            case (.attribute, 22), (.attribute, 23): return .sparseTensor // sparse_tensor(s)
            case (.sparseTensor, 1), (.sparseTensor, 2): return .tensor  // values, indices
            case (.trainingInfo, 1), (.trainingInfo, 2): return .graph   // initialization, algorithm
            case (.function, 7): return .node          // FunctionProto.node
            default: return nil
            }
        }
    }

    /// Thrown when the scan gives up.
    struct Irregular: Error {}

    struct Scanner {
        let source: UnsafeRawBufferPointer
        let minimumPayload: Int
        var payloads: [Range<Int>] = []

        static let rawDataField: UInt64 = 9

        init(source: UnsafeRawBufferPointer, minimumPayload: Int) {
            self.source = source
            self.minimumPayload = minimumPayload
        }

        /// The message in `range` with its payloads cut out, or nil when nothing in it changed.
        mutating func rewrite(_ range: Range<Int>, kind: Kind, depth: Int) throws(Irregular) -> [UInt8]? {
            guard depth < WireSkeleton.maxDepth else { throw Irregular() }
            var out: [UInt8]?
            var copied = range.lowerBound
            var position = range.lowerBound
            var sawRawData = false
            while position < range.upperBound {
                let fieldStart = position
                let key = try varint(&position, limit: range.upperBound)
                let (field, wireType) = (key >> 3, key & 7)
                guard field > 0 else { throw Irregular() }
                if kind == .tensor && field == WireSkeleton.tokenField { throw Irregular() }
                switch wireType {
                case 0:
                    _ = try varint(&position, limit: range.upperBound)
                case 1, 5:
                    let width = wireType == 1 ? 8 : 4
                    guard range.upperBound - position >= width else { throw Irregular() }
                    position += width
                case 2:
                    let length = try varint(&position, limit: range.upperBound)
                    guard length <= UInt64(range.upperBound - position) else { throw Irregular() }
                    let payload = position..<(position + Int(length))
                    position = payload.upperBound
                    if kind == .tensor && field == Scanner.rawDataField {
                        guard !sawRawData else { throw Irregular() }
                        sawRawData = true
                        guard payload.count >= minimumPayload else { continue }
                        flush(&out, from: &copied, to: fieldStart)
                        appendToken(index: payloads.count, to: &out)
                        payloads.append(payload)
                        copied = position
                    } else if let child = kind.child(field), let rewritten = try rewrite(payload, kind: child, depth: depth + 1) {
                        flush(&out, from: &copied, to: fieldStart)
                        appendVarint(key, to: &out)
                        appendVarint(UInt64(rewritten.count), to: &out)
                        out!.append(contentsOf: rewritten)
                        copied = position
                    }
                default:
                    throw Irregular() // groups (3, 4) and invalid wire types
                }
            }
            guard out != nil else { return nil }
            flush(&out, from: &copied, to: range.upperBound)
            return out
        }

        /// Appends the original bytes not yet copied, up to `end`.
        private func flush(_ out: inout [UInt8]?, from copied: inout Int, to end: Int) {
            if out == nil { out = [] }
            if end > copied {
                out!.append(contentsOf: UnsafeRawBufferPointer(rebasing: source[copied..<end]))
            }
            copied = end
        }

        private func appendToken(index: Int, to out: inout [UInt8]?) {
            appendVarint(WireSkeleton.tokenField << 3 | 2, to: &out)
            appendVarint(8, to: &out)
            withUnsafeBytes(of: UInt64(index).littleEndian) { out!.append(contentsOf: $0) }
        }

        private func appendVarint(_ value: UInt64, to out: inout [UInt8]?) {
            var value = value
            while value >= 0x80 {
                out!.append(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            out!.append(UInt8(value))
        }

        private func varint(_ position: inout Int, limit: Int) throws(Irregular) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while position < limit && shift < 64 {
                let byte = source[position]
                position += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
            throw Irregular()
        }
    }
}
