/// An element type of stored tensors, whatever a format numbers or names it: one table of
/// widths and of which types a DO-Conv layer folds in. Each format's own numbering (torch
/// names, MXNet codes) maps to it, so widths are not repeated per format.
public enum ScalarType: Sendable, Equatable {
    case float16, bfloat16, float32, float64
    case float8e4m3fn, float8e5m2
    case int8, uint8, int16, uint16, int32, uint32, int64, uint64
    case bool
    case complex64, complex128

    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .int8, .uint8, .bool, .float8e4m3fn, .float8e5m2: return 1
        case .float16, .bfloat16, .int16, .uint16: return 2
        case .float32, .int32, .uint32: return 4
        case .float64, .int64, .uint64, .complex64: return 8
        case .complex128: return 16
        }
    }

    /// The floating-point types a DO-Conv layer can be folded in.
    public var elementType: ElementType? {
        switch self {
        case .float32: return .float32
        case .float64: return .float64
        case .float16: return .float16
        case .bfloat16: return .bfloat16
        default: return nil
        }
    }
}
