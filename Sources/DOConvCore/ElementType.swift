/// The floating-point element types a DO-Conv layer can be stored in.
///
/// Folding always computes in `Float` (or wider, for verification) and stores the result
/// back in the layer's own element type.
public enum ElementType: String, Sendable, CaseIterable {
    case float32
    case float16
    case bfloat16
    case float64

    /// Bytes per element in little-endian storage.
    public var byteWidth: Int {
        switch self {
        case .float32: return 4
        case .float16, .bfloat16: return 2
        case .float64: return 8
        }
    }

    /// The default verification tolerance (relative error) for kernels stored in this type:
    /// half-precision storage rounds every kernel value, so it needs a looser bound.
    public var defaultTolerance: Double {
        switch self {
        case .float32: return 1e-5
        // float64 layers fold and are checked in float64: their error is about 1e-16, and
        // a float32-sized error (1e-7) must not pass.
        case .float64: return 1e-10
        case .float16: return 5e-3
        case .bfloat16: return 3e-2
        }
    }
}
