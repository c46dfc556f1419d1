import DOConvCore

/// TensorFlow's element types (DataType in types.proto), as a bundle entry names them.
public enum TensorFlowDataType: Int32, Sendable, CaseIterable {
    case float = 1, double = 2, int32 = 3, uint8 = 4, int16 = 5, int8 = 6, string = 7
    case complex64 = 8, int64 = 9, bool = 10, qint8 = 11, quint8 = 12, qint32 = 13
    case bfloat16 = 14, qint16 = 15, quint16 = 16, uint16 = 17, complex128 = 18, half = 19
    case resource = 20, variant = 21, uint32 = 22, uint64 = 23
    case float8e5m2 = 24, float8e4m3fn = 25, float8e4m3fnuz = 26, float8e4m3b11fnuz = 27
    case float8e5m2fnuz = 28, int4 = 29, uint4 = 30, int2 = 31, uint2 = 32, float4e2m1fn = 33

    /// The name TensorFlow's Python API gives it (`tf.float32.name`).
    public var name: String {
        switch self {
        case .float: return "float32"
        case .double: return "float64"
        case .half: return "float16"
        case .float8e5m2: return "float8_e5m2"
        case .float8e4m3fn: return "float8_e4m3fn"
        case .float8e4m3fnuz: return "float8_e4m3fnuz"
        case .float8e4m3b11fnuz: return "float8_e4m3b11fnuz"
        case .float8e5m2fnuz: return "float8_e5m2fnuz"
        case .float4e2m1fn: return "float4_e2m1fn"
        default: return "\(self)"
        }
    }

    /// Bytes per element of a tensor stored as its raw elements; nil for the types stored
    /// in an encoding of their own (string, variant), for resources (never real data), and
    /// for the sub-byte types, whose stored layout this reader does not take for granted.
    public var byteWidth: Int? {
        switch self {
        case .int8, .uint8, .bool, .qint8, .quint8, .float8e5m2, .float8e4m3fn, .float8e4m3fnuz, .float8e4m3b11fnuz, .float8e5m2fnuz: return 1
        case .int16, .uint16, .qint16, .quint16, .bfloat16, .half: return 2
        case .float, .int32, .uint32, .qint32: return 4
        case .double, .int64, .uint64, .complex64: return 8
        case .complex128: return 16
        case .string, .resource, .variant, .int4, .uint4, .int2, .uint2, .float4e2m1fn: return nil
        }
    }

    /// The element type in doconv's one table, for the types it has.
    public var scalar: ScalarType? {
        switch self {
        case .float: return .float32
        case .double: return .float64
        case .half: return .float16
        case .bfloat16: return .bfloat16
        case .float8e5m2: return .float8e5m2
        case .float8e4m3fn: return .float8e4m3fn
        case .int8: return .int8
        case .uint8: return .uint8
        case .int16: return .int16
        case .uint16: return .uint16
        case .int32: return .int32
        case .uint32: return .uint32
        case .int64: return .int64
        case .uint64: return .uint64
        case .bool: return .bool
        case .complex64: return .complex64
        case .complex128: return .complex128
        default: return nil
        }
    }

    /// The floating-point types a DO-Conv layer can be folded in.
    public var elementType: ElementType? { scalar?.elementType }
}
