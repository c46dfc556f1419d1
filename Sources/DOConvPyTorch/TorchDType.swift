import DOConvCore

/// A torch element type, as checkpoints name it: by storage class in pickles
/// (`torch.FloatStorage`), by dtype (`torch.float32`), or by safetensors code (`F32`).
public enum TorchDType: String, CaseIterable, Sendable {
    case float32, float64, float16, bfloat16
    case int64, int32, int16, int8, uint8, bool
    case complex64, complex128
    case float8e4m3fn, float8e5m2

    /// The element type in doconv's one table (widths, foldable types).
    public var scalar: ScalarType {
        switch self {
        case .float32: return .float32
        case .float64: return .float64
        case .float16: return .float16
        case .bfloat16: return .bfloat16
        case .int64: return .int64
        case .int32: return .int32
        case .int16: return .int16
        case .int8: return .int8
        case .uint8: return .uint8
        case .bool: return .bool
        case .complex64: return .complex64
        case .complex128: return .complex128
        case .float8e4m3fn: return .float8e4m3fn
        case .float8e5m2: return .float8e5m2
        }
    }

    /// Bytes per element.
    public var byteWidth: Int { scalar.byteWidth }

    /// The floating-point types a DO-Conv layer can be folded in.
    public var elementType: ElementType? { scalar.elementType }

    private static let storageClasses: [String: TorchDType] = [
        "FloatStorage": .float32, "DoubleStorage": .float64, "HalfStorage": .float16, "BFloat16Storage": .bfloat16,
        "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
        "ByteStorage": .uint8, "BoolStorage": .bool, "ComplexFloatStorage": .complex64, "ComplexDoubleStorage": .complex128,
        "Float8_e4m3fnStorage": .float8e4m3fn, "Float8_e5m2Storage": .float8e5m2,
    ]

    /// From a storage class name (`FloatStorage`).
    public init?(storageClass name: String) {
        guard let type = Self.storageClasses[name] else { return nil }
        self = type
    }

    /// The storage class torch pickles for this type.
    public var storageClass: String {
        Self.storageClasses.first { $0.value == self }?.key ?? "ByteStorage"
    }

    private static let dtypeNames: [String: TorchDType] = [
        "float32": .float32, "float": .float32, "float64": .float64, "double": .float64, "float16": .float16, "half": .float16,
        "bfloat16": .bfloat16, "int64": .int64, "long": .int64, "int32": .int32, "int": .int32, "int16": .int16, "short": .int16,
        "int8": .int8, "uint8": .uint8, "bool": .bool, "complex64": .complex64, "cfloat": .complex64, "complex128": .complex128,
        "cdouble": .complex128, "float8_e4m3fn": .float8e4m3fn, "float8_e5m2": .float8e5m2,
    ]

    /// From a dtype name (`float32`, as in `torch.float32`).
    public init?(dtypeName name: String) {
        guard let type = Self.dtypeNames[name] else { return nil }
        self = type
    }

    private static let safetensorsCodes: [String: TorchDType] = [
        "F32": .float32, "F64": .float64, "F16": .float16, "BF16": .bfloat16, "I64": .int64, "I32": .int32,
        "I16": .int16, "I8": .int8, "U8": .uint8, "BOOL": .bool, "C64": .complex64, "F8_E4M3": .float8e4m3fn, "F8_E5M2": .float8e5m2,
    ]

    /// From a safetensors dtype code (`F32`).
    public init?(safetensorsCode code: String) {
        guard let type = Self.safetensorsCodes[code] else { return nil }
        self = type
    }
}
