import DOConvCore
import DOConvGraph

/// The per-layer verdict for one replaced layer, in every format's report.
public struct LayerResult: Sendable {
    /// The DO-Conv layer's name (from detection), else the Conv's.
    public var name: String
    /// The FOLDED Conv node.
    public var conv: String
    /// "DO-Conv 3x3, groups 1, Dmul 9 (pytorch kernel composition)", "Conv + BatchNormalization", ...
    public var description: String
    /// FOLDED's kernel against the float64 recomputation from D and W (or, without a
    /// detected layer, from ORIGINAL's own kernel computation).
    public var kernel: ErrorStats?
    /// FOLDED's kernel against ORIGINAL's kernel as its graph computes it (reference executor),
    /// a second reference that also checks detection picked the right D and W.
    public var graphKernel: ErrorStats?
    /// Random patches through the layer two ways.
    public var probe: ErrorStats?
    /// FOLDED's bias against the expected one (pairs and fused BatchNormalization).
    public var bias: ErrorStats?
    /// Problems that are not numbers (shapes, missing tensors).
    public var problems: [String] = []
    /// A block merged by `--reparam`: checked by the probe alone (no kernel to recompute).
    public var isLinearBlock = false

    package init(name: String, conv: String, description: String) {
        self.name = name
        self.conv = conv
        self.description = description
    }

    public var passed: Bool {
        problems.isEmpty && [kernel, graphKernel, probe, bias].allSatisfy { $0?.passed ?? true } && (kernel != nil || (isLinearBlock && probe != nil))
    }
}

extension DataType {
    /// The default tolerance of a kernel of this element type (the fold's own defaults).
    public var defaultTolerance: Double {
        switch self {
        case .float16: return ElementType.float16.defaultTolerance
        case .bfloat16: return ElementType.bfloat16.defaultTolerance
        case .double: return ElementType.float64.defaultTolerance
        default: return ElementType.float32.defaultTolerance
        }
    }
}
