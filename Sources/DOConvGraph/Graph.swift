/// A small, format-independent graph IR: what the reference executor runs and what the
/// structural comparison of two models walks. Pure Swift, no I/O.
///
/// Values follow ONNX semantics (names, op types, attributes), but nothing here depends on
/// protobuf: the verification side (DOConvVerify's `ONNXGraphImport`) converts a model into a `Graph`.

/// Element types, numbered as ONNX's TensorProto.DataType.
public enum DataType: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7, string = 8, bool = 9
    case float16 = 10, double = 11, uint32 = 12, uint64 = 13, complex64 = 14, complex128 = 15, bfloat16 = 16

    /// Floating-point types: held as `[Double]`.
    public var isFloat: Bool { [.float, .float16, .double, .bfloat16].contains(self) }
    /// Integer types and bool: held as `[Int64]`.
    public var isInteger: Bool { [.uint8, .int8, .uint16, .int16, .int32, .int64, .bool, .uint32, .uint64].contains(self) }

    public var description: String {
        switch self {
        case .float: return "float32"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .int32: return "int32"
        case .int64: return "int64"
        case .string: return "string"
        case .bool: return "bool"
        case .float16: return "float16"
        case .double: return "float64"
        case .uint32: return "uint32"
        case .uint64: return "uint64"
        case .complex64: return "complex64"
        case .complex128: return "complex128"
        case .bfloat16: return "bfloat16"
        }
    }

    /// Parses the names `description` gives (and numpy's spellings).
    public init?(name: String) {
        switch name {
        case "float32", "float": self = .float
        case "float64", "double": self = .double
        case "float16", "half": self = .float16
        case "bfloat16": self = .bfloat16
        case "int64": self = .int64
        case "int32": self = .int32
        case "int16": self = .int16
        case "int8": self = .int8
        case "uint8": self = .uint8
        case "uint16": self = .uint16
        case "uint32": self = .uint32
        case "uint64": self = .uint64
        case "bool": self = .bool
        default: return nil
        }
    }
}

/// A dense row-major tensor. Floating types compute in Float64; integer types and bool in
/// Int64; anything else (strings, complex) is kept as opaque bytes, only to be compared.
public struct TensorValue: Equatable, Sendable {
    public enum Storage: Equatable, Sendable {
        case floats([Double])
        case ints([Int64])
        /// Data the executor does not compute with (strings, complex), compared as bytes.
        case opaque([UInt8])
    }

    public var type: DataType
    public var shape: [Int]
    public var storage: Storage

    public init(type: DataType, shape: [Int], storage: Storage) {
        self.type = type
        self.shape = shape
        self.storage = storage
    }

    /// A floating tensor (`type` must be a float type).
    public init(_ type: DataType = .float, shape: [Int], floats: [Double]) {
        precondition(type.isFloat)
        self.init(type: type, shape: shape, storage: .floats(floats))
    }

    /// An integer (or bool) tensor.
    public init(_ type: DataType = .int64, shape: [Int], ints: [Int64]) {
        precondition(type.isInteger)
        self.init(type: type, shape: shape, storage: .ints(ints))
    }

    public static func scalar(_ value: Double, type: DataType = .float) -> TensorValue { TensorValue(type, shape: [], floats: [value]) }
    public static func scalar(_ value: Int64, type: DataType = .int64) -> TensorValue { TensorValue(type, shape: [], ints: [value]) }

    /// Number of elements (the product of `shape`). The executor holds only shapes whose
    /// product was checked: a file tensor's dims at import, an op output's in ReferenceExecutor.run.
    public var count: Int { shape.reduce(1, *) } // checked shapes only (see above): cannot overflow
    public var rank: Int { shape.count }

    /// Values as Double (integers converted); empty for opaque data.
    public var doubles: [Double] {
        switch storage {
        case .floats(let v): return v
        case .ints(let v): return v.map { Double($0) }
        case .opaque: return []
        }
    }

    /// Values as Int64 (floats truncated toward zero); empty for opaque data.
    public var int64s: [Int64] {
        switch storage {
        case .ints(let v): return v
        case .floats(let v): return v.map { $0.isFinite ? Int64(clamping: Int64(exactly: $0.rounded(.towardZero)) ?? ($0 < 0 ? Int64.min : Int64.max)) : 0 }
        case .opaque: return []
        }
    }

    /// Bytes the values take in memory (8 per number, 1 per opaque byte).
    public var byteCount: Int {
        switch storage {
        case .floats(let v): return v.count * 8
        case .ints(let v): return v.count * 8
        case .opaque(let v): return v.count
        }
    }

    /// Row-major strides of `shape`.
    public var strides: [Int] { TensorValue.strides(of: shape) }

    public static func strides(of shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = running
            running *= shape[axis]
        }
        return strides
    }

    /// The multi-index of flat position `flat` in `shape`.
    public static func index(of flat: Int, in shape: [Int]) -> [Int] {
        var rest = flat
        var index = [Int](repeating: 0, count: shape.count)
        for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] > 0 {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
        }
        return index
    }
}

/// One dimension of a declared shape.
public enum Dimension: Equatable, Sendable, CustomStringConvertible {
    case fixed(Int)
    /// A named symbolic dimension ("batch").
    case symbolic(String)
    /// Neither a value nor a name.
    case unknown

    public var description: String {
        switch self {
        case .fixed(let n): return String(n)
        case .symbolic(let s): return s
        case .unknown: return "?"
        }
    }
}

/// A declared graph input or output.
public struct ValueInfo: Equatable, Sendable {
    public var name: String
    /// Nil when the value is not a tensor (or has no declared type).
    public var type: DataType?
    /// Nil when the rank is unknown.
    public var shape: [Dimension]?

    public init(name: String, type: DataType?, shape: [Dimension]?) {
        self.name = name
        self.type = type
        self.shape = shape
    }
}

/// An attribute value.
public indirect enum Attribute: Equatable, Sendable, CustomStringConvertible {
    case int(Int64)
    case float(Double)
    /// Bytes, kept as a string (UTF-8 decoding of the bytes).
    case string(String)
    case tensor(TensorValue)
    case graph(Graph)
    case ints([Int64])
    case floats([Double])
    case strings([String])
    case tensors([TensorValue])
    case graphs([Graph])
    /// A kind the IR does not model (sparse tensors, type protos); `summary` names it and
    /// `bytes` identifies its content for comparison.
    case other(summary: String, bytes: [UInt8])

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v): return String(v)
        case .string(let s): return "'\(s)'"
        case .tensor(let t): return "tensor \(t.type) \(t.shape)"
        case .graph(let g): return "graph '\(g.name)' (\(g.nodes.count) nodes)"
        case .ints(let v): return "\(v)"
        case .floats(let v): return "\(v)"
        case .strings(let v): return "\(v)"
        case .tensors(let v): return "\(v.count) tensors"
        case .graphs(let v): return "\(v.count) graphs"
        case .other(let summary, _): return summary
        }
    }
}

/// One operator application.
public struct Node: Equatable, Sendable {
    public var opType: String
    /// "" for the default ONNX domain ("ai.onnx" is normalized to "").
    public var domain: String
    public var name: String
    /// Input value names; "" marks an omitted optional input.
    public var inputs: [String]
    public var outputs: [String]
    /// Attributes in their stored order.
    public var attributes: [(name: String, value: Attribute)]
    /// The overload of the local function a call names ("" for none).
    public var overload = ""

    public init(opType: String, domain: String = "", name: String = "", inputs: [String], outputs: [String],
                attributes: [(name: String, value: Attribute)] = []) {
        self.opType = opType
        self.domain = domain == "ai.onnx" ? "" : domain
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    public subscript(attribute name: String) -> Attribute? {
        attributes.first { $0.name == name }?.value
    }

    public var isStandardDomain: Bool { domain.isEmpty }

    public static func == (a: Node, b: Node) -> Bool {
        a.opType == b.opType && a.domain == b.domain && a.overload == b.overload && a.name == b.name && a.inputs == b.inputs && a.outputs == b.outputs
            && a.attributes.count == b.attributes.count
            && zip(a.attributes, b.attributes).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

/// A computation graph with its constants and interface, plus the few model-level facts
/// (opsets, metadata) that affect semantics or identity.
public struct Graph: Equatable, Sendable {
    public var name: String
    /// Nodes in their stored (topological) order.
    public var nodes: [Node]
    /// Initializer names in their stored order.
    public var initializerOrder: [String]
    public var initializers: [String: TensorValue]
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    /// Operator set versions by domain ("" for the default domain).
    public var opsets: [String: Int64]
    /// Model metadata entries in stored order.
    public var metadata: [(key: String, value: String)]
    /// The model's local functions (main graph only; nodes call them by domain and name).
    public var functions: [LocalFunction] = []

    public init(name: String = "", nodes: [Node] = [], initializers: [(String, TensorValue)] = [], inputs: [ValueInfo] = [],
                outputs: [ValueInfo] = [], opsets: [String: Int64] = ["": 17], metadata: [(key: String, value: String)] = []) {
        self.name = name
        self.nodes = nodes
        self.initializerOrder = initializers.map(\.0)
        self.initializers = Dictionary(initializers, uniquingKeysWith: { _, last in last })
        self.inputs = inputs
        self.outputs = outputs
        self.opsets = opsets
        self.metadata = metadata
    }

    /// The default-domain opset version.
    public var opset: Int64 { opsets[""] ?? opsets["ai.onnx"] ?? 1 }

    /// Graph inputs that are not initializers: what a caller must feed.
    public var feedInputs: [ValueInfo] { inputs.filter { initializers[$0.name] == nil } }

    /// The node producing each value.
    public var producers: [String: Int] {
        var result: [String: Int] = [:]
        for (k, node) in nodes.enumerated() { for output in node.outputs where !output.isEmpty { result[output] = k } }
        return result
    }

    public static func == (a: Graph, b: Graph) -> Bool {
        a.name == b.name && a.nodes == b.nodes && a.initializerOrder == b.initializerOrder && a.initializers == b.initializers
            && a.inputs == b.inputs && a.outputs == b.outputs && a.opsets == b.opsets
            && a.metadata.count == b.metadata.count && zip(a.metadata, b.metadata).allSatisfy { $0 == $1 }
            && a.functions == b.functions
    }
}
